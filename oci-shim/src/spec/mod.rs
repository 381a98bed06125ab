//! The typed container spec the server fills, and its translation to an OCI
//! runtime `config.json` ([`oci_spec::runtime::Spec`]).
//!
//! [`ContainerSpec`] is plain serde-able data: what kubelet asked for, already
//! resolved by the server (image config merged, capabilities expanded). Leaf
//! types with an exact OCI meaning (resources, seccomp, devices, rlimit kinds)
//! are oci-spec's own. [`ContainerSpec::to_oci`] applies the two host facts
//! that make runc fail if ignored: the capabilities the daemon holds and the
//! lowest `oom_score_adj` it may set (see [`HostLimits`]).

mod capabilities;
mod oom;
mod pod_role;

pub use capabilities::{CapabilityMask, CAPABILITY_NAMES};
pub use oom::{clamp_oom_score_adj, current_oom_score_adj};
pub use pod_role::PodRole;

use crate::error::{Error, Result};
use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxDevice, LinuxIdMapping,
    LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResources, LinuxSeccomp, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Everything needed to write a container's `config.json`.
///
/// # Examples
///
/// ```
/// use oci_shim::spec::{ContainerSpec, HostLimits};
///
/// let mut spec = ContainerSpec::new("/var/lib/ctr/rootfs", ["sh", "-c", "echo hi"]);
/// spec.hostname = Some("pod-a".into());
/// let oci = spec.to_oci(&HostLimits { capabilities: oci_shim::spec::CapabilityMask(u64::MAX), oom_score_adj: 0, can_lower_oom_score_adj: false }).unwrap();
/// assert_eq!(oci.hostname().as_deref(), Some("pod-a"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    /// The process to run.
    pub process: ProcessSpec,
    /// The root filesystem (an absolute path, or relative to the bundle).
    pub root: RootSpec,
    /// Hostname inside the container (needs its own UTS namespace).
    pub hostname: Option<String>,
    /// Mounts in the order they must be made.
    pub mounts: Vec<MountSpec>,
    /// Namespaces to create or join.
    pub namespaces: Vec<NamespaceSpec>,
    /// cgroups path (cgroupfs style `/a/b` or systemd style `slice:prefix:name`).
    pub cgroups_path: Option<String>,
    /// cgroup resources.
    pub resources: Option<LinuxResources>,
    /// Seccomp filter; `None` runs unconfined.
    pub seccomp: Option<LinuxSeccomp>,
    /// Paths masked over inside the container.
    pub masked_paths: Vec<String>,
    /// Paths made read-only inside the container.
    pub readonly_paths: Vec<String>,
    /// Namespaced sysctls to set.
    pub sysctls: BTreeMap<String, String>,
    /// Device nodes to create.
    pub devices: Vec<LinuxDevice>,
    /// Annotations passed to the runtime.
    pub annotations: BTreeMap<String, String>,
    /// Privileged containers get every capability the daemon holds.
    pub privileged: bool,
    /// The container's place in its pod, for runtimes that group a pod in
    /// one sandbox (gVisor).
    pub pod_role: Option<PodRole>,
    /// The id mappings of the container's user namespace (whether it makes
    /// or joins it: runc wants them either way).
    pub id_mappings: Option<IdMappings>,
}

/// A user namespace's uid and gid mappings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMappings {
    /// `(container id, host id, length)` ranges of user ids.
    pub uids: Vec<(u32, u32, u32)>,
    /// The same for group ids.
    pub gids: Vec<(u32, u32, u32)>,
}

/// The container's process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessSpec {
    /// argv; must not be empty.
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// Identity the process runs as.
    pub user: UserSpec,
    /// Whether the process gets a pseudo-terminal.
    pub terminal: bool,
    /// Capability names (`CAP_CHOWN` or `chown`) for the bounding, effective
    /// and permitted sets. Ignored for privileged containers.
    pub capabilities: Vec<String>,
    /// Sets `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privileges: bool,
    /// AppArmor profile to run under (loaded on the node); `None` for the
    /// runtime's own choice.
    pub apparmor_profile: Option<String>,
    /// Requested OOM score adjustment (clamped, see [`clamp_oom_score_adj`]).
    pub oom_score_adj: Option<i32>,
    /// Resource limits.
    pub rlimits: Vec<RlimitSpec>,
}

impl Default for ProcessSpec {
    fn default() -> Self {
        ProcessSpec {
            args: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cwd: "/".into(),
            user: UserSpec::default(),
            terminal: false,
            capabilities: Vec::new(),
            no_new_privileges: false,
            apparmor_profile: None,
            oom_score_adj: None,
            rlimits: Vec::new(),
        }
    }
}

/// Numeric identity of the container process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserSpec {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
}

/// One resource limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlimitSpec {
    /// Which limit (`RLIMIT_NOFILE`...).
    pub kind: PosixRlimitType,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The root filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RootSpec {
    /// Path of the rootfs.
    pub path: PathBuf,
    /// Mount it read-only.
    pub readonly: bool,
}

/// Mount propagation of a bind mount (CRI's `MountPropagation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    /// No propagation either way (`rprivate`).
    #[default]
    Private,
    /// Host mounts propagate into the container (`rslave`).
    HostToContainer,
    /// Both ways (`rshared`).
    Bidirectional,
}

/// One mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountSpec {
    /// Where it appears inside the container.
    pub destination: String,
    /// Filesystem type (`bind`, `proc`, `tmpfs`...).
    pub kind: String,
    /// Source path or device.
    pub source: String,
    /// fstab-style options, without propagation.
    pub options: Vec<String>,
    /// Propagation, for bind mounts.
    pub propagation: Option<Propagation>,
}

/// Namespace kinds a container can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceKind {
    /// PID namespace.
    Pid,
    /// Network namespace.
    Network,
    /// IPC namespace.
    Ipc,
    /// UTS (hostname) namespace.
    Uts,
    /// Mount namespace.
    Mount,
    /// cgroup namespace.
    Cgroup,
    /// User namespace.
    User,
}

/// A namespace to create (no path) or join (path to `/proc/PID/ns/x` or a pin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceSpec {
    /// Which namespace.
    pub kind: NamespaceKind,
    /// Join this existing namespace instead of creating one.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// Facts about the host that bound what a container may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Capabilities the daemon holds (effective and bounding).
    pub capabilities: CapabilityMask,
    /// The daemon's own `oom_score_adj`.
    pub oom_score_adj: i32,
    /// Whether the daemon may lower `oom_score_adj` (holds `CAP_SYS_RESOURCE`).
    pub can_lower_oom_score_adj: bool,
}

impl HostLimits {
    /// Reads the limits of the current process from `/proc/self`.
    ///
    /// # Examples
    ///
    /// ```
    /// let limits = oci_shim::spec::HostLimits::of_current_process().unwrap();
    /// assert!(limits.oom_score_adj >= -1000);
    /// ```
    pub fn of_current_process() -> Result<Self> {
        let capabilities = CapabilityMask::of_current_process()
            .map_err(|e| Error::io("process status", "/proc/self/status", "read", e))?;
        let oom_score_adj = current_oom_score_adj()
            .map_err(|e| Error::io("oom score", "/proc/self/oom_score_adj", "read", e))?;
        Ok(HostLimits {
            capabilities,
            oom_score_adj,
            can_lower_oom_score_adj: capabilities.contains_name("CAP_SYS_RESOURCE"),
        })
    }
}

impl ContainerSpec {
    /// A minimal spec: `args` run as root in `rootfs` with new PID, IPC, UTS,
    /// mount and network namespaces and the usual `/proc`, `/dev`, `/sys` mounts.
    pub fn new<S: Into<String>>(
        rootfs: impl Into<PathBuf>,
        args: impl IntoIterator<Item = S>,
    ) -> Self {
        let ns = |kind| NamespaceSpec { kind, path: None };
        let mount = |dest: &str, kind: &str, options: &[&str]| MountSpec {
            destination: dest.into(),
            kind: kind.into(),
            source: kind.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
            propagation: None,
        };
        ContainerSpec {
            process: ProcessSpec {
                args: args.into_iter().map(Into::into).collect(),
                capabilities: DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
                ..ProcessSpec::default()
            },
            root: RootSpec {
                path: rootfs.into(),
                readonly: false,
            },
            namespaces: vec![
                ns(NamespaceKind::Pid),
                ns(NamespaceKind::Ipc),
                ns(NamespaceKind::Uts),
                ns(NamespaceKind::Mount),
                ns(NamespaceKind::Network),
            ],
            mounts: vec![
                mount("/proc", "proc", &["nosuid", "noexec", "nodev"]),
                mount(
                    "/dev",
                    "tmpfs",
                    &["nosuid", "strictatime", "mode=755", "size=65536k"],
                ),
                mount(
                    "/dev/pts",
                    "devpts",
                    &[
                        "nosuid",
                        "noexec",
                        "newinstance",
                        "ptmxmode=0666",
                        "mode=0620",
                    ],
                ),
                mount(
                    "/dev/shm",
                    "tmpfs",
                    &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
                ),
                mount("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
            ],
            ..ContainerSpec::default()
        }
    }

    /// Builds the OCI runtime config, bounded by `host`.
    ///
    /// Fails when argv is empty or a capability name is unknown.
    pub fn to_oci(&self, host: &HostLimits) -> Result<Spec> {
        if self.process.args.is_empty() {
            return Err(Error::Spec("process args are empty".into()));
        }
        let (mounts, rootfs_propagation) = self.oci_mounts()?;
        let mut linux = LinuxBuilder::default()
            .namespaces(self.oci_namespaces()?)
            .masked_paths(self.masked_paths.clone())
            .readonly_paths(self.readonly_paths.clone())
            .sysctl(
                self.sysctls
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            )
            .devices(self.devices.clone())
            .build()
            .map_err(spec_err)?;
        // oci-spec's builders start from its own opinionated defaults (resources,
        // hostname "youki", ...): every optional field is set explicitly so the
        // config says exactly what the ContainerSpec says.
        linux.set_cgroups_path(self.cgroups_path.as_ref().map(PathBuf::from));
        linux.set_resources(self.resources.clone());
        linux.set_seccomp(self.seccomp.clone());
        linux.set_rootfs_propagation(rootfs_propagation.map(str::to_owned));
        let oci_ranges = |ranges: &[(u32, u32, u32)]| -> Result<Vec<LinuxIdMapping>> {
            ranges
                .iter()
                .map(|&(container_id, host_id, size)| {
                    LinuxIdMappingBuilder::default()
                        .container_id(container_id)
                        .host_id(host_id)
                        .size(size)
                        .build()
                        .map_err(spec_err)
                })
                .collect()
        };
        match &self.id_mappings {
            Some(maps) => {
                linux.set_uid_mappings(Some(oci_ranges(&maps.uids)?));
                linux.set_gid_mappings(Some(oci_ranges(&maps.gids)?));
            }
            None => {
                linux.set_uid_mappings(None);
                linux.set_gid_mappings(None);
            }
        }

        let mut annotations: HashMap<String, String> = self
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(role) = &self.pod_role {
            annotations.extend(role.annotations());
        }
        let root = RootBuilder::default()
            .path(self.root.path.clone())
            .readonly(self.root.readonly)
            .build()
            .map_err(spec_err)?;
        let mut spec = SpecBuilder::default()
            .version("1.0.2")
            .root(root)
            .mounts(mounts)
            .process(self.oci_process(host)?)
            .linux(linux)
            .annotations(annotations)
            .build()
            .map_err(spec_err)?;
        spec.set_hostname(self.hostname.clone());
        spec.set_domainname(None);
        spec.set_hooks(None);
        Ok(spec)
    }

    /// The capabilities the process gets: every one the daemon holds when
    /// privileged, else those asked for that the daemon holds.
    fn oci_capabilities(&self, host: &HostLimits) -> Result<LinuxCapabilities> {
        let cap_names: Vec<&str> = if self.privileged {
            host.capabilities.names()
        } else {
            self.process
                .capabilities
                .iter()
                .map(String::as_str)
                .filter(|name| {
                    let held = host.capabilities.contains_name(name);
                    if !held {
                        tracing::warn!(capability = %name, "capability not held by the daemon; not granted");
                    }
                    held
                })
                .collect()
        };
        let caps = capabilities::to_oci_set(cap_names).map_err(|e| Error::Spec(e.to_string()))?;
        // Inheritable and ambient are set (empty) on purpose: oci-spec's
        // defaults put capabilities there that an empty bounding set does not
        // hold, and runc then fails with "unable to apply caps".
        LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .effective(caps.clone())
            .permitted(caps)
            .inheritable(std::collections::HashSet::new())
            .ambient(std::collections::HashSet::new())
            .build()
            .map_err(spec_err)
    }

    /// The OCI process: argv, environment, user, capabilities, limits.
    fn oci_process(&self, host: &HostLimits) -> Result<Process> {
        let user = UserBuilder::default()
            .uid(self.process.user.uid)
            .gid(self.process.user.gid)
            .additional_gids(self.process.user.additional_gids.clone())
            .build()
            .map_err(spec_err)?;
        let rlimits = self
            .process
            .rlimits
            .iter()
            .map(|r| {
                PosixRlimitBuilder::default()
                    .typ(r.kind)
                    .soft(r.soft)
                    .hard(r.hard)
                    .build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(spec_err)?;
        let mut process = ProcessBuilder::default()
            .terminal(self.process.terminal)
            .user(user)
            .args(self.process.args.clone())
            .env(self.process.env.clone())
            .cwd(&self.process.cwd)
            .capabilities(self.oci_capabilities(host)?)
            .rlimits(rlimits)
            .no_new_privileges(self.process.no_new_privileges)
            .build()
            .map_err(spec_err)?;
        process.set_apparmor_profile(self.process.apparmor_profile.clone());
        if let Some(requested) = self.process.oom_score_adj {
            process.set_oom_score_adj(Some(clamp_oom_score_adj(
                requested,
                host.oom_score_adj,
                host.can_lower_oom_score_adj,
            )));
        }
        Ok(process)
    }

    /// The OCI mounts, and the root's propagation they need.
    fn oci_mounts(&self) -> Result<(Vec<Mount>, Option<&'static str>)> {
        let mut rootfs_propagation = None;
        let mounts = self
            .mounts
            .iter()
            .map(|m| {
                let mut options = m.options.clone();
                if let Some(p) = m.propagation {
                    let (opt, rootfs) = match p {
                        Propagation::Private => ("rprivate", None),
                        Propagation::HostToContainer => ("rslave", Some("rslave")),
                        Propagation::Bidirectional => ("rshared", Some("rshared")),
                    };
                    options.push(opt.into());
                    // The rootfs must propagate at least as much as any
                    // mount below it or the mount's propagation is lost.
                    if rootfs == Some("rshared") || rootfs_propagation.is_none() {
                        rootfs_propagation = rootfs.or(rootfs_propagation);
                    }
                }
                let mut b = MountBuilder::default()
                    .destination(&m.destination)
                    .typ(&m.kind)
                    .options(options);
                if !m.source.is_empty() {
                    b = b.source(&m.source);
                }
                b.build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(spec_err)?;
        Ok((mounts, rootfs_propagation))
    }

    /// The OCI namespaces: new ones, or joined by path.
    fn oci_namespaces(&self) -> Result<Vec<LinuxNamespace>> {
        self.namespaces
            .iter()
            .map(|n| {
                let typ = match n.kind {
                    NamespaceKind::Pid => LinuxNamespaceType::Pid,
                    NamespaceKind::Network => LinuxNamespaceType::Network,
                    NamespaceKind::Ipc => LinuxNamespaceType::Ipc,
                    NamespaceKind::Uts => LinuxNamespaceType::Uts,
                    NamespaceKind::Mount => LinuxNamespaceType::Mount,
                    NamespaceKind::Cgroup => LinuxNamespaceType::Cgroup,
                    NamespaceKind::User => LinuxNamespaceType::User,
                };
                let mut b = LinuxNamespaceBuilder::default().typ(typ);
                if let Some(path) = &n.path {
                    b = b.path(path.clone());
                }
                b.build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(spec_err)
    }
}

/// An oci-spec builder's refusal as our error.
fn spec_err(e: oci_spec::OciSpecError) -> Error {
    Error::Spec(e.to_string())
}

/// The capabilities containerd and CRI-O grant by default.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;

    fn host() -> HostLimits {
        HostLimits {
            capabilities: CapabilityMask(0x1fffeffffff),
            oom_score_adj: 0,
            can_lower_oom_score_adj: false,
        }
    }

    #[test]
    fn no_capability_leaks_into_inheritable_or_ambient() {
        let mut spec = ContainerSpec::new("/r", ["/pause"]);
        spec.process.capabilities.clear();
        let host = HostLimits::of_current_process().unwrap();
        let oci = spec.to_oci(&host).unwrap();
        let caps = oci
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        for set in [
            caps.bounding(),
            caps.inheritable(),
            caps.ambient(),
            caps.effective(),
        ] {
            assert!(set.as_ref().is_none_or(|s| s.is_empty()), "{caps:?}");
        }
    }

    #[test]
    fn privileged_gets_exactly_the_held_capabilities() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        spec.privileged = true;
        let oci = spec.to_oci(&host()).unwrap();
        let caps = oci
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        let bounding = caps.bounding().as_ref().unwrap();
        assert_eq!(bounding.len(), 40);
        assert!(!bounding.contains(&Capability::SysResource));
        assert!(bounding.contains(&Capability::SysAdmin));
    }

    #[test]
    fn unheld_capability_is_not_requested() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        spec.process.capabilities = vec!["CAP_SYS_RESOURCE".into(), "NET_ADMIN".into()];
        let oci = spec.to_oci(&host()).unwrap();
        let caps = oci
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        let eff = caps.effective().as_ref().unwrap();
        assert_eq!(eff.len(), 1);
        assert!(eff.contains(&Capability::NetAdmin));
    }

    #[test]
    fn oom_score_adj_is_clamped() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        spec.process.oom_score_adj = Some(-997);
        let oci = spec.to_oci(&host()).unwrap();
        assert_eq!(oci.process().as_ref().unwrap().oom_score_adj(), Some(0));
    }

    #[test]
    fn joined_namespaces_keep_their_path() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        spec.namespaces = vec![NamespaceSpec {
            kind: NamespaceKind::Network,
            path: Some("/run/netns/pod1".into()),
        }];
        let json = serde_json::to_value(spec.to_oci(&host()).unwrap()).unwrap();
        assert_eq!(json["linux"]["namespaces"][0]["type"], "network");
        assert_eq!(json["linux"]["namespaces"][0]["path"], "/run/netns/pod1");
    }

    #[test]
    fn bidirectional_mount_makes_rootfs_shared() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        spec.mounts = vec![
            MountSpec {
                destination: "/a".into(),
                kind: "bind".into(),
                source: "/srv/a".into(),
                options: vec!["rbind".into()],
                propagation: Some(Propagation::HostToContainer),
            },
            MountSpec {
                destination: "/b".into(),
                kind: "bind".into(),
                source: "/srv/b".into(),
                options: vec!["rbind".into()],
                propagation: Some(Propagation::Bidirectional),
            },
        ];
        let json = serde_json::to_value(spec.to_oci(&host()).unwrap()).unwrap();
        assert_eq!(json["linux"]["rootfsPropagation"], "rshared");
        assert_eq!(json["mounts"][0]["options"][1], "rslave");
        assert_eq!(json["mounts"][1]["options"][1], "rshared");
    }

    #[test]
    fn no_defaults_sneak_in() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        spec.masked_paths.clear();
        let json = serde_json::to_value(spec.to_oci(&host()).unwrap()).unwrap();
        assert!(json.get("hostname").is_none(), "{json}");
        assert!(json["linux"].get("resources").is_none(), "{json}");
        assert!(json["linux"].get("cgroupsPath").is_none(), "{json}");
        assert_eq!(json["linux"]["maskedPaths"], serde_json::json!([]));
        assert_eq!(json["process"]["rlimits"], serde_json::json!([]));
        assert_eq!(json["process"]["noNewPrivileges"], false);
        assert!(json["process"].get("oomScoreAdj").is_none(), "{json}");
        assert!(json["process"].get("apparmorProfile").is_none(), "{json}");
        assert_eq!(json["mounts"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn apparmor_profile_reaches_the_process() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        spec.process.apparmor_profile = Some("my-profile".into());
        let json = serde_json::to_value(spec.to_oci(&host()).unwrap()).unwrap();
        assert_eq!(json["process"]["apparmorProfile"], "my-profile");
    }

    #[test]
    fn empty_args_are_refused() {
        let spec = ContainerSpec::new("/r", Vec::<String>::new());
        assert!(matches!(spec.to_oci(&host()), Err(Error::Spec(_))));
    }

    #[test]
    fn pod_role_becomes_both_annotation_dialects() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        spec.pod_role = Some(PodRole::Container {
            sandbox_id: "sb1".into(),
        });
        let oci = spec.to_oci(&host()).unwrap();
        let ann = oci.annotations().as_ref().unwrap();
        assert_eq!(ann["io.kubernetes.cri.container-type"], "container");
        assert_eq!(ann["io.kubernetes.cri.sandbox-id"], "sb1");
        assert_eq!(ann["io.kubernetes.cri-o.SandboxID"], "sb1");
    }

    #[test]
    fn spec_round_trips_through_json() {
        let mut spec = ContainerSpec::new("/r", ["sleep", "1"]);
        spec.process.rlimits = vec![RlimitSpec {
            kind: PosixRlimitType::RlimitNofile,
            soft: 1024,
            hard: 4096,
        }];
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<ContainerSpec>(&text).unwrap(), spec);
    }
}
