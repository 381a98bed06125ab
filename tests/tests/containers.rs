//! critest "Container runtime" specs beyond the basic lifecycle: volumes
//! (including a symlinked host path), logs and their reopening, execSync
//! with a timeout, removing a created or running container, containers run
//! one after another, resource updates, events. Those critest checks run
//! on both handlers (`HANDLERS`).

use cri_api::v1 as cri;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX, HANDLERS};
use tokio_stream::StreamExt;
use tonic::Code;

struct Pod {
    daemon: Daemon,
    id: String,
    logs: tempfile::TempDir,
}

/// A pod on the default (trusted) handler.
async fn pod(name: &str) -> Pod {
    pod_on(name, "").await
}

/// A pod on `handler` (`""`: the trust policy's choice), in a daemon of
/// its own.
async fn pod_on(name: &str, handler: &str) -> Pod {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let mut config = pod_config(name);
    config.log_directory = logs.path().to_string_lossy().into_owned();
    let id = daemon.run_pod(config, handler).await;
    Pod { daemon, id, logs }
}

impl Pod {
    async fn run(&self, config: cri::ContainerConfig) -> String {
        self.daemon.create_started(&self.id, config).await
    }

    /// RemoveContainer, after which ContainerStatus says NotFound.
    async fn remove_container(&self, id: &str, handler: &str) {
        self.daemon.remove_container(id).await;
        let mut rt = self.daemon.runtime().await;
        let gone = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound, "{handler}");
    }

    /// Creates (and does not start) a container that would sleep.
    async fn create_sleeper(&self, name: &str) -> String {
        let config = container_config(name, BUSYBOX, &["sleep", "600"]);
        self.daemon.create(&self.id, config).await
    }

    async fn exec(&self, id: &str, cmd: &[&str]) -> cri::ExecSyncResponse {
        self.daemon.exec(id, cmd).await
    }

    async fn status(&self, id: &str) -> cri::ContainerStatus {
        self.daemon.container_status(id).await
    }

    async fn remove(self) {
        self.daemon.remove_pod(&self.id).await;
    }
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("condition never became true within 5 s");
}

#[tokio::test]
async fn volume_with_a_symlinked_host_path() {
    for handler in HANDLERS {
        volume_with_a_symlinked_host_path_on(handler).await;
    }
}

async fn volume_with_a_symlinked_host_path_on(handler: &str) {
    let pod = pod_on(&format!("volume-{handler}"), handler).await;
    let host = tempfile::tempdir().unwrap();
    let real = host.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("from-host"), "hello from the host").unwrap();
    let link = host.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut config = container_config("vol", BUSYBOX, &["sleep", "600"]);
    config.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: link.to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let id = pod.run(config).await;
    let out = pod.exec(&id, &["cat", "/data/from-host"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from the host");
    let out = pod
        .exec(&id, &["sh", "-c", "echo back > /data/from-container"])
        .await;
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        std::fs::read_to_string(real.join("from-container")).unwrap(),
        "back\n"
    );
    let status = pod.status(&id).await;
    assert_eq!(status.mounts.len(), 1);
    assert_eq!(status.mounts[0].container_path, "/data");
    pod.remove().await;
}

#[tokio::test]
async fn log_and_reopen_log() {
    for handler in HANDLERS {
        log_and_reopen_log_on(handler).await;
    }
}

async fn log_and_reopen_log_on(handler: &str) {
    let pod = pod_on(&format!("logs-{handler}"), handler).await;
    let config = container_config(
        "talker",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "echo one; echo two >&2; until [ -e /tmp/go ]; do sleep 0.1; done; echo three; sleep 600",
        ],
    );
    let id = pod.run(config).await;
    let log = pod.logs.path().join("talker.log");
    wait_for(|| std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() >= 2)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (line, stream, content) in [(lines[0], "stdout", "one"), (lines[1], "stderr", "two")] {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(fields[1..], [stream, "F", content], "{line}");
        assert!(
            fields[0].contains('T') && fields[0].ends_with('Z'),
            "{line}"
        );
    }
    // Rotate as kubelet does: rename, reopen, then the next line lands in
    // the new file.
    std::fs::rename(&log, pod.logs.path().join("talker.log.1")).unwrap();
    pod.daemon
        .runtime()
        .await
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    assert!(log.exists());
    // Let it go on. (Not through its stdin pipe: gVisor cannot reopen
    // /proc/1/fd/0 for writing.)
    let out = pod.exec(&id, &["touch", "/tmp/go"]).await;
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let new_log = log.clone();
    wait_for(move || {
        let text = std::fs::read_to_string(&new_log).unwrap_or_default();
        text.contains("stdout F three")
    })
    .await;
    pod.remove().await;
}

#[tokio::test]
async fn exec_sync_timeout_is_deadline_exceeded() {
    let pod = pod("exectimeout").await;
    let id = pod
        .run(container_config("sleeper", BUSYBOX, &["sleep", "600"]))
        .await;
    let err = pod
        .daemon
        .runtime()
        .await
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    // Nothing of the exec is left running.
    let ps = pod.exec(&id, &["ps"]).await;
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 30"));
    pod.remove().await;
}

#[tokio::test]
async fn removing_a_running_container_stops_it_first() {
    for handler in HANDLERS {
        removing_a_running_container_stops_it_first_on(handler).await;
    }
}

async fn removing_a_running_container_stops_it_first_on(handler: &str) {
    let pod = pod_on(&format!("rmrunning-{handler}"), handler).await;
    let id = pod
        .run(container_config("sleeper", BUSYBOX, &["sleep", "600"]))
        .await;
    pod.remove_container(&id, handler).await;
    // Removing it again is fine.
    pod.daemon.remove_container(&id).await;
    pod.remove().await;
}

/// A created runc container is started, and a stopped one deleted,
/// without runc when that is all runc would do (`oci_shim`'s
/// `created_runc` and `stopped_runc`). Either way, removal must leave
/// what `runc delete` leaves: no cgroup
/// named after the container in any hierarchy, no runtime state. Both
/// ways are checked: containers owning their PID namespace (deleted
/// in-process), and containers sharing their pod's (runc deletes them,
/// killing what is left in the cgroup). One of each pair is stopped
/// first, one removed while running.
#[tokio::test]
async fn removal_leaves_no_cgroup_and_no_runtime_state() {
    for shared_pid in [false, true] {
        let daemon = Daemon::start("").await;
        daemon.pull(BUSYBOX).await;
        let config = pod_config(&format!("rmclean-{shared_pid}"));
        // CRI's zero value shares the pod's PID namespace; kubelet's
        // default gives each container its own.
        let config = match shared_pid {
            true => config,
            false => tests::fixtures::with_kubelet_namespaces(config, false),
        };
        let pod = daemon.run_pod(config, "runc").await;
        let sleeper = |name| container_config(name, BUSYBOX, &["sleep", "600"]);
        let stopped = daemon.create_started(&pod, sleeper("stopped")).await;
        let running = daemon.create_started(&pod, sleeper("running")).await;
        for id in [&stopped, &running] {
            assert!(!cgroups_named(id).is_empty(), "no cgroup found for {id}");
            // Started by its monitor through runc's exec fifo, not by
            // `runc start` (`oci_shim`'s `created_runc`).
            let monitor_log = daemon.dir().join("state/c").join(id).join("monitor.log");
            let diagnostics = std::fs::read_to_string(monitor_log).unwrap_or_default();
            assert!(
                !diagnostics.contains("through the runtime"),
                "{diagnostics}"
            );
        }
        daemon.stop_container(&stopped, 0).await;
        for id in [&stopped, &running] {
            daemon.remove_container(id).await;
            let state = daemon.dir().join("state/runtimes/runc").join(id);
            assert!(!state.exists(), "{} is left", state.display());
            // Removed after the call returns, when it was deleted
            // in-process (`oci_shim::runtime::retired_runc`).
            let what = format!("{id}'s cgroups left, shared pid: {shared_pid}");
            tests::eventually(&what, || cgroups_named(id).is_empty()).await;
            let retired = daemon.dir().join("state/retired/runc").join(id);
            assert!(!retired.exists(), "{} is left", retired.display());
        }
        let log = daemon.log();
        let through_runc = log
            .lines()
            .filter(|l| l.contains("deleting through the runtime"))
            .collect::<Vec<_>>();
        if shared_pid {
            assert_eq!(through_runc.len(), 2, "{through_runc:#?}");
            assert!(through_runc
                .iter()
                .all(|l| l.contains("shares a PID namespace")));
        } else {
            assert_eq!(through_runc, Vec::<&str>::new());
        }
        daemon.remove_pod(&pod).await;
    }
}

/// Every cgroup directory, in any hierarchy, whose name holds `id`.
fn cgroups_named(id: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, id: &str, depth: usize, found: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name().to_string_lossy().contains(id) {
                found.push(path);
            } else if depth > 0 {
                walk(&path, id, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), id, 4, &mut found);
    found
}

#[tokio::test]
async fn removing_a_created_container_on_both_handlers() {
    for handler in HANDLERS {
        let pod = pod_on(&format!("rmcreated-{handler}"), handler).await;
        let id = pod.create_sleeper("never").await;
        let status = pod.status(&id).await;
        assert_eq!(status.state, cri::ContainerState::ContainerCreated as i32);
        pod.remove_container(&id, handler).await;
        pod.remove().await;
    }
}

/// A created container left in a pod must not keep the pod from stopping:
/// on gVisor it has no process that a signal could end (runsc refuses to
/// signal it), and StopPodSandbox used to fail with "still running after
/// SIGKILL" forever.
#[tokio::test]
async fn a_pod_with_a_never_started_container_stops_on_both_handlers() {
    for handler in HANDLERS {
        let pod = pod_on(&format!("stopcreated-{handler}"), handler).await;
        let mut rt = pod.daemon.runtime().await;
        let id = pod.create_sleeper("never").await;
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{handler}: {e}\n{}", pod.daemon.log()));
        let status = pod.status(&id).await;
        assert_eq!(
            status.state,
            cri::ContainerState::ContainerExited as i32,
            "{handler}"
        );
        pod.remove().await;
    }
}

/// Run-to-completion containers one after another in one pod, as a Job's
/// init containers are: each starts, exits and reports its log, whether or
/// not the one before was removed. gVisor 2022-12 refuses to start a
/// container beside an exited one ("creating process: out of memory")
/// unless the daemon takes the exited one out of the sandbox.
#[tokio::test]
async fn containers_run_to_completion_one_after_another_on_both_handlers() {
    for handler in HANDLERS {
        let pod = pod_on(&format!("sequence-{handler}"), handler).await;
        let mut ids = Vec::new();
        for step in 0..3 {
            let name = format!("step{step}");
            let id = pod
                .run(container_config(&name, BUSYBOX, &["echo", &name]))
                .await;
            let log = pod.logs.path().join(format!("{name}.log"));
            let status = pod.daemon.wait_exited(&id).await;
            assert_eq!(status.exit_code, 0, "{handler} {name}: {status:?}");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.contains(&format!("stdout F {name}")),
                "{handler}: {text}"
            );
            ids.push(id);
        }
        // On gVisor an exited container has left the sandbox by the time it
        // reads exited (so RemoveContainer has no `runsc delete` to wait for).
        if handler == "runsc" {
            let root = pod.daemon.dir().join("state/runtimes/runsc");
            for id in &ids {
                let state = std::process::Command::new("runsc")
                    .arg("--root")
                    .arg(&root)
                    .args(["state", id])
                    .output()
                    .unwrap();
                assert!(!state.status.success(), "{id} still in the sandbox");
            }
        }
        for id in ids {
            pod.remove_container(&id, handler).await;
        }
        pod.remove().await;
    }
}

#[tokio::test]
async fn update_resources_changes_the_cgroup_live() {
    let pod = pod("update").await;
    let mut config = container_config("limited", BUSYBOX, &["sleep", "600"]);
    config.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = pod.run(config).await;
    let limit = |pod: &Pod| {
        let _ = pod;
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory/cri-server/{id}/memory.limit_in_bytes"
        ))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
    };
    assert_eq!(limit(&pod), (64u64 << 20).to_string());
    pod.daemon
        .runtime()
        .await
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limit(&pod), (96u64 << 20).to_string());
    // ContainerStatus reports the limits now in force.
    let reported = pod.status(&id).await.resources.and_then(|r| r.linux);
    assert_eq!(reported.map(|l| l.memory_limit_in_bytes), Some(96 << 20));
    let bad = pod
        .daemon
        .runtime()
        .await
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                cpu_shares: -1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("cpu_shares"), "{bad}");
    pod.remove().await;
}

#[tokio::test]
async fn container_events_are_streamed() {
    for handler in HANDLERS {
        container_events_are_streamed_on(handler).await;
    }
}

async fn container_events_are_streamed_on(handler: &str) {
    let pod = pod_on(&format!("events-{handler}"), handler).await;
    let mut events = pod
        .daemon
        .runtime()
        .await
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let id = pod
        .run(container_config("evented", BUSYBOX, &["sleep", "600"]))
        .await;
    pod.daemon
        .runtime()
        .await
        .remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("stream open")
            .unwrap();
        assert_eq!(event.container_id, id);
        seen.push(event.container_event_type);
    }
    use cri::ContainerEventType as E;
    assert_eq!(
        seen,
        [
            E::ContainerCreatedEvent as i32,
            E::ContainerStartedEvent as i32,
            E::ContainerStoppedEvent as i32,
            E::ContainerDeletedEvent as i32
        ]
    );
    pod.remove().await;
}

#[tokio::test]
async fn readonly_rootfs_refuses_writes_and_writable_accepts_them() {
    let pod = pod("rootfs").await;
    for (name, readonly) in [("ro", true), ("rw", false)] {
        let mut config = container_config(name, BUSYBOX, &["sleep", "600"]);
        config.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                readonly_rootfs: readonly,
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = pod.run(config).await;
        let out = pod.exec(&id, &["sh", "-c", "echo x > /written"]).await;
        assert_eq!(out.exit_code != 0, readonly, "{name}: {out:?}");
    }
    pod.remove().await;
}

#[tokio::test]
async fn a_container_past_its_memory_limit_is_oom_killed() {
    let pod = pod("oom").await;
    let mut config = container_config(
        "hog",
        BUSYBOX,
        // tail keeps a line with no newline whole: it grows without bound.
        &["sh", "-c", "tail /dev/zero"],
    );
    config.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            memory_swap_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = pod.run(config).await;
    let mut status = pod.status(&id).await;
    for _ in 0..100 {
        if status.state == cri::ContainerState::ContainerExited as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = pod.status(&id).await;
    }
    assert_eq!(status.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 137);
    assert_eq!(status.reason, "OOMKilled");
    // A plain SIGKILL is an Error, not an OOM kill.
    let other = pod
        .run(container_config("killed", BUSYBOX, &["sleep", "600"]))
        .await;
    pod.daemon.stop_container(&other, 0).await;
    let killed = pod.status(&other).await;
    assert_eq!((killed.exit_code, killed.reason.as_str()), (137, "Error"));
    pod.remove().await;
}
