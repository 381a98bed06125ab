//! ReopenContainerLog: the monitor closes and reopens the log file (after
//! kubelet rotated it).

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use oci_shim::monitor::MonitorClient;
use sandbox_core::ContainerState;
use std::sync::Arc;

/// Reopens the log of running container `id_or_prefix`.
pub async fn reopen_log(daemon: &Arc<Daemon>, id_or_prefix: &str) -> Result<()> {
    let container = daemon.containers.get(id_or_prefix)?;
    if container.state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {} is not running",
            container.id
        )));
    }
    let socket =
        super::monitor_dir(daemon, &container.id).join(oci_shim::monitor::protocol::SOCKET_NAME);
    let mut client = MonitorClient::connect(&container.id, &socket).await?;
    client.reopen_log().await?;
    Ok(())
}
