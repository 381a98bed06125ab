//! ExecSync: a command in a running container, output captured (16 MiB per
//! stream), killed with all its children when the timeout passes.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use k8s_cri::v1 as cri;
use oci_shim::runtime::OciRuntime;
use sandbox_core::ContainerState;
use std::sync::Arc;
use std::time::Duration;

/// Without a timeout an exec may run this long; kubelet always sends one.
const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Runs `request.cmd` in `request.container_id`.
pub async fn exec_sync(
    daemon: &Arc<Daemon>,
    request: cri::ExecSyncRequest,
) -> Result<cri::ExecSyncResponse> {
    if request.cmd.is_empty() {
        return Err(Error::InvalidArgument("ExecSync: cmd is empty".into()));
    }
    let container = daemon.containers.get(&request.container_id)?;
    if container.state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {} is not running",
            container.id
        )));
    }
    let timeout = if request.timeout > 0 {
        Duration::from_secs(request.timeout as u64)
    } else {
        NO_TIMEOUT
    };
    let runtime = daemon.runtime(&container.runtime_handler)?;
    let result = runtime
        .exec_sync(&container.id, &request.cmd, timeout)
        .await?;
    if result.timed_out {
        return Err(Error::DeadlineExceeded(format!(
            "container {}: command {:?} timed out after {}s",
            container.id,
            request.cmd,
            timeout.as_secs()
        )));
    }
    Ok(cri::ExecSyncResponse {
        stdout: result.stdout,
        stderr: result.stderr,
        exit_code: result.exit_code,
    })
}
