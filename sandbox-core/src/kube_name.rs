//! The names kubelet's dockershim gave pods and containers, which CRI
//! runtimes (CRI-O, containerd) kept so that tools and people recognise them:
//!
//! - pod sandbox: `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`
//! - container: `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`
//!
//! The attempt is the sandbox's attempt for a sandbox and the container's
//! attempt for a container, so a restarted container gets a new name while
//! its predecessor is still around for `crictl logs --previous`.

use crate::container::ContainerMetadata;
use crate::sandbox::PodMetadata;

const PREFIX: &str = "k8s";
const DELIMITER: &str = "_";
/// The container-name slot of a sandbox's name, as kubelet's infra
/// ("pause") container was called.
pub const INFRA_CONTAINER_NAME: &str = "POD";

/// The name of a pod sandbox: `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`.
///
/// # Examples
///
/// ```
/// use sandbox_core::{kube_name, PodMetadata};
///
/// let pod = PodMetadata::new("web", "default", "6f1a", 2);
/// assert_eq!(kube_name::pod_name(&pod), "k8s_POD_web_default_6f1a_2");
/// ```
pub fn pod_name(pod: &PodMetadata) -> String {
    [
        PREFIX,
        INFRA_CONTAINER_NAME,
        &pod.name,
        &pod.namespace,
        &pod.uid,
        &pod.attempt.to_string(),
    ]
    .join(DELIMITER)
}

/// The name of a container:
/// `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`, with the
/// container's attempt.
///
/// # Examples
///
/// ```
/// use sandbox_core::{kube_name, ContainerMetadata, PodMetadata};
///
/// let pod = PodMetadata::new("web", "default", "6f1a", 0);
/// let container = ContainerMetadata::new("nginx", 3);
/// assert_eq!(
///     kube_name::container_name(&container, &pod),
///     "k8s_nginx_web_default_6f1a_3"
/// );
/// ```
pub fn container_name(container: &ContainerMetadata, pod: &PodMetadata) -> String {
    [
        PREFIX,
        &container.name,
        &pod.name,
        &pod.namespace,
        &pod.uid,
        &container.attempt.to_string(),
    ]
    .join(DELIMITER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_and_container_names_differ_for_a_container_called_pod() {
        // "POD" is not a reserved container name in Kubernetes, only a
        // convention; the two names still must not collide when attempts
        // differ.
        let pod = PodMetadata::new("p", "ns", "u", 0);
        let container = ContainerMetadata::new("POD", 1);
        assert_eq!(pod_name(&pod), "k8s_POD_p_ns_u_0");
        assert_eq!(container_name(&container, &pod), "k8s_POD_p_ns_u_1");
    }

    #[test]
    fn pod_attempt_does_not_leak_into_container_name() {
        let pod = PodMetadata::new("p", "ns", "u", 7);
        let container = ContainerMetadata::new("c", 0);
        assert_eq!(container_name(&container, &pod), "k8s_c_p_ns_u_0");
    }
}
