//! RemoveContainer: stop it if it runs, then delete it from the runtime,
//! unmount its root filesystem and forget it. Idempotent.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::layout::Layout;
use cri_api::v1 as cri;
use std::sync::Arc;

/// Removes container `id_or_prefix`.
pub async fn remove(daemon: &Arc<Daemon>, id_or_prefix: &str) -> Result<()> {
    let id = match daemon.containers.resolve(id_or_prefix) {
        Ok(id) => id,
        Err(sandbox_core::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let _guard = daemon.locks.lock(&id).await;
    remove_locked(daemon, &id).await
}

/// Removes container `id` (a full id) while its lock (or its pod's) is held.
pub async fn remove_locked(daemon: &Arc<Daemon>, id: &str) -> Result<()> {
    let Ok(container) = daemon.containers.get(id) else {
        return Ok(());
    };
    // As for pods: a failed stop does not keep the container forever; the
    // forced delete below kills what is left.
    if let Err(e) = super::stop::stop_locked(daemon, id, 0).await {
        tracing::warn!(container = %id, error = %e, "stop before removal failed; removing by force");
    }
    let started = std::time::Instant::now();
    // Re-read: the stop above may just have deleted it.
    let stopped = daemon.containers.get(id).ok();
    let deleted = stopped.as_ref().is_some_and(|c| c.runtime_deleted);
    if !deleted {
        let runtime = daemon.runtime(&container.runtime_handler)?;
        runtime.delete(id, true).await?;
    }
    let dir = daemon.layout.container_dir(id);
    if super::on_gvisor(daemon, &container) {
        crate::orphans::remove_leftover_cgroup(id, &dir).await;
    }
    // Only a pod with a user namespace has these (or a pod no longer
    // known, to be safe); others skip the blocking hops.
    let userns = daemon
        .sandboxes
        .get(&container.sandbox_id)
        .map_or(true, |s| s.userns_path.is_some());
    if userns {
        super::userns_root::release(&dir).await;
    }
    let runtime_done = started.elapsed();
    daemon.images.remove_rootfs(id).await?;
    let rootfs_done = started.elapsed();
    if userns {
        super::userns_volumes::release(daemon.layout.staged_volumes(id)).await;
    }
    // A monitor outlives its container only if the stop did not see the
    // exit (gVisor slow to die): see oci_shim::monitor::retire.
    let exited = stopped.is_some_and(|c| c.state == sandbox_core::ContainerState::Exited);
    if !exited {
        daemon.monitors.retire(id, &Layout::monitor(&dir)).await;
    }
    crate::discard::discard(&daemon.layout, &daemon.pod_calls, &dir)
        .await
        .map_err(|e| Error::internal(dir.display(), e))?;
    daemon
        .remove_record(crate::daemon::RecordKind::Container, id)
        .await?;
    daemon.container_names.release_by_id(id);
    daemon.container_creations.forget_id(id);
    daemon.cpu_rates.forget(id);
    daemon.layer_usage.forget(id);
    let _ = daemon.containers.remove(id);
    // After the store: a stats read that took the files keeps them only
    // while the container is in the store (FileCache::keep).
    daemon.stats_files.forget(id);
    daemon.emit(id, cri::ContainerEventType::ContainerDeletedEvent);
    // Per-phase timings, for where a removal's time goes under load.
    tracing::debug!(container = %id, ?runtime_done, ?rootfs_done, elapsed = ?started.elapsed(), "container removed");
    Ok(())
}

#[cfg(test)]
mod verb_tests {
    use super::*;
    use crate::testing::{ready_pod, running_container, Doubles};

    /// A container its stop already deleted from the runtime: removal runs
    /// no runtime command (the doubles would panic on an unexpected one).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_container_its_stop_deleted_needs_no_runtime_call() {
        let mut d = Doubles::new();
        d.images
            .expect_remove_rootfs()
            .times(1)
            .returning(|_| Ok(()));
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let id = running_container(&t.daemon, &pod, "app");
        t.daemon
            .containers
            .update(&id, |c| {
                c.mark_exited(sandbox_core::timestamp::now(), 0, "Completed", "")
                    .unwrap();
                c.runtime_deleted = true;
            })
            .unwrap();
        remove(&t.daemon, &id).await.unwrap();
        assert!(t.daemon.containers.get(&id).is_err());
    }
}
