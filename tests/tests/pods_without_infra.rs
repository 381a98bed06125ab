//! Issue 20: a pod as kubelet sends one by default (no PID namespace shared
//! by its containers) runs without an infra container. Its IPC and UTS
//! namespaces are pinned beside its network namespace; its containers join
//! all three, keep a PID namespace each, and survive a daemon crash; stop
//! and removal leave no pin behind.

use cri_api::v1 as cri;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, with_kubelet_namespaces, BUSYBOX};

/// A pod config like kubelet's for a pod without `shareProcessNamespace`.
fn kubelet_pod(name: &str) -> cri::PodSandboxConfig {
    let mut config = pod_config(name);
    config.hostname = format!("{name}-host");
    with_kubelet_namespaces(config, false)
}

fn pins(daemon: &Daemon) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(daemon.dir().join("state/netns"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Pins of pod `id`, waiting up to 10 s for them to be `want`.
async fn wait_for_pins(daemon: &Daemon, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pins(daemon) != want {
        assert!(
            Instant::now() < deadline,
            "pins {:?}, want {want:?}",
            pins(daemon)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readlink(daemon: &Daemon, container: &str, what: &str) -> String {
    let (code, out) = daemon.sh(container, &format!("readlink {what}")).await;
    assert_eq!(code, 0, "{out}");
    out.trim().to_string()
}

fn runc_list(daemon: &Daemon) -> String {
    let root = daemon.dir().join("state/runtimes/runc");
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["list", "-q"])
        .output()
        .expect("runc list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn containers_share_the_pinned_ipc_uts_and_network_namespaces_without_an_infra_container() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(kubelet_pod("lean"), "").await;
    let status = daemon.pod_status(&pod, true).await;
    let state = status.status.as_ref().unwrap();
    assert_eq!(state.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = state
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    assert!(!ip.is_empty(), "the pod has an IP: {state:?}");
    let want = vec![pod.clone(), format!("{pod}.ipc"), format!("{pod}.uts")];
    assert_eq!(pins(&daemon), want);
    assert!(
        !runc_list(&daemon).contains(&pod),
        "no runtime container for the pod"
    );

    let sleep = ["sleep", "1000"];
    let a = daemon
        .create_started(&pod, container_config("a", BUSYBOX, &sleep))
        .await;
    let b = daemon
        .create_started(&pod, container_config("b", BUSYBOX, &sleep))
        .await;
    let listed = runc_list(&daemon);
    assert!(
        listed.contains(&a) && !listed.contains(&pod),
        "runc list: {listed}"
    );
    for ns in ["ipc", "uts", "net"] {
        let path = format!("/proc/self/ns/{ns}");
        let (in_a, in_b) = (
            readlink(&daemon, &a, &path).await,
            readlink(&daemon, &b, &path).await,
        );
        assert_eq!(in_a, in_b, "{ns} shared by the pod's containers");
        let host = std::fs::read_link(&path).unwrap();
        assert_ne!(PathBuf::from(&in_a), host, "{ns} is the pod's own");
    }
    let (_, hostname) = daemon.sh(&a, "hostname").await;
    assert_eq!(hostname.trim(), "lean-host");
    let (_, addr) = daemon.sh(&b, "ip -4 -o addr show eth0").await;
    assert!(addr.contains(&format!("{ip}/")), "{addr}");
    // Each container is pid 1 of its own PID namespace.
    for c in [&a, &b] {
        let (_, comm) = daemon.sh(c, "cat /proc/1/cmdline").await;
        assert!(comm.starts_with("sleep"), "{comm:?}");
    }
    // The pod's network counters come through the pin.
    let stats = daemon.pod_stats(&pod).await;
    let network = stats.linux.unwrap().network.unwrap();
    assert_eq!(network.default_interface.unwrap().name, "eth0");

    daemon.stop_pod(&pod).await;
    wait_for_pins(&daemon, &[]).await;
    daemon.remove_pod(&pod).await;
    assert!(pins(&daemon).is_empty());
    assert!(daemon.list_pods().await.is_empty());
}

#[tokio::test]
async fn a_pod_without_an_infra_container_survives_a_daemon_crash() {
    let mut daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(kubelet_pod("crashy"), "").await;
    let a = daemon
        .create_started(&pod, container_config("a", BUSYBOX, &["sleep", "1000"]))
        .await;
    let before = readlink(&daemon, &a, "/proc/self/ns/ipc").await;
    daemon.kill9();
    daemon.restart().await;

    let status = daemon.pod_status(&pod, false).await.status.unwrap();
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(pins(&daemon).len(), 3, "the restart kept the pod's pins");
    let b = daemon
        .create_started(&pod, container_config("b", BUSYBOX, &["sleep", "1000"]))
        .await;
    assert_eq!(readlink(&daemon, &b, "/proc/self/ns/ipc").await, before);
    let (_, hostname) = daemon.sh(&b, "hostname").await;
    assert_eq!(hostname.trim(), "crashy-host");
    daemon.remove_pod(&pod).await;
    assert!(pins(&daemon).is_empty());
}

#[tokio::test]
async fn a_hostname_the_kernel_would_refuse_is_refused_first_and_leaves_nothing() {
    let daemon = Daemon::start("").await;
    let mut config = kubelet_pod("longname");
    config.hostname = "h".repeat(65);
    let started = Instant::now();
    let err = daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("hostname"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(pins(&daemon).is_empty());
    assert!(daemon.list_pods().await.is_empty());
}

/// A stop's signals go straight to the init (from the daemon through a
/// pidfd, or from the monitor; no `runc kill`): SIGKILL to the init of a
/// container's own PID namespace takes every process of the namespace with
/// it, as `runc kill --all` would.
#[tokio::test]
async fn stopping_a_container_with_its_own_pid_namespace_kills_all_its_processes() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(kubelet_pod("killall"), "").await;
    let marker = format!("{}", 1000 + std::process::id() % 1000);
    let script = format!("sleep 7{marker} & exec sleep 8{marker}");
    let c = daemon
        .create_started(&pod, container_config("c", BUSYBOX, &["sh", "-c", &script]))
        .await;
    let running = |what: &str| {
        std::process::Command::new("pgrep")
            .args(["-f", what])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    let child = format!("sleep 7{marker}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !running(&child) {
        assert!(Instant::now() < deadline, "the background sleep never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop_container(&c, 0).await;
    let status = daemon.container_status(&c).await;
    assert_eq!(status.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 137);
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(&child) {
        assert!(Instant::now() < deadline, "{child} outlived its container");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = daemon.log();
    let about_c = |l: &&str| l.contains(&c);
    assert!(
        log.lines()
            .filter(about_c)
            .any(|l| l.contains("signal delivered")),
        "{log}"
    );
    assert!(!log
        .lines()
        .filter(about_c)
        .any(|l| l.contains("through the runtime")));
    daemon.remove_pod(&pod).await;
}
