//! ListPodSandbox with CRI's filters (id prefix, state, label selector).

use crate::daemon::Daemon;
use cri_api::v1 as cri;
use cri_spec::convert;
use sandbox_core::SandboxFilter;
use std::sync::Arc;

/// The pods matching `filter`.
pub fn list(daemon: &Arc<Daemon>, filter: Option<cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
    let filter = filter.unwrap_or_default();
    let state = match filter.state {
        Some(value) => match convert::sandbox_state(value.state) {
            Some(state) => Some(state),
            // A state that does not exist matches nothing.
            None => return Vec::new(),
        },
        None => None,
    };
    let model_filter = SandboxFilter {
        id_prefix: Some(filter.id).filter(|id| !id.is_empty()),
        state,
        label_selector: convert::map(&filter.label_selector),
    };
    daemon
        .sandboxes
        .list(&model_filter)
        .iter()
        .map(|s| cri::PodSandbox {
            id: s.id.clone(),
            metadata: Some(super::status::cri_metadata(s)),
            state: convert::cri_sandbox_state(s.state),
            created_at: s.created_at,
            labels: convert::cri_map(&s.labels),
            annotations: convert::cri_map(&s.annotations),
            runtime_handler: s.runtime_handler.clone(),
        })
        .collect()
}
