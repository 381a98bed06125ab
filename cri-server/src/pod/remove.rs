//! RemovePodSandbox: stop the pod if needed, remove its containers, the infra
//! container, its directories, its name and its record. Idempotent: removing
//! a removed pod succeeds.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use oci_shim::runtime::OciRuntime;
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

    let filter = ContainerFilter {
        sandbox_id_prefix: Some(id.clone()),
        ..ContainerFilter::default()
    };
    for container in daemon.containers.list(&filter) {
        if container.sandbox_id == id {
            crate::container::remove::remove_locked(daemon, &container.id).await?;
        }
    }

    if sandbox.infra_container.is_some() {
        let runtime = daemon.runtime(&sandbox.runtime_handler)?;
        runtime.delete(&id, true).await?;
    }
    // The root of an infra container from `pause_image` (none for the
    // built-in pause).
    daemon.images.remove_rootfs(&id).await?;
    let dir = daemon.layout.sandbox_dir(&id);
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::internal(dir.display(), e)),
    }
    daemon
        .sandbox_records
        .remove(&id)
        .map_err(|e| Error::internal(format!("pod {id}"), e))?;
    daemon.pod_names.release_by_id(&id);
    let _ = daemon.sandboxes.remove(&id);
    tracing::info!(pod = %sandbox.name, id = %id, "pod removed");
    Ok(())
}
