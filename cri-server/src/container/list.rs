//! ListContainers with CRI's filters (id prefix, state, pod id, labels).

use crate::daemon::Daemon;
use cri_api::v1 as cri;
use cri_spec::convert;
use sandbox_core::ContainerFilter;
use std::sync::Arc;

/// The containers matching `filter`.
pub fn list(daemon: &Arc<Daemon>, filter: Option<cri::ContainerFilter>) -> Vec<cri::Container> {
    let filter = filter.unwrap_or_default();
    let state = match filter.state {
        Some(value) => match convert::container_state(value.state) {
            Some(state) => Some(state),
            None => return Vec::new(),
        },
        None => None,
    };
    let model_filter = ContainerFilter {
        id_prefix: Some(filter.id).filter(|id| !id.is_empty()),
        state,
        sandbox_id_prefix: Some(filter.pod_sandbox_id).filter(|id| !id.is_empty()),
        label_selector: convert::map(&filter.label_selector),
    };
    daemon
        .containers
        .list(&model_filter)
        .iter()
        .map(|c| cri::Container {
            id: c.id.clone(),
            pod_sandbox_id: c.sandbox_id.clone(),
            metadata: Some(super::status::cri_metadata(c)),
            image: Some(super::status::cri_image(c)),
            image_ref: c.image_ref.clone(),
            image_id: c.image_ref.clone(),
            state: convert::cri_container_state(c.state),
            created_at: c.created_at,
            labels: convert::cri_map(&c.labels),
            annotations: convert::cri_map(&c.annotations),
        })
        .collect()
}
