//! StartContainer: the monitor runs the runtime's `start`; the daemon then
//! watches for the exit.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use k8s_cri::v1 as cri;
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
    daemon
        .monitors
        .start(&id, &super::monitor_dir(daemon, &id))
        .await?;
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
