//! A container in a pod: what it runs, what it sees, and where it is in its
//! lifecycle.
//!
//! Lifecycle: `Created` → `Running` → `Exited`, or `Created` → `Exited` when
//! it is stopped (or fails) before it runs. `Unknown` is for a container whose
//! state could not be determined, for example after a daemon restart; a later
//! look at the OCI runtime moves it on to `Running` or `Exited`. An exited
//! container stays exited: kubelet restarts a container by creating a new one
//! with a higher attempt number.

use crate::error::{Error, ObjectKind, Result};
use crate::kube_name;
use crate::sandbox::Sandbox;
use crate::timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Where a container is in its lifecycle, as CRI reports it.
///
/// # Examples
///
/// ```
/// use sandbox_core::ContainerState;
///
/// assert_eq!(ContainerState::default(), ContainerState::Created);
/// assert_eq!(ContainerState::Exited.to_string(), "exited");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Created by the OCI runtime but not started.
    #[default]
    Created,
    /// Its process is running.
    Running,
    /// Its process has exited.
    Exited,
    /// Its state could not be determined.
    Unknown,
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
            ContainerState::Unknown => "unknown",
        })
    }
}

/// The identity kubelet gives a container: the CRI `ContainerMetadata`.
///
/// # Examples
///
/// ```
/// let meta = sandbox_core::ContainerMetadata::new("nginx", 0);
/// assert_eq!(meta.name, "nginx");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerMetadata {
    /// The container's name in the pod spec.
    pub name: String,
    /// How many times kubelet created this container before (restarts).
    pub attempt: u32,
}

impl ContainerMetadata {
    /// Bundles a container's name and attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// let meta = sandbox_core::ContainerMetadata::new("nginx", 2);
    /// assert_eq!(meta.attempt, 2);
    /// ```
    pub fn new(name: impl Into<String>, attempt: u32) -> Self {
        Self {
            name: name.into(),
            attempt,
        }
    }
}

/// How mounts propagate between host and container (CRI
/// `MountPropagation`).
///
/// # Examples
///
/// ```
/// assert_eq!(sandbox_core::MountPropagation::default(), sandbox_core::MountPropagation::Private);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountPropagation {
    /// No propagation (`rprivate`).
    #[default]
    Private,
    /// Host mounts appear in the container (`rslave`).
    HostToContainer,
    /// Both ways (`rshared`).
    Bidirectional,
}

/// A host path mounted into a container (CRI `Mount`).
///
/// # Examples
///
/// ```
/// let mount = sandbox_core::Mount {
///     container_path: "/data".into(),
///     host_path: "/srv/data".into(),
///     readonly: true,
///     ..Default::default()
/// };
/// assert!(!mount.selinux_relabel);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    /// Where it appears inside the container.
    pub container_path: PathBuf,
    /// What is mounted, on the host.
    pub host_path: PathBuf,
    /// Whether the container may not write to it.
    pub readonly: bool,
    /// Whether to relabel it for SELinux.
    pub selinux_relabel: bool,
    /// Mount propagation.
    pub propagation: MountPropagation,
    /// Read-only all the way down: submounts of the host path too
    /// (`rro`; only with `readonly` and private propagation).
    pub recursive_read_only: bool,
    /// Shown through the pod's user namespace mapping (kubelet set the
    /// mount's uid and gid mappings): host root's files appear owned by
    /// the pod's root.
    pub idmapped: bool,
}

/// The uid, gid and supplementary groups a container's process runs with,
/// as ContainerStatus reports them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessUser {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// The supplementary gids, as given to `setgroups`.
    pub additional_gids: Vec<u32>,
}

/// The Linux cgroup limits of a container, as CRI's
/// `LinuxContainerResources` gives them (0 or empty: not set).
///
/// # Examples
///
/// ```
/// let r = sandbox_core::Resources { memory_limit_in_bytes: 64 << 20, ..Default::default() };
/// assert_eq!(r.cpu_shares, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// CFS period, microseconds.
    pub cpu_period: i64,
    /// CFS quota, microseconds (-1: none).
    pub cpu_quota: i64,
    /// CPU shares (relative weight).
    pub cpu_shares: i64,
    /// Memory limit, bytes.
    pub memory_limit_in_bytes: i64,
    /// Memory plus swap limit, bytes.
    pub memory_swap_limit_in_bytes: i64,
    /// The OOM killer's preference.
    pub oom_score_adj: i64,
    /// CPUs the container may run on (`0-1,3`).
    pub cpuset_cpus: String,
    /// Memory nodes the container may use.
    pub cpuset_mems: String,
}

/// A container and everything the runtime must remember about it.
///
/// Fields are public: this is a record the server fills in from the CRI
/// request and the OCI runtime, saved as JSON so a restarted daemon can pick
/// its containers up again. Fields missing from older JSON take their
/// defaults. Times are nanoseconds since the Unix epoch (see [`timestamp`]).
///
/// # Examples
///
/// ```
/// use sandbox_core::{timestamp, Container, ContainerMetadata, ContainerState, PodMetadata, Sandbox};
///
/// let pod = Sandbox::new("ab".into(), PodMetadata::new("web", "default", "u1", 0));
/// let mut c = Container::new("cd".into(), &pod, ContainerMetadata::new("nginx", 0));
/// assert_eq!(c.name, "k8s_nginx_web_default_u1_0");
/// assert_eq!(c.sandbox_id, "ab");
///
/// c.mark_started(timestamp::now(), 4242)?;
/// c.mark_exited(timestamp::now(), 0, "Completed", "")?;
/// assert_eq!(c.state, ContainerState::Exited);
/// # Ok::<(), sandbox_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    /// The container id (64 lowercase hex digits).
    pub id: String,
    /// The unique kubelet-style name,
    /// `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`.
    pub name: String,
    /// The id of the pod sandbox it runs in.
    pub sandbox_id: String,
    /// Its Kubernetes identity.
    pub metadata: ContainerMetadata,
    /// The image as the pod spec names it (e.g. `nginx:1.25`).
    pub image: String,
    /// The image it actually runs, resolved (digest or image id).
    pub image_ref: String,
    /// The entrypoint (overrides the image's).
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    pub args: Vec<String>,
    /// The working directory; empty for the image's.
    pub working_dir: String,
    /// Environment variables as `KEY=VALUE`, in order.
    pub env: Vec<String>,
    /// Labels from the container config; list filters match on them.
    pub labels: BTreeMap<String, String>,
    /// Annotations from the container config.
    pub annotations: BTreeMap<String, String>,
    /// The full path of its log file (the pod's log dir joined with the
    /// path kubelet gave).
    pub log_path: PathBuf,
    /// Mounts from the container config.
    pub mounts: Vec<Mount>,
    /// Whether it has a terminal.
    pub tty: bool,
    /// Whether its stdin is kept open for attach.
    pub stdin: bool,
    /// Whether stdin closes after the first attach ends.
    pub stdin_once: bool,
    /// Whether it runs privileged.
    pub privileged: bool,
    /// The signal that asks the container to stop (the image's
    /// `StopSignal`, `SIGTERM` when it names none).
    pub stop_signal: String,
    /// The identity its process was given; `None` in records older than
    /// the field.
    pub process_user: Option<ProcessUser>,
    /// The cgroup limits it was last given (at creation or by an update).
    pub resources: Option<Resources>,
    /// The CRI runtime handler of its pod.
    pub runtime_handler: String,
    /// Where it is in its lifecycle.
    pub state: ContainerState,
    /// When it was created.
    pub created_at: i64,
    /// When its process started, if it has.
    pub started_at: Option<i64>,
    /// When its process exited, if it has.
    pub finished_at: Option<i64>,
    /// The host PID of its process while it runs.
    pub pid: Option<i32>,
    /// Its exit code, once it has exited.
    pub exit_code: Option<i32>,
    /// A short machine-readable reason for the state (e.g. `OOMKilled`).
    pub reason: String,
    /// A human-readable explanation of the state.
    pub message: String,
    /// Why its image may run where its pod runs, decided at create.
    pub image_trust: Option<ImageTrust>,
    /// The runtime's own state of it is deleted (StopContainer ran the
    /// runtime's `delete` once it exited): RemoveContainer has no runtime
    /// call left to make.
    pub runtime_deleted: bool,
}

/// Why a container's image was admitted on its pod's handler
/// (`trusted_images`), kept to show in the pod's verbose status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageTrust {
    /// Whether a signature verified the image.
    pub verified: bool,
    /// What its signatures proved, or why nothing vouches for it.
    pub evidence: String,
    /// Why it may run where it runs.
    pub reason: String,
}

impl Container {
    /// A new `Created` container in `sandbox`, created now, named after its
    /// and the pod's metadata and using the pod's runtime handler; everything
    /// else is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Container, ContainerMetadata, PodMetadata, Sandbox};
    ///
    /// let mut pod = Sandbox::new("ab".into(), PodMetadata::new("web", "default", "u1", 0));
    /// pod.runtime_handler = "runsc".into();
    /// let c = Container::new("cd".into(), &pod, ContainerMetadata::new("nginx", 1));
    /// assert_eq!(c.name, "k8s_nginx_web_default_u1_1");
    /// assert_eq!(c.runtime_handler, "runsc");
    /// ```
    pub fn new(id: String, sandbox: &Sandbox, metadata: ContainerMetadata) -> Self {
        Self {
            id,
            name: kube_name::container_name(&metadata, &sandbox.metadata),
            sandbox_id: sandbox.id.clone(),
            metadata,
            runtime_handler: sandbox.runtime_handler.clone(),
            created_at: timestamp::now(),
            ..Self::default()
        }
    }

    /// Records that the container's process `pid` started at `at`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTransition`] unless the container is `Created` or
    /// `Unknown` (and has not exited before).
    ///
    /// # Examples
    ///
    /// ```
    /// # use sandbox_core::{Container, ContainerState};
    /// let mut c = Container { id: "cd".into(), ..Default::default() };
    /// c.mark_started(10, 4242)?;
    /// assert_eq!((c.state, c.started_at, c.pid), (ContainerState::Running, Some(10), Some(4242)));
    /// assert!(c.mark_started(11, 4243).is_err());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn mark_started(&mut self, at: i64, pid: i32) -> Result<()> {
        let allowed = match self.state {
            ContainerState::Created => true,
            ContainerState::Unknown => self.finished_at.is_none(),
            ContainerState::Running | ContainerState::Exited => false,
        };
        if !allowed {
            return Err(self.invalid_transition(ContainerState::Running));
        }
        self.state = ContainerState::Running;
        self.started_at.get_or_insert(at);
        self.pid = Some(pid);
        Ok(())
    }

    /// Records that the container's process exited at `at` with `exit_code`,
    /// and why.
    ///
    /// A `Created` container may exit without having run (stopped before
    /// start, or the start failed).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTransition`] when it has already exited: the first
    /// exit is the one that happened, so it is not overwritten.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sandbox_core::{Container, ContainerState};
    /// let mut c = Container { id: "cd".into(), ..Default::default() };
    /// c.mark_started(10, 4242)?;
    /// c.mark_exited(20, 137, "OOMKilled", "out of memory")?;
    /// assert_eq!((c.exit_code, c.finished_at, c.pid), (Some(137), Some(20), None));
    /// assert!(c.mark_exited(21, 0, "", "").is_err());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn mark_exited(
        &mut self,
        at: i64,
        exit_code: i32,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<()> {
        if self.state == ContainerState::Exited || self.finished_at.is_some() {
            return Err(self.invalid_transition(ContainerState::Exited));
        }
        self.state = ContainerState::Exited;
        self.finished_at = Some(at);
        self.exit_code = Some(exit_code);
        self.reason = reason.into();
        self.message = message.into();
        self.pid = None;
        Ok(())
    }

    /// Records that the container's state cannot be determined, with a
    /// message saying why. Allowed from any state; the times and exit code
    /// already known are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sandbox_core::{Container, ContainerState};
    /// let mut c = Container { id: "cd".into(), ..Default::default() };
    /// c.mark_unknown("runc state: container not found");
    /// assert_eq!(c.state, ContainerState::Unknown);
    /// ```
    pub fn mark_unknown(&mut self, message: impl Into<String>) {
        self.state = ContainerState::Unknown;
        self.message = message.into();
    }

    fn invalid_transition(&self, to: ContainerState) -> Error {
        Error::InvalidTransition {
            kind: ObjectKind::Container,
            id: self.id.clone(),
            from: self.state.to_string(),
            to: to.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn container() -> Container {
        Container {
            id: "cd".into(),
            ..Default::default()
        }
    }

    #[test]
    fn created_container_can_exit_without_running() {
        let mut c = container();
        c.mark_exited(5, 1, "StartError", "exec: no such file")
            .unwrap();
        assert_eq!(c.state, ContainerState::Exited);
        assert_eq!(c.started_at, None);
        assert_eq!(
            c.mark_started(6, 1).unwrap_err().to_string(),
            "container cd: cannot go from state exited to running"
        );
    }

    #[test]
    fn unknown_after_exit_cannot_run_or_exit_again() {
        let mut c = container();
        c.mark_started(1, 10).unwrap();
        c.mark_exited(2, 0, "Completed", "").unwrap();
        c.mark_unknown("lost track");
        assert!(c.mark_started(3, 11).is_err());
        assert!(c.mark_exited(3, 1, "", "").is_err());
        assert_eq!(c.exit_code, Some(0));
    }

    #[test]
    fn unknown_before_exit_can_be_resolved() {
        let mut c = container();
        c.mark_started(1, 10).unwrap();
        c.mark_unknown("daemon restarted");
        c.mark_started(5, 10).unwrap();
        assert_eq!(c.started_at, Some(1), "start time is the first start");
        c.mark_exited(6, 2, "Error", "").unwrap();
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let mut c = container();
        c.mounts.push(Mount {
            container_path: "/data".into(),
            host_path: "/srv".into(),
            readonly: true,
            selinux_relabel: false,
            propagation: MountPropagation::Bidirectional,
            recursive_read_only: false,
            idmapped: true,
        });
        c.env.push("A=b".into());
        c.mark_started(1, 10).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Container>(&json).unwrap(), c);
    }

    #[derive(Debug, Clone)]
    enum Event {
        Start,
        Exit,
        Unknown,
    }

    proptest! {
        // Whatever the order of events, the record never claims a start
        // after its finish, an exit code without an exit, or a PID for a
        // process that exited.
        #[test]
        fn lifecycle_invariants(events in prop::collection::vec(
            prop_oneof![Just(Event::Start), Just(Event::Exit), Just(Event::Unknown)], 0..12)
        ) {
            let mut c = container();
            for (at, event) in events.into_iter().enumerate() {
                let at = at as i64;
                let before = c.clone();
                let result = match event {
                    Event::Start => c.mark_started(at, 100),
                    Event::Exit => c.mark_exited(at, 3, "r", "m"),
                    Event::Unknown => { c.mark_unknown("?"); Ok(()) }
                };
                if result.is_err() {
                    prop_assert_eq!(&c, &before, "a refused change must change nothing");
                }
                prop_assert_eq!(c.exit_code.is_some(), c.finished_at.is_some());
                if c.finished_at.is_some() {
                    prop_assert!(c.pid.is_none());
                    prop_assert_ne!(c.state, ContainerState::Running);
                    prop_assert_ne!(c.state, ContainerState::Created);
                }
                if let (Some(s), Some(f)) = (c.started_at, c.finished_at) {
                    prop_assert!(s <= f);
                }
                if c.state == ContainerState::Running {
                    prop_assert!(c.pid.is_some());
                }
            }
        }
    }
}
