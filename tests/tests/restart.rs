//! State that survives: after `kill -9` of the daemon and a restart, every
//! pod and container is listed with the right state, running ones still run,
//! an exit that happened while the daemon was down shows its real code, and
//! stop/remove work and leave nothing behind.

use cri_api::v1 as cri;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX};

fn processes_mentioning(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(needle))
        .count()
}

async fn restart_case(handler: &str) {
    let mut daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon
        .run_pod(pod_config(&format!("restart-{handler}")), handler)
        .await;
    let long = daemon
        .create_started(&pod, container_config("long", BUSYBOX, &["sleep", "600"]))
        .await;
    // Exits with 7 while the daemon is down (it waits for a file to appear).
    let script = "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 7";
    let short = daemon
        .create_started(
            &pod,
            container_config("short", BUSYBOX, &["sh", "-c", script]),
        )
        .await;

    daemon.kill9();
    // Let the short container finish while nobody watches.
    let rootfs_tmp = format!("/proc/{}/root/tmp/go", {
        // The short container's init pid, from its monitor's pid file.
        let pid_file = daemon
            .dir()
            .join("state/c")
            .join(&short)
            .join("container.pid");
        std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
            .trim()
            .to_string()
    });
    if handler == "runsc" {
        // gVisor's filesystem is not the host's view; exec through runsc.
        let status = std::process::Command::new("/usr/bin/runsc")
            .args(["--root"])
            .arg(daemon.dir().join("state/runtimes/runsc"))
            .args(["exec", &short, "touch", "/tmp/go"])
            .status()
            .unwrap();
        assert!(status.success());
    } else {
        std::fs::write(&rootfs_tmp, b"").unwrap();
    }
    std::thread::sleep(std::time::Duration::from_secs(2));

    daemon.restart().await;
    let pods = daemon.list_pods().await;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);
    let long_status = daemon.container_status(&long).await;
    assert_eq!(
        long_status.state,
        cri::ContainerState::ContainerRunning as i32
    );
    let short_status = daemon.container_status(&short).await;
    assert_eq!(
        short_status.state,
        cri::ContainerState::ContainerExited as i32,
        "{}",
        daemon.log()
    );
    assert_eq!(short_status.exit_code, 7);

    // The running container still answers, and stop/remove work.
    let out = daemon.exec(&long, &["echo", "alive"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alive");
    daemon.stop_container(&long, 1).await;
    assert_eq!(
        daemon.container_status(&long).await.state,
        cri::ContainerState::ContainerExited as i32
    );
    daemon.remove_pod(&pod).await;

    // Nothing leaks: no pin, no container state, no monitor, no cgroup.
    let state = daemon.dir().join("state");
    let pins: Vec<_> = std::fs::read_dir(state.join("netns"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(pins.is_empty(), "{pins:?}");
    assert!(!state.join("c").join(&long).exists());
    assert!(!state.join("p").join(&pod).exists());
    assert_eq!(processes_mentioning(&long), 0);
    assert_eq!(processes_mentioning(&pod), 0);
    let cgroup = std::path::Path::new("/sys/fs/cgroup/memory/cri-server").join(&long);
    tests::eventually("the cgroup left", || !cgroup.exists()).await;
}

#[tokio::test]
async fn kill_9_and_restart_on_runc() {
    restart_case("runc").await;
}

#[tokio::test]
async fn kill_9_and_restart_on_runsc() {
    restart_case("runsc").await;
}

/// A daemon killed inside RunPodSandbox or CreateContainer, after the runtime
/// made the container but before the record was saved, leaves things no
/// record claims (kubelet never got their ids). The restart removes them:
/// monitor, container, root filesystem, CNI reservation, directories.
#[tokio::test]
async fn half_made_pods_and_containers_are_removed_at_restart() {
    let mut daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let kept_pod = daemon.run_pod(pod_config("half-kept"), "runc").await;
    let kept = daemon
        .create_started(
            &kept_pod,
            container_config("kept", BUSYBOX, &["sleep", "600"]),
        )
        .await;
    let half_ctr = daemon
        .create(
            &kept_pod,
            container_config("half", BUSYBOX, &["sleep", "600"]),
        )
        .await;
    let half_pod = daemon.run_pod(pod_config("half-pod"), "runc").await;
    let reserved = |id: &str| {
        std::fs::read_dir("/var/lib/cni/networks/cri-server")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .any(|text| text.lines().next() == Some(id))
            })
            .unwrap_or(false)
    };
    assert!(reserved(&half_pod), "the pod has an IP reservation");

    daemon.kill9();
    // As if the daemon had died before saving these records.
    let root = daemon.dir().join("root");
    std::fs::remove_file(root.join("containers").join(format!("{half_ctr}.json"))).unwrap();
    std::fs::remove_file(root.join("sandboxes").join(format!("{half_pod}.json"))).unwrap();
    daemon.restart().await;

    let pods: Vec<String> = daemon.list_pods().await.into_iter().map(|p| p.id).collect();
    assert_eq!(pods, std::slice::from_ref(&kept_pod));
    assert_eq!(
        daemon.container_status(&kept).await.state,
        cri::ContainerState::ContainerRunning as i32,
        "the recorded container still runs"
    );
    let state = daemon.dir().join("state");
    for id in [&half_ctr, &half_pod] {
        assert_eq!(processes_mentioning(id), 0, "{id}: processes left");
        assert!(!state.join("c").join(id).exists(), "{id}: state left");
        assert!(!state.join("p").join(id).exists(), "{id}: state left");
        assert!(
            !state.join("runtimes/runc").join(id).exists(),
            "{id}: runc state left"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(id.as_str()), "{id}: mount left");
        let cgroup = std::path::Path::new("/sys/fs/cgroup/memory/cri-server").join(id);
        tests::eventually(&format!("{id}: cgroup left"), || !cgroup.exists()).await;
    }
    assert!(!reserved(&half_pod), "the IP reservation is released");
    assert!(
        daemon.log().contains("half-made"),
        "the restart says what it removed"
    );
    daemon.remove_pod(&kept_pod).await;
    assert_eq!(processes_mentioning(&kept), 0);
}

/// A daemon killed after a delete moved a stopped container's runc state
/// aside (`oci_shim::runtime::retired_runc`) but before the background removed
/// its cgroups leaves them owed: the next start removes them.
#[tokio::test]
async fn cgroups_a_killed_daemon_still_owed_are_removed_at_the_next_start() {
    let mut daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(pod_config("owed-cgroups"), "runc").await;
    let id = daemon
        .create_started(&pod, container_config("gone", BUSYBOX, &["sleep", "600"]))
        .await;
    daemon.kill9();
    // The container ends while nobody watches; its runc state stays.
    let pid_file = daemon.dir().join("state/c").join(&id).join("container.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
    let killed = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    tests::eventually("the init reaped by its monitor", || !proc_dir.exists()).await;
    // What a kill between a delete's move and the removal leaves (the
    // chaos test reaches the same spot through the daemon's fault point
    // `runtime_delete.cgroups_owed`).
    // Under a handler no longer configured (a reload dropped it): swept
    // all the same.
    let retired = daemon.dir().join("state/retired/dropped-handler");
    std::fs::create_dir_all(&retired).unwrap();
    let runc_state = daemon.dir().join("state/runtimes/runc").join(&id);
    std::fs::rename(&runc_state, retired.join(&id)).unwrap();
    let cgroup = std::path::Path::new("/sys/fs/cgroup/memory/cri-server").join(&id);
    assert!(cgroup.is_dir(), "{} is not there", cgroup.display());

    daemon.restart().await;
    tests::eventually("the owed cgroup removed", || !cgroup.exists()).await;
    tests::eventually("the retired state removed", || !retired.join(&id).exists()).await;
    assert!(daemon.log().contains("deleted before the last stop"));
    // The container itself is still listed, exited, and removable.
    daemon.remove_container(&id).await;
    daemon.remove_pod(&pod).await;
}
