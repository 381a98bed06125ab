//! The boundary the CRI server talks to: [`PodNetwork`], its request and
//! its answer.
//!
//! The trait exists so that the server's tests run without real plugins
//! (enable the `mock` feature for `MockPodNetwork`); [`crate::CniManager`]
//! is the implementation that runs them.

use crate::error::{NotReadyReason, Result};
use crate::result::CniResult;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

/// Transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A host port forwarded into the pod (CRI `PortMapping` with a host port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on the host.
    pub host_port: u16,
    /// Port inside the pod.
    pub container_port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Host address to bind; `None` means every address.
    pub host_ip: Option<IpAddr>,
}

/// DNS settings for the pod (the `dns` capability).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// Resolver options.
    pub options: Vec<String>,
}

/// Traffic shaping for the pod (the `bandwidth` capability), in bits per
/// second and bits, as the bandwidth plugin expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Ingress rate limit.
    pub ingress_rate: u64,
    /// Ingress burst size.
    pub ingress_burst: u64,
    /// Egress rate limit.
    pub egress_rate: u64,
    /// Egress burst size.
    pub egress_burst: u64,
}

/// Everything needed to attach one pod to the network, or detach it.
///
/// # Examples
///
/// ```
/// let mut pod = cni::PodNetworkRequest::new("infra123", "/run/netns/pod1");
/// pod.pod_name = "web".into();
/// pod.pod_namespace = "default".into();
/// assert_eq!(pod.ifname, "eth0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetworkRequest {
    /// The infra (sandbox) container id; CNI's `CNI_CONTAINERID`.
    pub container_id: String,
    /// Path of the pod's network namespace (e.g. `/run/netns/x`).
    pub netns_path: PathBuf,
    /// Interface to create in the pod, normally `eth0`.
    pub ifname: String,
    /// Pod name (`K8S_POD_NAME`).
    pub pod_name: String,
    /// Pod namespace (`K8S_POD_NAMESPACE`).
    pub pod_namespace: String,
    /// Pod UID (`K8S_POD_UID`).
    pub pod_uid: String,
    /// Host ports to forward (the `portMappings` capability).
    pub port_mappings: Vec<PortMapping>,
    /// DNS settings (the `dns` capability).
    pub dns: Option<Dns>,
    /// Traffic shaping (the `bandwidth` capability).
    pub bandwidth: Option<Bandwidth>,
}

impl PodNetworkRequest {
    /// A request for `container_id` in `netns_path` on `eth0`, with no pod
    /// metadata, ports, DNS or bandwidth.
    pub fn new(container_id: impl Into<String>, netns_path: impl Into<PathBuf>) -> Self {
        Self {
            container_id: container_id.into(),
            netns_path: netns_path.into(),
            ifname: "eth0".into(),
            pod_name: String::new(),
            pod_namespace: String::new(),
            pod_uid: String::new(),
            port_mappings: Vec::new(),
            dns: None,
            bandwidth: None,
        }
    }
}

/// The outcome of attaching a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkStatus {
    /// The network the pod joined.
    pub network: String,
    /// The pod's addresses; the first is the primary pod IP, the rest are
    /// the additional IPs (dual stack).
    pub ips: Vec<IpAddr>,
    /// Interfaces created inside the pod.
    pub interfaces: Vec<String>,
    /// The plugin chain's result, typed.
    pub result: CniResult,
    /// The plugin chain's result as the last plugin printed it.
    pub raw_result: serde_json::Value,
}

/// Attaches pods to and detaches them from the pod network.
///
/// # Examples
///
/// ```
/// use cni::{PodNetwork, PodNetworkRequest};
///
/// async fn run_pod(net: &dyn PodNetwork, pod: &PodNetworkRequest) -> Result<(), cni::Error> {
///     if let Err(why) = net.status() {
///         return Err(cni::Error::NotReady(why));
///     }
///     let status = net.setup(pod).await?;
///     println!("pod ip {:?}", status.ips.first());
///     net.teardown(pod).await
/// }
/// ```
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PodNetwork: Send + Sync {
    /// Runs ADD through the plugin chain and records the result so that a
    /// later teardown (even after a restart) repeats the same configuration.
    async fn setup(&self, pod: &PodNetworkRequest) -> Result<NetworkStatus>;

    /// Runs DEL through the chain in reverse. Idempotent: succeeds when the
    /// pod was never attached, when its namespace is already gone, when a
    /// plugin says the interface is missing, and after a restart.
    async fn teardown(&self, pod: &PodNetworkRequest) -> Result<()>;

    /// Runs CHECK through the chain against the recorded ADD result.
    async fn check(&self, pod: &PodNetworkRequest) -> Result<()>;

    /// The recorded attachment of `container_id` on `ifname`, if any; what
    /// PodSandboxStatus reports after a restart.
    async fn attachment(&self, container_id: &str, ifname: &str) -> Result<Option<NetworkStatus>>;

    /// The ids of every container with a recorded attachment, sorted: what
    /// a runtime reconciles against its own records after a crash.
    async fn attached(&self) -> Result<Vec<String>>;

    /// Whether a network configuration is loaded (kubelet's NetworkReady).
    fn status(&self) -> std::result::Result<(), NotReadyReason>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mock_stands_in_for_the_real_network() {
        let mut net = MockPodNetwork::new();
        net.expect_status().returning(|| {
            Err(NotReadyReason {
                reason: "NoNetworkConfig".into(),
                message: "none".into(),
            })
        });
        net.expect_teardown().times(1).returning(|_| Ok(()));
        let net: Box<dyn PodNetwork> = Box::new(net);
        assert_eq!(net.status().unwrap_err().reason, "NoNetworkConfig");
        net.teardown(&PodNetworkRequest::new("c", "/n"))
            .await
            .unwrap();
    }

    #[test]
    fn request_round_trips_through_json() {
        let mut pod = PodNetworkRequest::new("c", "/run/netns/p");
        pod.port_mappings.push(PortMapping {
            host_port: 80,
            container_port: 8080,
            protocol: Protocol::Sctp,
            host_ip: Some("::1".parse().unwrap()),
        });
        pod.dns = Some(Dns::default());
        pod.bandwidth = Some(Bandwidth::default());
        let text = serde_json::to_string(&pod).unwrap();
        assert!(text.contains("\"sctp\""), "{text}");
        assert_eq!(
            serde_json::from_str::<PodNetworkRequest>(&text).unwrap(),
            pod
        );
    }
}
