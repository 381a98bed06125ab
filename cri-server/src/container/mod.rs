//! Container verbs, one per file: `create`, `start`, `stop`, `remove`,
//! `status`, `list`, `exec_sync`, `reopen_log`, `update` (with
//! `resources`, the CRI → OCI conversion); the security context
//! (`security`, with `seccomp` profiles), the host side of volume
//! `mount_propagation`, `userns_volumes` and `userns_root` for pods with a user namespace;
//! plus what they share about exits.

pub mod create;
pub mod exec_sync;
pub mod list;
pub mod mount_propagation;
pub mod remove;
pub mod reopen_log;
pub mod runtime_view;
pub mod start;
pub mod status;
pub mod stop;
pub mod update;
pub mod userns_root;
pub mod userns_volumes;

use crate::daemon::Daemon;
use crate::layout::Layout;
use cri_api::v1 as cri;
use oci_shim::monitor::protocol::ExitRecord;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// CRI's reason for an exit: `Completed` for 0, `OOMKilled` when the kernel's
/// OOM killer ended it, `Error` otherwise.
pub fn exit_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Whether container `id`'s monitor (state in `monitor_dir`) reports an
/// exit (or is gone).
pub async fn has_exited(daemon: &Daemon, id: &str, monitor_dir: &Path) -> bool {
    !matches!(daemon.monitors.exited(id, monitor_dir).await, Ok(None))
}

/// Waits up to `timeout` for container `id` to exit; `None` if it still runs.
pub async fn wait_exit(
    daemon: &Daemon,
    id: &str,
    monitor_dir: &Path,
    timeout: Duration,
) -> Option<ExitRecord> {
    tokio::time::timeout(timeout, daemon.monitors.wait(id, monitor_dir))
        .await
        .ok()
        .and_then(Result::ok)
}

/// Records container `id`'s exit (once: a second call changes nothing),
/// saves the record and announces the stop.
pub async fn record_exit(daemon: &Arc<Daemon>, id: &str, exit: &ExitRecord) {
    record_exit_then_delete(daemon, id, exit, None).await
}

/// [`record_exit`], deleting the runtime's state of the container before
/// the record is saved when `runtime` is given: StopContainer does, so
/// that RemoveContainer (kubelet's next call) has no runtime process to
/// run, as containerd's task delete at stop. The cgroup goes with it, so
/// the OOM killer's count is read first. A failed delete is left to
/// RemoveContainer's forced one.
pub async fn record_exit_then_delete(
    daemon: &Arc<Daemon>,
    id: &str,
    exit: &ExitRecord,
    runtime: Option<&Arc<dyn oci_shim::runtime::OciRuntime>>,
) {
    if let Some(container) = mark_exit_then_delete(daemon, id, exit, runtime).await {
        save_exit(daemon, container).await;
    }
}

/// [`record_exit`] for StopPodSandbox, which does not wait for the saves:
/// the container is exited in memory (and announced) on return, and its
/// record is saved behind the stop. A stop that recorded the exit before
/// the watcher did waited for its fsync, 3–5 ms of the slowest pod stops
/// at 110 pods. Nothing is lost to a crash meanwhile: the monitor's
/// `exit.json` gives the exit to the restart that finds the record still
/// running, and the save writes only over a record still on disk, so a
/// pod removed before it lands stays removed.
pub async fn record_exit_behind(daemon: &Arc<Daemon>, id: &str, exit: &ExitRecord) {
    if let Some(container) = mark_exit_then_delete(daemon, id, exit, None).await {
        tokio::spawn(save_exit(daemon, container));
    }
}

/// Saves a container's recorded exit, warning when it cannot.
fn save_exit(
    daemon: &Arc<Daemon>,
    container: sandbox_core::Container,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let id = container.id.clone();
    let saving = daemon.save_existing_container(container);
    async move {
        if let Err(e) = saving.await {
            // Memory has the exit; the monitor's `exit.json` gives it
            // again to a restart that finds the record still running.
            tracing::warn!(container = %id, error = %e, "saving a container's exit");
        }
    }
}

/// Marks container `id` exited in memory (after deleting its runtime
/// state when `runtime` is given) and announces it; the container to
/// save, or `None` when it was marked before.
async fn mark_exit_then_delete(
    daemon: &Arc<Daemon>,
    id: &str,
    exit: &ExitRecord,
    runtime: Option<&Arc<dyn oci_shim::runtime::OciRuntime>>,
) -> Option<sandbox_core::Container> {
    let at = exit.finished_at_unix_nanos as i64;
    // The cgroup outlives the process until the runtime deletes the
    // container, so the OOM killer's count can still be read here.
    let oom_killed = exit.exit_code == 128 + libc::SIGKILL
        && daemon.containers.get(id).is_ok_and(|c| {
            let parent = daemon
                .sandboxes
                .get(&c.sandbox_id)
                .map(|s| s.cgroup_parent.clone())
                .unwrap_or_default();
            cgroups::Hierarchy::detect().oom_kills(&daemon.cgroup_dir(&parent, id)) > 0
        });
    let deleted = match runtime {
        Some(runtime) => match runtime.delete(id, false).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "delete after stop; RemoveContainer forces it");
                false
            }
        },
        None => false,
    };
    let changed = daemon.containers.update(id, |c| {
        c.runtime_deleted |= deleted;
        c.mark_exited(
            at,
            exit.exit_code,
            exit_reason(exit.exit_code, oom_killed),
            "",
        )
        .ok()
        .map(|_| c.clone())
    });
    let container = changed.ok().flatten()?;
    tracing::info!(container = %id, code = exit.exit_code, "container exited");
    daemon.emit(id, cri::ContainerEventType::ContainerStoppedEvent);
    Some(container)
}

/// Whether `container` runs on a gVisor (runsc) handler.
pub fn on_gvisor(daemon: &Daemon, container: &sandbox_core::Container) -> bool {
    daemon.on_gvisor(&container.runtime_handler)
}

/// Records an exit the watcher saw. A gVisor container leaves its sandbox
/// first, so that it reads as exited only once it is gone from there.
///
/// gVisor (2022-12) refuses to start any new container in a sandbox that
/// still holds an exited one ("creating process: out of memory"; found
/// with crictl: a pod's second run-to-completion container could never
/// start). Deleting at the exit, not at RemoveContainer, also spares
/// kubelet's RemoveContainer runsc's 1–2 s delete. It runs under the
/// container's lock, so a stop or a removal that got there first leaves
/// nothing to do; a failed delete is left to RemoveContainer's forced one.
pub async fn record_watched_exit(daemon: &Arc<Daemon>, id: &str, exit: &ExitRecord) {
    let gvisor = daemon
        .containers
        .get(id)
        .is_ok_and(|c| on_gvisor(daemon, &c));
    if !gvisor {
        return record_exit(daemon, id, exit).await;
    }
    let _guard = daemon.locks.lock(id).await;
    let Ok(container) = daemon.containers.get(id) else {
        return;
    };
    if container.state == sandbox_core::ContainerState::Exited {
        return;
    }
    let runtime = daemon.runtime(&container.runtime_handler).ok();
    record_exit_then_delete(daemon, id, exit, runtime.as_ref()).await;
}

/// The gVisor half of [`record_watched_exit`] for a container whose exit
/// the daemon found at start-up (it exited while the daemon was down).
pub async fn delete_exited_from_gvisor(daemon: &Arc<Daemon>, id: &str) {
    let _guard = daemon.locks.lock(id).await;
    let Ok(container) = daemon.containers.get(id) else {
        return;
    };
    if container.runtime_deleted || !on_gvisor(daemon, &container) {
        return;
    }
    let Ok(runtime) = daemon.runtime(&container.runtime_handler) else {
        return;
    };
    if let Err(e) = runtime.delete(id, false).await {
        tracing::debug!(container = %id, error = %e, "delete after exit; RemoveContainer forces it");
        return;
    }
    let updated = daemon.containers.update(id, |c| {
        c.runtime_deleted = true;
        c.clone()
    });
    if let Ok(container) = updated {
        let _ = daemon.save_container(&container);
    }
}

/// The monitor state directory of workload container `id`.
pub fn monitor_dir(daemon: &Daemon, id: &str) -> std::path::PathBuf {
    Layout::monitor(&daemon.layout.container_dir(id))
}

#[cfg(test)]
mod exit_tests {
    use super::*;
    use crate::testing::{exit, ready_pod, running_container, Doubles};

    #[tokio::test(flavor = "multi_thread")]
    async fn an_exited_gvisor_container_leaves_its_sandbox_before_it_reads_exited() {
        let mut d = Doubles::new();
        let mut runsc = oci_shim::runtime::MockOciRuntime::new();
        runsc.expect_name().return_const("runsc".to_string());
        runsc
            .expect_delete()
            .withf(|_, force| !*force)
            .times(1)
            .returning(|_, _| Ok(()));
        d.runsc = Some(runsc);
        // runc's exits are only recorded: the doubles panic on a delete.
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let on_runc = running_container(&t.daemon, &pod, "runc-app");
        let on_gvisor = running_container(&t.daemon, &pod, "gvisor-app");
        t.daemon
            .containers
            .update(&on_gvisor, |c| c.runtime_handler = "runsc".into())
            .unwrap();

        for id in [&on_runc, &on_gvisor] {
            record_watched_exit(&t.daemon, id, &exit(0)).await;
            // A second sighting (a stop that saw it too) changes nothing.
            record_watched_exit(&t.daemon, id, &exit(1)).await;
        }

        let records: Vec<sandbox_core::Container> = t.daemon.container_records.load_all();
        for c in records {
            assert_eq!(c.state, sandbox_core::ContainerState::Exited, "{}", c.name);
            assert_eq!(c.exit_code, Some(0), "{}", c.name);
            assert_eq!(c.runtime_deleted, c.id == on_gvisor, "{}", c.name);
        }
    }
}
