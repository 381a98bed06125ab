//! ContainerStatus: state, exit, times, image, mounts and log path.

use crate::daemon::Daemon;
use crate::error::Result;
use cri_api::v1 as cri;
use cri_spec::convert;
use sandbox_core::{Container, MountPropagation};
use std::collections::HashMap;
use std::sync::Arc;

/// The CRI metadata of `container`.
pub fn cri_metadata(container: &Container) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: container.metadata.name.clone(),
        attempt: container.metadata.attempt,
    }
}

/// The CRI image spec of `container`.
pub fn cri_image(container: &Container) -> cri::ImageSpec {
    cri::ImageSpec {
        image: container.image.clone(),
        ..Default::default()
    }
}

/// The CRI status of `container`.
pub fn cri_status(container: &Container) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: container.id.clone(),
        metadata: Some(cri_metadata(container)),
        state: convert::cri_container_state(container.state),
        created_at: container.created_at,
        started_at: container.started_at.unwrap_or(0),
        finished_at: container.finished_at.unwrap_or(0),
        exit_code: container.exit_code.unwrap_or(0),
        image: Some(cri_image(container)),
        image_ref: container.image_ref.clone(),
        image_id: container.image_ref.clone(),
        stop_signal: cri_spec::stop_signal::to_cri(&container.stop_signal),
        user: container.process_user.as_ref().map(|u| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i64::from(u.uid),
                gid: i64::from(u.gid),
                supplemental_groups: u.additional_gids.iter().map(|g| i64::from(*g)).collect(),
            }),
        }),
        reason: container.reason.clone(),
        message: container.message.clone(),
        labels: convert::cri_map(&container.labels),
        annotations: convert::cri_map(&container.annotations),
        mounts: container
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.to_string_lossy().into_owned(),
                host_path: m.host_path.to_string_lossy().into_owned(),
                readonly: m.readonly,
                selinux_relabel: m.selinux_relabel,
                propagation: (match m.propagation {
                    MountPropagation::Private => cri::MountPropagation::PropagationPrivate,
                    MountPropagation::HostToContainer => {
                        cri::MountPropagation::PropagationHostToContainer
                    }
                    MountPropagation::Bidirectional => {
                        cri::MountPropagation::PropagationBidirectional
                    }
                }) as i32,
                ..Default::default()
            })
            .collect(),
        log_path: container.log_path.to_string_lossy().into_owned(),
        resources: container
            .resources
            .as_ref()
            .map(cri_spec::resources::to_cri),
    }
}

/// Answers ContainerStatus for `id_or_prefix`.
pub async fn status(
    daemon: &Arc<Daemon>,
    id_or_prefix: &str,
    verbose: bool,
) -> Result<cri::ContainerStatusResponse> {
    let container = daemon.containers.get(id_or_prefix)?;
    let mut info = HashMap::new();
    if verbose {
        info.insert(
            "info".to_string(),
            serde_json::to_string(&*container).unwrap_or_default(),
        );
    }
    Ok(cri::ContainerStatusResponse {
        status: Some(cri_status(&container)),
        info,
    })
}
