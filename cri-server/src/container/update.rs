//! UpdateContainerResources: new cgroup limits for a running container.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use cri_api::v1 as cri;
use sandbox_core::ContainerState;
use std::sync::Arc;

/// Applies `request.linux` to the container's cgroup through the runtime.
pub async fn update(
    daemon: &Arc<Daemon>,
    request: cri::UpdateContainerResourcesRequest,
) -> Result<()> {
    let container = daemon.containers.get(&request.container_id)?;
    let Some(linux) = request.linux else {
        return Ok(());
    };
    if container.state != ContainerState::Running && container.state != ContainerState::Created {
        return Err(Error::FailedPrecondition(format!(
            "container {} is not running: its resources cannot change",
            container.id
        )));
    }
    let resources = cri_spec::resources::to_oci(&linux)
        .map_err(|e| Error::InvalidArgument(format!("container {}: {e}", container.id)))?;
    let _guard = daemon.locks.lock(&container.id).await;
    daemon
        .runtime(&container.runtime_handler)?
        .update(&container.id, &resources)
        .await?;
    let record = cri_spec::resources::to_record(&linux);
    let updated = daemon.containers.update(&container.id, |c| {
        c.resources = Some(record);
        c.clone()
    })?;
    daemon.save_container(&updated)
}
