//! The pod sandbox: what a pod's shared environment is made of (network
//! namespace, infra container, shared memory, DNS, cgroup parent) and where it
//! is in its lifecycle.
//!
//! Lifecycle: a sandbox is created `NotReady` while its namespaces and infra
//! container are set up, becomes `Ready` once, and goes back to `NotReady`
//! for good when stopped. Kubelet never restarts a stopped sandbox; it makes
//! a new one with a higher attempt number.

use crate::container::Container;
use crate::error::{Error, ObjectKind, Result};
use crate::kube_name;
use crate::timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// Where a pod sandbox is in its lifecycle, as CRI reports it.
///
/// # Examples
///
/// ```
/// use sandbox_core::SandboxState;
///
/// assert_eq!(SandboxState::default(), SandboxState::NotReady);
/// assert_eq!(SandboxState::Ready.to_string(), "ready");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Set up and running: containers can be created in it.
    Ready,
    /// Not yet set up, or stopped.
    #[default]
    NotReady,
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SandboxState::Ready => "ready",
            SandboxState::NotReady => "not ready",
        })
    }
}

/// The identity kubelet gives a pod: the CRI `PodSandboxMetadata`.
///
/// # Examples
///
/// ```
/// let pod = sandbox_core::PodMetadata::new("web", "default", "6f1a", 0);
/// assert_eq!(pod.namespace, "default");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PodMetadata {
    /// The pod's name in the Kubernetes API.
    pub name: String,
    /// The pod's UID in the Kubernetes API.
    pub uid: String,
    /// The pod's Kubernetes namespace.
    pub namespace: String,
    /// How many sandboxes kubelet created for this pod before this one.
    pub attempt: u32,
}

impl PodMetadata {
    /// Bundles a pod's name, namespace, UID and attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// let pod = sandbox_core::PodMetadata::new("web", "default", "6f1a", 1);
    /// assert_eq!(pod.attempt, 1);
    /// ```
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        uid: impl Into<String>,
        attempt: u32,
    ) -> Self {
        Self {
            name: name.into(),
            uid: uid.into(),
            namespace: namespace.into(),
            attempt,
        }
    }
}

/// Whose namespace a pod's containers join, for one namespace type (CRI
/// `NamespaceMode`).
///
/// # Examples
///
/// ```
/// assert_eq!(sandbox_core::NamespaceMode::default(), sandbox_core::NamespaceMode::Pod);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceMode {
    /// One namespace shared by the pod's containers.
    #[default]
    Pod,
    /// Each container gets its own.
    Container,
    /// The host's namespace.
    Node,
    /// The namespace of another container, named by
    /// [`NamespaceOptions::target_id`].
    Target,
}

/// The namespace sharing a pod asked for (CRI `NamespaceOption`).
///
/// # Examples
///
/// ```
/// use sandbox_core::{NamespaceMode, NamespaceOptions};
///
/// let host_network = NamespaceOptions { network: NamespaceMode::Node, ..Default::default() };
/// assert_eq!(host_network.pid, NamespaceMode::Pod);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NamespaceOptions {
    /// The network namespace.
    pub network: NamespaceMode,
    /// The PID namespace.
    pub pid: NamespaceMode,
    /// The IPC namespace.
    pub ipc: NamespaceMode,
    /// The container whose namespace to join when a mode is
    /// [`NamespaceMode::Target`].
    pub target_id: Option<String>,
    /// The pod's own user namespace (Kubernetes `hostUsers: false`); `None`
    /// for the host's.
    pub user: Option<UserNamespace>,
}

/// A pod's user namespace: which host ids its ids are.
///
/// # Examples
///
/// ```
/// use sandbox_core::{IdMapping, UserNamespace};
///
/// let ids = vec![IdMapping { container_id: 0, host_id: 65536, length: 65536 }];
/// let userns = UserNamespace { uids: ids.clone(), gids: ids };
/// assert_eq!(userns.host_root(), Some((65536, 65536)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserNamespace {
    /// User id ranges.
    pub uids: Vec<IdMapping>,
    /// Group id ranges.
    pub gids: Vec<IdMapping>,
}

impl UserNamespace {
    /// The host uid and gid of the namespace's root, if it maps root.
    pub fn host_root(&self) -> Option<(u32, u32)> {
        Some((to_host(&self.uids, 0)?, to_host(&self.gids, 0)?))
    }
}

/// The host id of `id` under `ranges`.
fn to_host(ranges: &[IdMapping], id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let offset = id.checked_sub(r.container_id)?;
        (offset < r.length).then(|| r.host_id.checked_add(offset))?
    })
}

/// One range of a user namespace's id mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct IdMapping {
    /// The first id inside the namespace.
    pub container_id: u32,
    /// The host id it is.
    pub host_id: u32,
    /// How many ids the range holds.
    pub length: u32,
}

/// The transport protocol of a port mapping.
///
/// # Examples
///
/// ```
/// assert_eq!(sandbox_core::Protocol::default(), sandbox_core::Protocol::Tcp);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A host port forwarded into the pod (CRI `PortMapping`).
///
/// # Examples
///
/// ```
/// use sandbox_core::{PortMapping, Protocol};
///
/// let http = PortMapping { container_port: 80, host_port: 8080, ..Default::default() };
/// assert_eq!(http.protocol, Protocol::Tcp);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PortMapping {
    /// The protocol forwarded.
    pub protocol: Protocol,
    /// The port inside the pod.
    pub container_port: u16,
    /// The port on the host; 0 when none is mapped.
    pub host_port: u16,
    /// The host address to bind; empty for all addresses.
    pub host_ip: String,
}

/// A pod sandbox and everything the runtime must remember about it.
///
/// Fields are public: this is a record the server fills in as it sets the pod
/// up, and that is saved to disk as JSON so a restarted daemon can pick its
/// pods up again. Fields missing from older JSON take their defaults.
///
/// Times are nanoseconds since the Unix epoch (see [`timestamp`]).
///
/// # Examples
///
/// ```
/// use sandbox_core::{id, PodMetadata, Sandbox, SandboxState};
///
/// let mut sandbox = Sandbox::new(id::generate()?, PodMetadata::new("web", "default", "6f1a", 0));
/// assert_eq!(sandbox.name, "k8s_POD_web_default_6f1a_0");
/// assert_eq!(sandbox.state, SandboxState::NotReady);
///
/// sandbox.mark_ready(sandbox_core::timestamp::now())?;
/// assert_eq!(sandbox.state, SandboxState::Ready);
/// # Ok::<(), sandbox_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Sandbox {
    /// The sandbox id (64 lowercase hex digits).
    pub id: String,
    /// The unique kubelet-style name, `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`.
    pub name: String,
    /// The pod's Kubernetes identity.
    pub metadata: PodMetadata,
    /// The directory kubelet wants container logs in.
    pub log_dir: PathBuf,
    /// Labels from the pod's config; list filters match on them.
    pub labels: BTreeMap<String, String>,
    /// Annotations from the pod's config.
    pub annotations: BTreeMap<String, String>,
    /// The infra ("pause") container that holds the pod's namespaces open,
    /// if the pod has one (see `ipc_path`). It is not in the container
    /// store: kubelet never sees it.
    pub infra_container: Option<Container>,
    /// The SELinux process label; empty when SELinux is not used.
    pub process_label: String,
    /// The SELinux mount label; empty when SELinux is not used.
    pub mount_label: String,
    /// The pinned network namespace (a bind-mounted `/proc/<pid>/ns/net`);
    /// `None` for host-network pods or before the namespace exists.
    pub netns_path: Option<PathBuf>,
    /// The pinned IPC namespace its containers join, for a pod without an
    /// infra container (or with a user namespace) that has an IPC namespace
    /// of its own.
    pub ipc_path: Option<PathBuf>,
    /// The pinned UTS namespace (with the pod's host name) its containers
    /// join, for a pod without an infra container (or with a user
    /// namespace) on a network of its own.
    pub uts_path: Option<PathBuf>,
    /// The pinned user namespace every container of the pod joins (see
    /// [`NamespaceOptions::user`]).
    pub userns_path: Option<PathBuf>,
    /// The pod's `/dev/shm` mount, shared by its containers.
    pub shm_path: Option<PathBuf>,
    /// The cgroup parent kubelet asked for.
    pub cgroup_parent: String,
    /// Whether the pod asked for privileged containers.
    pub privileged: bool,
    /// The trust decision: `true` runs on the trusted runtime (runc),
    /// `false` on the sandboxing one (gVisor's runsc).
    pub trusted: bool,
    /// Why the trust decision came out as it did, in a sentence a person can
    /// read (shown in verbose pod status).
    pub trust_reason: String,
    /// The pod's `resolv.conf`, bind-mounted into its containers.
    pub resolv_path: Option<PathBuf>,
    /// The pod's hostname.
    pub hostname: String,
    /// The CRI runtime handler the pod asked for (empty for the default).
    pub runtime_handler: String,
    /// The namespace sharing the pod asked for.
    pub namespace_options: NamespaceOptions,
    /// Where the sandbox is in its lifecycle.
    pub state: SandboxState,
    /// When the sandbox was created.
    pub created_at: i64,
    /// When it became ready, if it has.
    pub started_at: Option<i64>,
    /// When it was stopped, if it has been.
    pub finished_at: Option<i64>,
    /// The pod's IP addresses, primary first.
    pub pod_ips: Vec<IpAddr>,
    /// Host ports forwarded into the pod.
    pub port_mappings: Vec<PortMapping>,
    /// The infra container's exit code, once it has exited.
    pub exit_code: Option<i32>,
    /// A short machine-readable reason for the current state (e.g. why
    /// the sandbox stopped).
    pub reason: String,
    /// StopPodSandbox recorded the pod stopped, and its network (CNI DEL,
    /// the namespace pins) is still to be released, off the request path:
    /// set in the same save as the stop, cleared once released.
    pub network_release_pending: bool,
}

impl Sandbox {
    /// A new `NotReady` sandbox created now, named after `metadata`, with
    /// everything else empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{PodMetadata, Sandbox};
    ///
    /// let sandbox = Sandbox::new("ab12".into(), PodMetadata::new("web", "prod", "u1", 3));
    /// assert_eq!(sandbox.name, "k8s_POD_web_prod_u1_3");
    /// assert!(sandbox.created_at > 0);
    /// ```
    pub fn new(id: String, metadata: PodMetadata) -> Self {
        Self {
            id,
            name: kube_name::pod_name(&metadata),
            metadata,
            created_at: timestamp::now(),
            ..Self::default()
        }
    }

    /// The pod's name in the Kubernetes API (from the metadata).
    ///
    /// # Examples
    ///
    /// ```
    /// # use sandbox_core::{PodMetadata, Sandbox};
    /// let sandbox = Sandbox::new("ab".into(), PodMetadata::new("web", "prod", "u1", 0));
    /// assert_eq!(sandbox.kube_name(), "web");
    /// ```
    pub fn kube_name(&self) -> &str {
        &self.metadata.name
    }

    /// The pod's Kubernetes namespace (from the metadata).
    ///
    /// # Examples
    ///
    /// ```
    /// # use sandbox_core::{PodMetadata, Sandbox};
    /// let sandbox = Sandbox::new("ab".into(), PodMetadata::new("web", "prod", "u1", 0));
    /// assert_eq!(sandbox.namespace(), "prod");
    /// ```
    pub fn namespace(&self) -> &str {
        &self.metadata.namespace
    }

    /// Whether the pod uses the host's network namespace.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sandbox_core::{NamespaceMode, PodMetadata, Sandbox};
    /// let mut sandbox = Sandbox::new("ab".into(), PodMetadata::default());
    /// assert!(!sandbox.host_network());
    /// sandbox.namespace_options.network = NamespaceMode::Node;
    /// assert!(sandbox.host_network());
    /// ```
    pub fn host_network(&self) -> bool {
        self.namespace_options.network == NamespaceMode::Node
    }

    /// Records that the sandbox is set up and running, at `at`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTransition`] when the sandbox is already ready or has
    /// been stopped (a stopped sandbox is never restarted).
    ///
    /// # Examples
    ///
    /// ```
    /// # use sandbox_core::{PodMetadata, Sandbox};
    /// let mut sandbox = Sandbox::new("ab".into(), PodMetadata::default());
    /// sandbox.mark_ready(10)?;
    /// assert_eq!(sandbox.started_at, Some(10));
    /// assert!(sandbox.mark_ready(11).is_err());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn mark_ready(&mut self, at: i64) -> Result<()> {
        if self.state == SandboxState::Ready || self.finished_at.is_some() {
            return Err(self.invalid_transition(SandboxState::Ready));
        }
        self.state = SandboxState::Ready;
        self.started_at = Some(at);
        Ok(())
    }

    /// Records that the sandbox was stopped at `at`.
    ///
    /// Stopping is idempotent, as CRI's `StopPodSandbox` is: stopping a
    /// stopped sandbox changes nothing, keeping the first stop time. A
    /// sandbox whose setup failed before it became ready can be stopped too.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sandbox_core::{PodMetadata, Sandbox, SandboxState};
    /// let mut sandbox = Sandbox::new("ab".into(), PodMetadata::default());
    /// sandbox.mark_ready(10)?;
    /// sandbox.mark_stopped(20);
    /// sandbox.mark_stopped(30);
    /// assert_eq!(sandbox.state, SandboxState::NotReady);
    /// assert_eq!(sandbox.finished_at, Some(20));
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn mark_stopped(&mut self, at: i64) {
        self.state = SandboxState::NotReady;
        self.finished_at.get_or_insert(at);
    }

    /// Whether the sandbox has been stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sandbox_core::{PodMetadata, Sandbox};
    /// let mut sandbox = Sandbox::new("ab".into(), PodMetadata::default());
    /// assert!(!sandbox.is_stopped());
    /// sandbox.mark_stopped(5);
    /// assert!(sandbox.is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.finished_at.is_some()
    }

    fn invalid_transition(&self, to: SandboxState) -> Error {
        let from = if self.is_stopped() {
            "stopped".to_owned()
        } else {
            self.state.to_string()
        };
        Error::InvalidTransition {
            kind: ObjectKind::Sandbox,
            id: self.id.clone(),
            from,
            to: to.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        Sandbox::new("ab12".into(), PodMetadata::new("web", "default", "u1", 0))
    }

    #[test]
    fn stopped_sandbox_cannot_become_ready() {
        let mut s = sandbox();
        s.mark_ready(1).unwrap();
        s.mark_stopped(2);
        assert_eq!(
            s.mark_ready(3).unwrap_err().to_string(),
            "sandbox ab12: cannot go from state stopped to ready"
        );
        assert_eq!(s.state, SandboxState::NotReady);
        assert_eq!(s.started_at, Some(1));
    }

    #[test]
    fn failed_setup_can_be_stopped_and_not_started() {
        let mut s = sandbox();
        s.mark_stopped(2);
        assert!(s.mark_ready(3).is_err());
        assert_eq!(s.started_at, None);
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let mut s = sandbox();
        s.labels.insert("app".into(), "web".into());
        s.netns_path = Some("/run/netns/abc".into());
        s.pod_ips = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        s.port_mappings.push(PortMapping {
            protocol: Protocol::Udp,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        });
        s.infra_container = Some(crate::Container::new(
            "cd34".into(),
            &s,
            crate::ContainerMetadata::new(kube_name::INFRA_CONTAINER_NAME, 0),
        ));
        s.trusted = true;
        s.mark_ready(7).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: Sandbox = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(json.contains(r#""state":"ready""#), "{json}");
    }

    #[test]
    fn old_json_missing_fields_loads_with_defaults() {
        let back: Sandbox = serde_json::from_str(r#"{"id":"ab","name":"n"}"#).unwrap();
        assert_eq!(back.id, "ab");
        assert_eq!(back.state, SandboxState::NotReady);
        assert!(back.labels.is_empty());
    }

    #[test]
    fn unknown_state_in_json_is_an_error_not_a_default() {
        let err = serde_json::from_str::<Sandbox>(r#"{"id":"ab","state":"exploded"}"#);
        assert!(err.is_err());
    }
}
