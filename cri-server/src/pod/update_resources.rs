//! UpdatePodSandboxResources (Kubernetes 1.33, in-place pod resize with
//! pod-level resources): kubelet tells the runtime the pod's new resources
//! *after* it has resized the pod's cgroups itself.
//!
//! The call is best effort by definition, and kubelet goes on whatever the
//! answer. runc pods need nothing more: their limits live in the cgroups
//! kubelet already changed. A gVisor sandbox sizes itself from those same
//! cgroups. So the verb checks the pod exists and records the request in
//! the log; containerd passes it to NRI plugins, which we do not have.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use cri_api::v1 as cri;

/// Acknowledges the resize of pod `request.pod_sandbox_id`.
pub fn update_resources(
    daemon: &Daemon,
    request: &cri::UpdatePodSandboxResourcesRequest,
) -> Result<()> {
    let sandbox = daemon
        .sandboxes
        .get(&request.pod_sandbox_id)
        .map_err(Error::from)?;
    let limits = request.resources.as_ref();
    tracing::info!(
        pod = %sandbox.id,
        cpu_quota = limits.map(|r| r.cpu_quota),
        cpu_period = limits.map(|r| r.cpu_period),
        memory_limit = limits.map(|r| r.memory_limit_in_bytes),
        "pod resources updated by kubelet"
    );
    Ok(())
}
