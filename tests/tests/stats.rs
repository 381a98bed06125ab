//! critest "listing container stats" and issue 8's stats: CPU and memory
//! from the cgroups, the writable layer, the pod's network counters. The
//! listing runs on both handlers; gVisor keeps its containers' processes
//! inside its sandbox, so their CPU and memory are checked on runc only.

use cri_api::v1 as cri;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX, HANDLERS};

/// How many of the daemon's descriptors are open on cgroupfs files.
fn cgroup_files_open(daemon: &Daemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with("/sys/fs/cgroup"))
        .count()
}

fn value(v: &Option<cri::UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

#[tokio::test]
async fn stats_follow_a_busy_container_and_list_with_a_nil_filter() {
    for handler in HANDLERS {
        stats_on(handler).await;
    }
}

async fn stats_on(handler: &str) {
    let on_runc = handler == "runc";
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let before = cgroup_files_open(&daemon);
    let pod = daemon.run_pod(pod_config("stats"), handler).await;
    let busy = daemon
        .create_started(
            &pod,
            container_config(
                "busy",
                BUSYBOX,
                &[
                    "sh",
                    "-c",
                    "dd if=/dev/zero of=/blob bs=1k count=256; while :; do :; done",
                ],
            ),
        )
        .await;
    // Three more, created but not started.
    for name in ["c1", "c2", "c3"] {
        daemon
            .create(&pod, container_config(name, BUSYBOX, &["sleep", "600"]))
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut rt = daemon.runtime().await;
    let first = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: busy.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    if on_runc {
        let cpu = first.cpu.unwrap();
        assert!(value(&cpu.usage_core_nano_seconds) > 100_000_000, "{cpu:?}");
        let memory = first.memory.unwrap();
        assert!(value(&memory.working_set_bytes) > 0, "{memory:?}");
    }
    let layer = first.writable_layer.clone().unwrap();
    assert!(value(&layer.used_bytes) >= 256 * 1024, "{layer:?}");
    assert!(value(&layer.inodes_used) >= 1);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: busy.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    // A busy loop uses most of a core: the second reading, through the
    // files the first one left open, sees current figures.
    if on_runc {
        assert!(
            cgroup_files_open(&daemon) > before,
            "stats files are kept open"
        );
        let nano_cores = value(&second.cpu.unwrap().usage_nano_cores);
        assert!(nano_cores > 300_000_000, "{nano_cores}");
    }

    let all = rt
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(all.len(), 4, "{handler}");
    let filtered = rt
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                id: busy[..12].to_string(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(filtered.len(), 1);

    let pod_stats = daemon.pod_stats(&pod).await;
    let linux = pod_stats.linux.unwrap();
    assert_eq!(linux.containers.len(), 4, "{handler}");
    // The pod's cgroup holds gVisor's whole sandbox: its CPU shows there.
    assert!(
        value(&linux.cpu.unwrap().usage_core_nano_seconds) > 100_000_000,
        "{handler}"
    );
    let network = linux.network.expect("a pod network");
    assert_eq!(network.default_interface.unwrap().name, "eth0", "{handler}");
    let listed = rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(listed.len(), 1);
    daemon.remove_pod(&pod).await;
    assert_eq!(
        cgroup_files_open(&daemon),
        before,
        "{handler}: removal closes kept files"
    );
}
