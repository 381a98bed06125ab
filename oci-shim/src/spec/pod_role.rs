//! A container's place in its pod, as the annotations sandboxing runtimes read.
//!
//! gVisor's runsc runs a whole pod in one sandbox: the first ("sandbox")
//! container boots it and later containers name it to join. runsc reads the
//! containerd keys and the CRI-O keys, so both are written.

use serde::{Deserialize, Serialize};

/// Whether the container starts the pod's sandbox or joins one.
///
/// # Examples
///
/// ```
/// use oci_shim::spec::PodRole;
///
/// let a = PodRole::Sandbox.annotations();
/// assert!(a.contains(&("io.kubernetes.cri.container-type".into(), "sandbox".into())));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodRole {
    /// The pod's infrastructure container; it creates the sandbox.
    Sandbox,
    /// A workload container joining the sandbox container `sandbox_id`.
    Container {
        /// The id of the pod's sandbox container.
        sandbox_id: String,
    },
}

impl PodRole {
    /// The annotations that tell runsc (and other sandboxing runtimes) about the role.
    pub fn annotations(&self) -> Vec<(String, String)> {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        match self {
            PodRole::Sandbox => vec![
                pair("io.kubernetes.cri.container-type", "sandbox"),
                pair("io.kubernetes.cri-o.ContainerType", "sandbox"),
            ],
            PodRole::Container { sandbox_id } => vec![
                pair("io.kubernetes.cri.container-type", "container"),
                pair("io.kubernetes.cri.sandbox-id", sandbox_id),
                pair("io.kubernetes.cri-o.ContainerType", "container"),
                pair("io.kubernetes.cri-o.SandboxID", sandbox_id),
            ],
        }
    }
}
