//! Issue 20: the threads a stop's wake-ups run on ask the kernel for a
//! short scheduler slice (`oci_shim::latency`): the daemon's async workers
//! and every container's monitor. Nothing they start inherits it: the
//! container runs on the kernel's default slice, as it would under any
//! other runtime.

use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX};

/// The slice the kernel's fair scheduler reports for a thread
/// (`/proc/<pid>/task/<tid>/sched`), in nanoseconds; `None` on a kernel
/// without per-task slices (before 6.12) or when the thread is gone.
fn slice_of(sched: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(sched).ok()?;
    let line = text.lines().find(|l| l.starts_with("se.slice"))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

/// Every thread of `pid`: (its name, its slice).
fn threads(pid: u32) -> Vec<(String, Option<u64>)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            (comm.trim().to_string(), slice_of(&t.path().join("sched")))
        })
        .collect()
}

const SHORT: u64 = 100_000;

#[tokio::test]
async fn the_daemon_and_the_monitors_wake_promptly_and_the_containers_are_left_alone() {
    if slice_of(std::path::Path::new("/proc/self/sched")).is_none() {
        eprintln!("skipped: this kernel reports no per-task slice (before 6.12)");
        return;
    }
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(pod_config("slice"), "").await;
    let container = daemon
        .create_started(&pod, container_config("app", BUSYBOX, &["sleep", "1000"]))
        .await;

    // The async workers ask once they first go idle, which every worker
    // has done by the time a call was answered.
    let daemon_threads = threads(daemon.pid());
    let workers: Vec<_> = daemon_threads
        .iter()
        .filter(|(name, _)| name == "tokio-rt-worker")
        .collect();
    assert!(
        workers.iter().any(|(_, slice)| *slice == Some(SHORT)),
        "a worker on the short slice: {daemon_threads:?}"
    );
    // The main thread and the threads it started keep the default.
    let (_, main_slice) = daemon_threads
        .iter()
        .find(|(name, _)| name == "cri-server")
        .expect("the main thread");
    assert_ne!(*main_slice, Some(SHORT));

    let state = daemon.dir().join("state/c").join(&container);
    let pid_in = |file: &str| -> u32 {
        let text = std::fs::read_to_string(state.join(file)).unwrap();
        text.trim().parse().unwrap()
    };
    let monitor = threads(pid_in("monitor.pid"));
    assert_eq!(monitor.len(), 1, "the monitor is one thread: {monitor:?}");
    assert_eq!(monitor[0].1, Some(SHORT), "the monitor: {monitor:?}");
    // Reset on fork: the runtime the monitor started, and so the
    // container, got the kernel's default.
    // StartContainer returns once runc started the init, which may still
    // be runc's own multi-threaded `init` a moment before its exec.
    let init_pid = pid_in("container.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut init = threads(init_pid);
    while init.iter().any(|(name, _)| name != "sleep") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        init = threads(init_pid);
    }
    assert!(
        init.iter()
            .all(|(_, slice)| slice.is_some() && *slice != Some(SHORT)),
        "the container's init: {init:?}"
    );
    assert_eq!(
        init.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![slice_of(std::path::Path::new("/proc/thread-self/sched"))],
        "the container's init runs on the slice this test has"
    );
}
