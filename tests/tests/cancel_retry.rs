//! Kubelet's habit: a deadline on every call, and the same call again when
//! it passed. A cancelled RunPodSandbox or CreateContainer runs on, its
//! retry gets the same object, and nothing is left behind.

use cri_api::v1 as cri;
use std::time::Duration;
use tests::daemon::Daemon;
use tests::eventually;
use tests::fixtures::{container_config, pod_config, BUSYBOX};

/// `message` with a `grpc-timeout` of `deadline`, as kubelet sends every call.
fn with_deadline<T: Clone>(message: &T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message.clone());
    request.set_timeout(deadline);
    request
}

#[tokio::test]
async fn a_retry_after_a_cancelled_call_gets_the_same_pod_and_container() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let mut runtime = daemon.runtime().await;
    let mut made = Vec::new();
    for round in 0..10u64 {
        // 5 to 41 ms: some calls are cut before the runtime ran, some
        // during it, some after.
        let deadline = Duration::from_millis(5 + round * 4);
        let config = pod_config(&format!("cancel-{round}"));
        let run = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let first = tokio::time::timeout(
            deadline,
            runtime.run_pod_sandbox(with_deadline(&run, deadline)),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pod = runtime
            .run_pod_sandbox(run)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "round {round}: retried RunPodSandbox: {e}\n{}",
                    daemon.log()
                )
            })
            .into_inner()
            .pod_sandbox_id;
        if let Ok(Ok(answer)) = first {
            assert_eq!(answer.into_inner().pod_sandbox_id, pod);
        }
        let create = cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("app", BUSYBOX, &["sleep", "600"])),
            sandbox_config: Some(config),
        };
        let first = tokio::time::timeout(
            deadline,
            runtime.create_container(with_deadline(&create, deadline)),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let container = runtime
            .create_container(create)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "round {round}: retried CreateContainer: {e}\n{}",
                    daemon.log()
                )
            })
            .into_inner()
            .container_id;
        if let Ok(Ok(answer)) = first {
            assert_eq!(answer.into_inner().container_id, container);
        }
        made.push((pod, container));
    }
    let pods = daemon.list_pods().await;
    assert_eq!(pods.len(), 10, "one pod per round: {pods:#?}");
    let containers = runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 10, "one container per round");
    for (pod, _) in &made {
        daemon.remove_pod(pod).await;
    }
    let dir = daemon.dir().to_path_buf();
    eventually("mounts left after removing every pod", || {
        tests::leaks::mounts(&dir).is_empty()
    })
    .await;
    eventually("monitors left after removing every pod", || {
        tests::leaks::monitors(&dir).is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_pod_nobody_retries_is_removed_after_the_grace_period() {
    let daemon = Daemon::start("[runtime]\nunclaimed_creation_grace_seconds = 2\n").await;
    let mut runtime = daemon.runtime().await;
    let run = cri::RunPodSandboxRequest {
        config: Some(pod_config("abandoned")),
        runtime_handler: String::new(),
    };
    // Cut short while the pod is being made, then never asked for again.
    let deadline = Duration::from_millis(15);
    let first = tokio::time::timeout(
        deadline,
        runtime.run_pod_sandbox(with_deadline(&run, deadline)),
    )
    .await;
    // Cut by the client, or by the server at the grpc-timeout.
    assert!(
        !matches!(first, Ok(Ok(_))),
        "the call finished within 15 ms; the test needs it cut short"
    );
    // Made, unclaimed, and removed again once the grace period passed.
    let dir = daemon.dir().to_path_buf();
    let mut seen = false;
    for _ in 0..400 {
        let pods = daemon.list_pods().await;
        seen |= !pods.is_empty();
        if seen && pods.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "the cancelled RunPodSandbox never made its pod");
    assert!(
        daemon.list_pods().await.is_empty(),
        "the unclaimed pod is still there"
    );
    assert!(daemon.log().contains("nobody retried"), "{}", daemon.log());
    eventually("mounts left", || tests::leaks::mounts(&dir).is_empty()).await;
    eventually("monitors left", || tests::leaks::monitors(&dir).is_empty()).await;
}

/// A CNI plugin (python3) that passes the previous result on at ADD and,
/// at DEL, takes `delay` seconds before writing `marker`: a DEL still
/// running when the daemon is told to stop.
fn slow_del_plugin(dir: &std::path::Path, marker: &std::path::Path, delay: f64) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("cri-server-slow-del");
    std::fs::write(
        &path,
        format!(
            "#!/usr/bin/env python3\n\
             import json, os, sys, time\n\
             conf = json.load(sys.stdin)\n\
             cmd = os.environ.get('CNI_COMMAND')\n\
             if cmd == 'ADD':\n    print(json.dumps(conf.get('prevResult', {{}})))\n\
             elif cmd == 'DEL':\n    time.sleep({delay})\n    open('{}', 'w').write('done')\n\
             elif cmd == 'VERSION':\n    print(json.dumps({{'cniVersion': '1.0.0', 'supportedVersions': ['1.0.0']}}))\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A daemon on a network whose chain ends in [`slow_del_plugin`], and the
/// marker that plugin writes when its DEL is done.
async fn slow_del_daemon(
    dir: &std::path::Path,
    bridge: &str,
    subnet: u8,
) -> (Daemon, std::path::PathBuf) {
    let (conf, plugins) = (dir.join("conf"), dir.join("bin"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    let marker = dir.join("del-finished");
    slow_del_plugin(&plugins, &marker, 1.5);
    std::fs::write(
        conf.join("10-slow.conflist"),
        format!(
            r#"{{"cniVersion": "1.0.0", "name": "cri-server-{bridge}", "plugins": [
                {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": true,
                  "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.99.{subnet}.0/24"}}]]}}}},
                {{"type": "cri-server-slow-del"}}
            ]}}"#
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&format!(
        "[network]\nconf_dir = \"{}\"\nplugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n",
        conf.display(),
        plugins.display()
    ))
    .await;
    (daemon, marker)
}

/// Whether the `nat` table still masquerades for pod `id`.
fn masquerading(id: &str) -> bool {
    let nat = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S", "POSTROUTING"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&nat.stdout).contains(id)
}

/// StopPodSandbox records the pod stopped and returns; its CNI DEL (most
/// of a stop) runs after, to its end.
#[tokio::test]
async fn a_stop_returns_before_its_cni_del_which_still_runs_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, marker) = slow_del_daemon(dir.path(), "cni-sd1", 11).await;
    let pod = daemon.run_pod(pod_config("slow-stop"), "").await;
    let started = std::time::Instant::now();
    daemon.stop_pod(&pod).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the stop waited for the DEL: {:?}",
        started.elapsed()
    );
    let pods = daemon.list_pods().await;
    assert_eq!(pods[0].state(), cri::PodSandboxState::SandboxNotready);
    eventually("the DEL ran", || marker.exists()).await;
    eventually("the bridge DEL ran", || !masquerading(&pod)).await;
    daemon.remove_pod(&pod).await;
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "cni-sd1"])
        .status();
}

/// RemovePodSandbox returns before the CNI DEL its stop started, well
/// within kubelet's deadline; SIGTERM while that DEL still runs: the
/// daemon lets it finish before exiting. Dropped halfway, the bridge
/// plugin's DEL would leave its iptables chain behind for good.
#[tokio::test]
async fn a_graceful_shutdown_lets_a_removed_pods_network_teardown_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, marker) = slow_del_daemon(dir.path(), "cni-sd2", 12).await;
    let pod = daemon.run_pod(pod_config("slow-del"), "").await;
    let remove = cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    };
    daemon
        .runtime()
        .await
        .remove_pod_sandbox(remove)
        .await
        .unwrap();
    assert!(daemon.list_pods().await.is_empty(), "removed");
    // Returned before the DEL it did not wait for.
    assert!(!marker.exists(), "the DEL is still running");
    let status = daemon.terminate().await;
    assert!(status.success(), "{status}");
    assert!(
        marker.exists(),
        "the daemon exited before the DEL finished:\n{}",
        daemon.log()
    );
    assert!(daemon.log().contains("waiting for verbs still running"));
    assert!(!masquerading(&pod), "the bridge DEL ran to its end");
    daemon.restart().await;
    assert!(daemon.list_pods().await.is_empty(), "the removal finished");
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "cni-sd2"])
        .status();
}

/// kill -9 while a removed pod's CNI DEL still runs. RemovePodSandbox has
/// returned and the pod's record is gone, so at the next start its
/// attachment is one no record claims and its pins are stale: the start-up
/// sweep releases them (the bridge's masquerading rule among them).
#[tokio::test]
async fn a_removed_pods_release_cut_by_kill_9_is_finished_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, marker) = slow_del_daemon(dir.path(), "cni-sd3", 13).await;
    let pod = daemon.run_pod(pod_config("cut-del"), "").await;
    daemon
        .runtime()
        .await
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    assert!(!marker.exists(), "the DEL is still running");
    daemon.kill9();
    assert!(masquerading(&pod), "the bridge's DEL never ran");
    daemon.restart().await;
    assert!(daemon.list_pods().await.is_empty());
    eventually("the bridge DEL ran at restart", || !masquerading(&pod)).await;
    let attachment = daemon.dir().join("root/cni").join(&pod);
    eventually("the attachment released", || !attachment.exists()).await;
    let dir = daemon.dir().to_path_buf();
    let none = std::collections::HashSet::new();
    eventually("nothing left", || {
        tests::leaks::find(&dir, &none, &none).is_empty()
    })
    .await;
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "cni-sd3"])
        .status();
}
