//! StartContainer: the monitor runs the runtime's `start`; the daemon then
//! watches for the exit.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use cri_api::v1 as cri;
use oci_shim::runtime::ContainerStatus;
use sandbox_core::ContainerState;
use std::sync::Arc;

/// Starts created container `id_or_prefix`.
pub async fn start(daemon: &Arc<Daemon>, id_or_prefix: &str) -> Result<()> {
    let id = daemon.containers.resolve(id_or_prefix)?;
    let _guard = daemon.locks.lock(&id).await;
    let container = daemon.containers.get(&id)?;
    if container.state != ContainerState::Created {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is {:?}, not created: it can only be started once",
            container.state
        )));
    }
    if let Err(e) = daemon
        .monitors
        .start(&id, &super::monitor_dir(daemon, &id))
        .await
    {
        if !started_before(daemon, &container).await {
            record_start_failure(daemon, &container, &e.to_string()).await;
            return Err(e.into());
        }
        tracing::info!(container = %id, "already started by an earlier attempt");
    }
    crate::fault::point("start_container.started");
    // The init's pid is known from create; if it has exited already, the
    // watcher records how.
    let pid = container.pid.unwrap_or(0);
    let now = sandbox_core::timestamp::now();
    let updated = daemon.containers.try_update(&id, |c| {
        c.mark_started(now, pid)?;
        Ok::<_, sandbox_core::Error>(c.clone())
    })?;
    daemon.save_container(&updated)?;
    crate::watch::watch_container(daemon, &id);
    daemon.emit(&id, cri::ContainerEventType::ContainerStartedEvent);
    Ok(())
}

/// Exit code and reason of a container whose start failed, as containerd
/// reports them.
const START_ERROR: (i32, &str) = (128, "StartError");

/// Ends a container whose start failed, as containerd and CRI-O do: it is
/// exited with reason `StartError` and the failure as its message, and it
/// cannot be started again (kubelet creates a new attempt).
///
/// Leaving it "created" is not harmless: a gVisor sub-container whose start
/// failed stays "created" in the sandbox with no process of its own, so no
/// signal can ever end it and every later StopPodSandbox failed with "still
/// running after SIGKILL". So what the runtime holds of it is deleted by
/// force now (which also ends a runc init still waiting to exec), and a
/// monitor still waiting for a start that never came is retired. A failed
/// delete is left to RemoveContainer, which forces it again.
async fn record_start_failure(
    daemon: &Arc<Daemon>,
    container: &sandbox_core::Container,
    error: &str,
) {
    let id = &container.id;
    let deleted = match daemon.runtime(&container.runtime_handler) {
        Ok(runtime) => runtime.delete(id, true).await.map_err(|e| {
            tracing::warn!(container = %id, error = %e, "deleting a container whose start failed");
        }),
        Err(_) => Err(()),
    }
    .is_ok();
    daemon
        .monitors
        .retire(id, &super::monitor_dir(daemon, id))
        .await;
    let (code, reason) = START_ERROR;
    let now = sandbox_core::timestamp::now();
    let updated = daemon.containers.update(id, |c| {
        c.runtime_deleted |= deleted;
        c.mark_exited(now, code, reason, error)
            .ok()
            .map(|_| c.clone())
    });
    if let Ok(Some(updated)) = updated {
        if let Err(e) = daemon.save_container(&updated) {
            tracing::warn!(container = %id, error = %e, "saving a start failure");
        }
        daemon.emit(id, cri::ContainerEventType::ContainerStoppedEvent);
    }
}

/// Whether the runtime has started `container` already though its record
/// says "created": the runtime's `start` of a call whose daemon was killed
/// can finish after the restarted daemon read the runtime's state. Kubelet's
/// retry then finds it started, and the start counts as done.
async fn started_before(daemon: &Daemon, container: &sandbox_core::Container) -> bool {
    let Ok(runtime) = daemon.runtime(&container.runtime_handler) else {
        return false;
    };
    runtime.state(&container.id).await.is_ok_and(|state| {
        matches!(
            state.status,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Stopped
        )
    })
}

#[cfg(test)]
mod verb_tests {
    use super::*;
    use crate::testing::{ready_pod, Doubles};

    /// A created container in a new pod.
    fn created(daemon: &Daemon) -> String {
        let pod = ready_pod(daemon, "p");
        let sandbox = daemon.sandboxes.get(&pod).unwrap();
        let id = sandbox_core::id::generate().unwrap();
        let mut container = sandbox_core::Container::new(
            id.clone(),
            &sandbox,
            sandbox_core::ContainerMetadata::new("c", 0),
        );
        container.runtime_handler = "runc".into();
        container.pid = Some(4242);
        daemon.containers.add(container).unwrap();
        id
    }

    fn refused_start(d: &mut Doubles) {
        d.monitors.expect_start().times(1).returning(|id, _| {
            Err(oci_shim::Error::Monitor {
                id: id.into(),
                reason: "start failed: cannot start container in state running".into(),
            })
        });
    }

    fn runtime_says(d: &mut Doubles, status: &'static str) {
        d.runc.expect_state().times(1).returning(move |_| {
            Ok(serde_json::from_value(
                serde_json::json!({"id": "c", "pid": 4242, "status": status}),
            )
            .unwrap())
        });
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_start_the_runtime_already_made_counts_as_done() {
        let mut d = Doubles::new();
        refused_start(&mut d);
        runtime_says(&mut d, "running");
        d.monitors.expect_wait().returning(|id, _| {
            Err(oci_shim::Error::Monitor {
                id: id.into(),
                reason: "test: gone".into(),
            })
        });
        let t = d.build().await;
        let id = created(&t.daemon);

        start(&t.daemon, &id).await.unwrap();

        let records: Vec<sandbox_core::Container> = t.daemon.container_records.load_all();
        assert_eq!(records[0].state, ContainerState::Running);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_start_that_failed_ends_the_container_with_start_error() {
        let mut d = Doubles::new();
        refused_start(&mut d);
        runtime_says(&mut d, "created");
        // What the runtime holds of it goes now, by force: a gVisor
        // sub-container whose start failed can never be signalled.
        d.runc
            .expect_delete()
            .withf(|_, force| *force)
            .times(1)
            .returning(|_, _| Ok(()));
        let t = d.build().await;
        let id = created(&t.daemon);

        let err = start(&t.daemon, &id).await.unwrap_err();

        assert!(err.to_string().contains("cannot start"), "{err}");
        let records: Vec<sandbox_core::Container> = t.daemon.container_records.load_all();
        let container = &records[0];
        assert_eq!(container.state, ContainerState::Exited);
        assert_eq!(
            (container.exit_code, container.reason.as_str()),
            (Some(128), "StartError")
        );
        assert!(container.message.contains("cannot start"), "{container:?}");
        assert!(container.runtime_deleted);
        // Not startable again; stopping it is a no-op (no runtime call:
        // the doubles would panic on one).
        assert!(start(&t.daemon, &id).await.is_err());
        crate::container::stop::stop(&t.daemon, &id, 10)
            .await
            .unwrap();
    }
}
