//! RemovePodSandbox: stop the pod if needed, remove its containers, the infra
//! container, its directories, its name and its record. Idempotent: removing
//! a removed pod succeeds.

use crate::daemon::{Daemon, RecordKind};
use crate::error::{Error, Result};
use crate::layout::Layout;
use sandbox_core::ContainerFilter;
use std::sync::Arc;

/// Removes pod `id_or_prefix`.
pub async fn remove(daemon: &Arc<Daemon>, id_or_prefix: &str) -> Result<()> {
    let id = match daemon.sandboxes.resolve(id_or_prefix) {
        Ok(id) => id,
        Err(sandbox_core::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let _guard = daemon.locks.lock(&id).await;
    let Ok(sandbox) = daemon.sandboxes.get(&id) else {
        return Ok(());
    };
    // Removal goes on when stopping fails (a runtime that cannot kill what
    // it half-started): the forced deletes below end what is left, and a
    // pod that can never be removed is worse than a logged error.
    if let Err(e) = super::stop::stop_locked(daemon, &id).await {
        tracing::warn!(pod = %id, error = %e, "stop before removal failed; removing by force");
    }
    // The network's release (CNI DEL, most of a removal) runs in the task
    // the stop started; removal does not wait for it (see pod::release).
    let filter = ContainerFilter {
        sandbox_id_prefix: Some(id.clone()),
        ..ContainerFilter::default()
    };
    let removals = daemon
        .containers
        .list(&filter)
        .into_iter()
        .filter(|c| c.sandbox_id == id)
        .map(|c| async move { crate::container::remove::remove_locked(daemon, &c.id).await });
    for r in futures_util::future::join_all(removals).await {
        r?;
    }

    let dir = daemon.layout.sandbox_dir(&id);
    if sandbox.infra_container.is_some() {
        let runtime = daemon.runtime(&sandbox.runtime_handler)?;
        runtime.delete(&id, true).await?;
        if daemon.on_gvisor(&sandbox.runtime_handler) {
            crate::orphans::remove_leftover_cgroup(&id, &dir).await;
        }
    }
    // The root of an infra container from `pause_image` (none for the
    // built-in pause), and its bind for a pod with a user namespace.
    if sandbox.userns_path.is_some() {
        crate::container::userns_root::release(&dir).await;
    }
    daemon.images.remove_rootfs(&id).await?;
    // A monitor still waiting (gVisor's sandbox slow to die after a stop
    // gave up) would outlive its directory: see oci_shim::monitor::retire.
    let infra_exited = daemon.sandboxes.get(&id).is_ok_and(|s| {
        s.infra_container
            .as_ref()
            .is_none_or(|i| i.state == sandbox_core::ContainerState::Exited)
    });
    if !infra_exited {
        daemon.monitors.retire(&id, &Layout::monitor(&dir)).await;
    }
    crate::discard::discard(&daemon.layout, &daemon.pod_calls, &dir)
        .await
        .map_err(|e| Error::internal(dir.display(), e))?;
    crate::fault::point("remove_pod_sandbox.before_record_removed");
    // A release still to run or finish reads the pod from here from now on.
    let pending = daemon
        .sandboxes
        .get(&id)
        .ok()
        .filter(|s| s.network_release_pending);
    if let Some(pending) = &pending {
        daemon.removed_pods.hold((**pending).clone());
    }
    daemon.remove_record(RecordKind::Pod, &id).await?;
    daemon.pod_names.release_by_id(&id);
    daemon.pod_creations.forget_id(&id);
    let _ = daemon.sandboxes.remove(&id);
    if pending.is_some() {
        // Runs after the stop's task, if that one still runs (the release
        // lock), and then finds nothing left to do; otherwise it releases.
        super::release::release_later(daemon, &id);
    }
    tracing::info!(pod = %sandbox.name, id = %id, "pod removed");
    Ok(())
}

#[cfg(test)]
mod verb_tests {
    use super::*;
    use crate::testing::{exit, networked_pod, Doubles};

    #[tokio::test(flavor = "multi_thread")]
    async fn removing_twice_succeeds_and_undoes_each_resource_once() {
        let mut d = Doubles::new();
        d.monitors
            .expect_kill()
            .withf(|_, _, signal, _| *signal == libc::SIGKILL)
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        d.monitors
            .expect_wait()
            .times(1)
            .returning(|_, _| Ok(exit(137)));
        d.network.expect_teardown().times(1).returning(|_| Ok(()));
        d.runc.expect_delete().times(1).returning(|_, _| Ok(()));
        d.images
            .expect_remove_rootfs()
            .times(1)
            .returning(|_| Ok(()));
        let t = d.build().await;
        let id = networked_pod(&t.daemon, "web");
        let name = t.daemon.sandboxes.get(&id).unwrap().name.clone();

        remove(&t.daemon, &id).await.unwrap();
        assert!(t.daemon.sandboxes.get(&id).is_err());
        assert_eq!(t.daemon.pod_names.get(&name), None);
        // The network's release finishes after the removal, from
        // `removed_pods`, once.
        crate::testing::removals_released(&t.daemon).await;
        assert!(!t.daemon.layout.sandbox_dir(&id).exists());
        assert!(t
            .daemon
            .sandbox_records
            .load_all::<sandbox_core::Sandbox>()
            .is_empty());
        // Again, by id and by a prefix nobody holds any more: nothing to do.
        remove(&t.daemon, &id).await.unwrap();
        remove(&t.daemon, &id[..8]).await.unwrap();
    }
}
