//! critest "PodSandbox runtime should support sysctls": safe and unsafe
//! namespaced sysctls set on the pod reach its containers (on gVisor, the
//! network ones: see `crate::gvisor` in cri-server); malformed and
//! node-wide ones are refused before anything is created.

use cri_api::v1 as cri;
use std::collections::HashMap;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, image_spec, pod_config, BUSYBOX, HANDLERS};
use tonic::Code;

async fn daemon() -> Daemon {
    let daemon = Daemon::start("").await;
    daemon
        .images()
        .await
        .pull_image(cri::PullImageRequest {
            image: image_spec(BUSYBOX),
            ..Default::default()
        })
        .await
        .expect("pull busybox (is `cargo xtask fixtures` up?)");
    daemon
}

fn with_sysctls(name: &str, sysctls: &[(&str, &str)]) -> cri::PodSandboxConfig {
    let mut config = pod_config(name);
    config.linux = Some(cri::LinuxPodSandboxConfig {
        sysctls: sysctls
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    });
    config
}

async fn read_in_pod(daemon: &Daemon, handler: &str, sysctls: &[(&str, &str)]) -> Vec<String> {
    let mut rt = daemon.runtime().await;
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(with_sysctls(&format!("sysctls-{handler}"), sysctls)),
            runtime_handler: handler.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", daemon.log()))
        .into_inner()
        .pod_sandbox_id;
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("c", BUSYBOX, &["sleep", "3600"])),
            sandbox_config: None,
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", daemon.log()))
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let mut values = Vec::new();
    for (name, _) in sysctls {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        let out = rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["cat".into(), path],
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        // The kernel prints ranges tab-separated.
        values.push(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    values
}

#[tokio::test]
async fn safe_and_unsafe_sysctls_reach_the_container_on_runc() {
    let daemon = daemon().await;
    let wanted = [
        ("kernel.shm_rmid_forced", "1"),
        ("kernel.msgmax", "10000"),
        ("net.ipv4.ip_local_port_range", "1024 65000"),
    ];
    // Differ from the host's so the test sees the pod's own values.
    for (name, value) in wanted {
        let host =
            std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/"))).unwrap();
        assert_ne!(
            host.split_whitespace().collect::<Vec<_>>().join(" "),
            value,
            "{name}"
        );
    }
    let got = read_in_pod(&daemon, "runc", &wanted).await;
    let expected: Vec<String> = wanted.iter().map(|(_, v)| v.to_string()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn malformed_and_node_wide_sysctls_are_refused_and_nothing_is_created() {
    let daemon = daemon().await;
    let mut rt = daemon.runtime().await;
    for (name, value) in [
        ("kernel..msgmax", "1"),
        ("kernel.msgmax", ""),
        ("vm.swappiness", "10"),
    ] {
        let err = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(with_sysctls("bad", &[(name, value)])),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err}");
        assert!(err.message().contains("sysctls"), "{name}: {err}");
        let pods = rt
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(pods.is_empty(), "{name}: {pods:?}");
    }
}

/// A pod's network sysctls govern its sockets on both handlers. runsc
/// ignores the spec's sysctls, so the daemon writes the `net.*` ones in
/// the pod's network namespace, where gVisor's host sockets live; the
/// proof is a connection made inside the container, seen from the host
/// with its source port in the pod's `ip_local_port_range`. An IPC sysctl
/// beside it does not stop a gVisor pod (it is ignored there: gVisor keeps
/// IPC in its sandbox, shown in gvisor_parity.rs).
#[tokio::test]
async fn network_sysctls_govern_the_pods_sockets_on_both_handlers() {
    let daemon = daemon().await;
    let wanted = [
        ("net.ipv4.ip_local_port_range", "40000 40009"),
        ("kernel.shm_rmid_forced", "1"),
    ];
    for handler in HANDLERS {
        let config = with_sysctls(&format!("ports-{handler}"), &wanted);
        let pod = daemon.run_pod(config, handler).await;
        // Tried again, a second apart, until one attempt connects: on a busy
        // node gVisor's httpd can take longer than a second to listen, and a
        // refused attempt leaves no socket to look at.
        let script = "mkdir -p /www && echo hi > /www/index.html && httpd -p 8080 -h /www \
            && for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1; echo | nc 127.0.0.1 8080 && break; \
            done; sleep 600";
        daemon
            .create_started(
                &pod,
                container_config("client", BUSYBOX, &["sh", "-c", script]),
            )
            .await;
        let pin = daemon.dir().join("state/netns").join(&pod);
        let mut sockets = String::new();
        let mut source_port = None;
        for _ in 0..200 {
            let out = std::process::Command::new("nsenter")
                .arg(format!("--net={}", pin.display()))
                .args(["ss", "-tanH"])
                .output()
                .unwrap();
            sockets = String::from_utf8_lossy(&out.stdout).into_owned();
            // The client's end, or the server's end seen as its peer.
            source_port = sockets.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (local, peer) = (fields.get(3)?, fields.get(4)?);
                let port = |a: &str| a.rsplit(':').next()?.parse::<u16>().ok();
                match (port(local)?, port(peer)?) {
                    (8080, p) | (p, 8080) if p != 0 => Some(p),
                    _ => None,
                }
            });
            if source_port.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let port = source_port.unwrap_or_else(|| panic!("{handler}: no connection: {sockets}"));
        assert!((40000..=40009).contains(&port), "{handler}: {sockets}");
        daemon.remove_pod(&pod).await;
    }
}

/// A network sysctl the pod's namespace does not have (as a hostile or
/// mistaken pod spec may ask) fails RunPodSandbox fast on both handlers,
/// naming it, and leaves nothing: on gVisor it is found before the sandbox
/// boots.
#[tokio::test]
async fn a_network_sysctl_the_namespace_lacks_fails_the_pod_and_leaves_nothing() {
    let daemon = daemon().await;
    for handler in HANDLERS {
        let config = with_sysctls(
            &format!("nosuch-{handler}"),
            &[("net.ipv4.no_such_knob", "1")],
        );
        let started = std::time::Instant::now();
        let err = daemon
            .runtime()
            .await
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: handler.to_string(),
            })
            .await
            .expect_err(handler);
        assert!(err.message().contains("no_such_knob"), "{handler}: {err}");
        assert!(
            started.elapsed().as_secs() < 5,
            "{handler}: {:?}",
            started.elapsed()
        );
        assert!(daemon.list_pods().await.is_empty(), "{handler}");
        // A cgroup removal may finish after the call returned.
        let none = Default::default();
        tests::eventually(&format!("{handler}: something left"), || {
            tests::leaks::find(daemon.dir(), &none, &none).is_empty()
        })
        .await;
    }
}
