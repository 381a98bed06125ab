//! Pod networking through CNI plugins.
//!
//! The CRI server asks a [`PodNetwork`] to attach a pod's network namespace
//! (RunPodSandbox), to report its IPs (PodSandboxStatus) and to detach it
//! (StopPodSandbox); [`CniManager`] does that by running the CNI plugin chain
//! of the configured network, as the CNI specification (0.4.0, 1.0.0) says.
//!
//! - [`config`]: network configuration lists, plugins kept verbatim.
//! - [`loader`]: picking the configuration from a directory, watching it.
//! - [`exec`]: running one plugin: environment, stdin, timeout, errors.
//! - [`runtime_config`]: `portMappings`, `dns`, `bandwidth` for the plugins
//!   that declare them.
//! - [`result`]: CNI results and the pod IPs in them.
//! - [`cache`]: each attachment recorded on disk so DEL survives restarts.
//! - [`network`]: the [`PodNetwork`] trait (mockable with the `mock` feature)
//!   and its request and status types.
//!
//! ```no_run
//! use cni::{CniManager, CniManagerConfig, PodNetwork, PodNetworkRequest};
//! # async fn demo() -> Result<(), cni::Error> {
//! let net = CniManager::new(CniManagerConfig::new("/etc/cni/net.d", "/var/lib/cri-server/cni"))?;
//! if let Err(why) = net.status() {
//!     eprintln!("NetworkReady=false {}: {}", why.reason, why.message);
//! }
//! let pod = PodNetworkRequest::new("infra1", "/run/netns/pod1");
//! let status = net.setup(&pod).await?;
//! println!("pod IP {:?}, more {:?}", status.ips.first(), status.ips.get(1..));
//! net.teardown(&pod).await?; // idempotent
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod cache;
pub mod config;
mod error;
pub mod exec;
pub mod loader;
mod manager;
pub mod network;
pub mod result;
pub mod runtime_config;

pub use config::{default_conflist, NetworkConfigList, PluginConfig};
pub use error::{Error, NotReadyReason, Result};
pub use loader::{ConfigLoader, ConfigWatcher};
pub use manager::{CniManager, CniManagerConfig};
#[cfg(any(test, feature = "mock"))]
pub use network::MockPodNetwork;
pub use network::{
    Bandwidth, Dns, NetworkStatus, PodNetwork, PodNetworkRequest, PortMapping, Protocol,
};
pub use result::{CniResult, Interface, IpConfig};
pub use runtime_config::runtime_config_for;
