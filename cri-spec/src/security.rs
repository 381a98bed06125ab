//! A container's security context → its spec: capabilities, seccomp,
//! AppArmor, masked and read-only paths, `no_new_privs`, and what
//! `privileged` lifts (every capability the daemon holds, every host device,
//! no seccomp, no AppArmor, no masked or read-only paths, a writable `/sys`).
//!
//! Users and groups are resolved in `create` (they need the root
//! filesystem); namespaces are the pod's business (`crate::pod`).
//!
//! # On gVisor (runsc 20221219)
//!
//! Capabilities (add, drop, `ALL`), users and groups, `no_new_privs`, the
//! read-only root and the namespaces behave as on runc, with two limits:
//! runsc does not know `CAP_PERFMON`, `CAP_BPF` and
//! `CAP_CHECKPOINT_RESTORE`, so they are never asked of it
//! ([`gvisor_limits`]); and what gVisor enforces is its own kernel's checks.
//! Not applied by runsc: seccomp profiles (runsc ignores `linux.seccomp`
//! unless run with `--oci-seccomp`; `sethostname` still fails without
//! `CAP_SYS_ADMIN` because gVisor checks the capability), masked and
//! read-only paths, AppArmor, pod sysctls (accepted, logged, not set), and
//! volume mount propagation (volumes go through gVisor's gofer).

use crate::seccomp::{Profile, SeccompError};
use cri_api::v1 as cri;
use oci_shim::spec::{ContainerSpec, HostLimits, CAPABILITY_NAMES};
use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxSeccomp};
use std::path::Path;

/// Paths masked in every unprivileged container unless the request names
/// its own (containerd's list).
pub const DEFAULT_MASKED_PATHS: [&str; 9] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths read-only in every unprivileged container unless the request names
/// its own (containerd's list).
pub const DEFAULT_READONLY_PATHS: [&str; 6] = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The name under which a node-loaded AppArmor profile serves as the runtime
/// default (Docker's).
pub const APPARMOR_DEFAULT_PROFILE: &str = "docker-default";

/// Capabilities gVisor's `runsc` does not know (newer than
/// `CAP_AUDIT_READ`): asking for one makes its sandbox fail to start.
pub const GVISOR_UNKNOWN_CAPABILITIES: [&str; 3] =
    ["CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"];

/// `host` as a gVisor container may use it: without
/// [`GVISOR_UNKNOWN_CAPABILITIES`], so `ALL` and privileged containers get
/// what runsc can grant instead of failing.
///
/// # Examples
///
/// ```
/// use cri_spec::security::gvisor_limits;
/// use oci_shim::spec::{CapabilityMask, HostLimits};
///
/// let host = HostLimits { capabilities: CapabilityMask(u64::MAX), oom_score_adj: 0, can_lower_oom_score_adj: true };
/// assert!(!gvisor_limits(host).capabilities.contains_name("CAP_BPF"));
/// assert!(gvisor_limits(host).capabilities.contains_name("CAP_SYS_ADMIN"));
/// ```
pub fn gvisor_limits(mut host: HostLimits) -> HostLimits {
    for name in GVISOR_UNKNOWN_CAPABILITIES {
        if let Some(bit) = CAPABILITY_NAMES.iter().position(|n| *n == name) {
            host.capabilities.0 &= !(1u64 << bit);
        }
    }
    host
}

/// A security context the daemon cannot honour; each names the field.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A capability name that Linux does not have.
    #[error("capabilities.{field}: unknown capability {name:?}")]
    UnknownCapability {
        /// `add_capabilities` or `drop_capabilities`.
        field: &'static str,
        /// The name as given.
        name: String,
    },
    /// A seccomp profile that cannot be read or parsed.
    #[error("{field}: {source}")]
    Seccomp {
        /// `seccomp.localhost_ref` or `seccomp_profile_path`.
        field: &'static str,
        /// The cause.
        source: SeccompError,
    },
    /// A seccomp profile reference that is neither a known name nor a
    /// `localhost/` path.
    #[error("{field}: {value:?} is not runtime/default, docker/default, unconfined or localhost/<absolute path>")]
    SeccompReference {
        /// `seccomp.localhost_ref` or `seccomp_profile_path`.
        field: &'static str,
        /// The value as given.
        value: String,
    },
    /// A named AppArmor profile on a node without AppArmor.
    #[error(
        "{field}: AppArmor profile {profile:?} requested, but AppArmor is not enabled on this node"
    )]
    AppArmorDisabled {
        /// `apparmor.localhost_ref` or `apparmor_profile`.
        field: &'static str,
        /// The profile.
        profile: String,
    },
    /// An AppArmor reference that is neither a known name nor `localhost/`.
    #[error("{field}: {value:?} is not runtime/default, unconfined or localhost/<profile>")]
    AppArmorReference {
        /// `apparmor.localhost_ref` or `apparmor_profile`.
        field: &'static str,
        /// The value as given.
        value: String,
    },
    /// A host device could not be listed for a privileged container.
    #[error("privileged: host device {path}: {cause}")]
    HostDevice {
        /// The device.
        path: String,
        /// The cause.
        cause: String,
    },
}

/// Applies everything of `security` except users, groups and namespaces to
/// `spec`. `apparmor_enabled` is the node's state ([`apparmor_enabled`]).
///
/// # Examples
///
/// ```
/// use cri_spec::security::{apply, DEFAULT_MASKED_PATHS};
/// use cri_api::v1 as cri;
/// use oci_shim::spec::ContainerSpec;
///
/// let mut spec = ContainerSpec::new("/rootfs", ["sh"]);
/// let context = cri::LinuxContainerSecurityContext {
///     seccomp: Some(cri::SecurityProfile::default()), // RuntimeDefault
///     ..Default::default()
/// };
/// apply(&mut spec, &context, false).unwrap();
/// assert!(spec.seccomp.is_some());
/// assert_eq!(spec.masked_paths.len(), DEFAULT_MASKED_PATHS.len());
/// ```
pub fn apply(
    spec: &mut ContainerSpec,
    security: &cri::LinuxContainerSecurityContext,
    apparmor_enabled: bool,
) -> Result<(), SecurityError> {
    apply_with_devices(spec, security, apparmor_enabled, true)
}

/// [`apply`], choosing whether a privileged container gets the host's
/// devices: a handler with `privileged_without_host_devices` (containerd's
/// key; a VM-based runtime, or an operator who wants privilege without
/// `/dev`) passes `false`, and privilege lifts everything else.
pub fn apply_with_devices(
    spec: &mut ContainerSpec,
    security: &cri::LinuxContainerSecurityContext,
    apparmor_enabled: bool,
    host_devices: bool,
) -> Result<(), SecurityError> {
    if let Some(caps) = &security.capabilities {
        spec.process.capabilities = capabilities(
            &spec.process.capabilities,
            &caps.add_capabilities,
            &caps.drop_capabilities,
        )?;
    }
    spec.process.no_new_privileges = security.no_new_privs;
    spec.privileged = security.privileged;
    // Profiles are checked even when privilege ignores them: a bad
    // reference is a bad request either way.
    let seccomp = seccomp(security, &spec.process.capabilities)?;
    let apparmor = apparmor(security, apparmor_enabled)?;
    if security.privileged {
        spec.seccomp = None;
        spec.process.apparmor_profile = None;
        spec.masked_paths.clear();
        spec.readonly_paths.clear();
        for mount in spec.mounts.iter_mut().filter(|m| m.kind == "sysfs") {
            for option in mount.options.iter_mut().filter(|o| *o == "ro") {
                *option = "rw".into();
            }
        }
        if host_devices {
            add_host_devices(spec, Path::new("/dev"))?;
        }
    } else {
        spec.seccomp = seccomp;
        spec.process.apparmor_profile = apparmor;
        spec.masked_paths = paths_or_default(&security.masked_paths, &DEFAULT_MASKED_PATHS);
        spec.readonly_paths = paths_or_default(&security.readonly_paths, &DEFAULT_READONLY_PATHS);
    }
    Ok(())
}

fn paths_or_default(requested: &[String], default: &[&str]) -> Vec<String> {
    if requested.is_empty() {
        default.iter().map(|p| p.to_string()).collect()
    } else {
        requested.to_vec()
    }
}

/// Applies CRI's add and drop lists (names with or without `CAP_`, or `ALL`)
/// to `base`. Drop is applied first, so `drop ALL, add X` leaves only X.
///
/// # Examples
///
/// ```
/// use cri_spec::security::capabilities;
///
/// let base = vec!["CAP_CHOWN".to_string(), "CAP_KILL".to_string()];
/// let caps = capabilities(&base, &["sys_admin".into()], &["KILL".into()]).unwrap();
/// assert_eq!(caps, ["CAP_CHOWN", "CAP_SYS_ADMIN"]);
/// ```
pub fn capabilities(
    base: &[String],
    add: &[String],
    drop: &[String],
) -> Result<Vec<String>, SecurityError> {
    let normalise = |field: &'static str, name: &String| -> Result<String, SecurityError> {
        let upper = name.trim().to_ascii_uppercase();
        if upper == "ALL" {
            return Ok(upper);
        }
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if CAPABILITY_NAMES.contains(&full.as_str()) {
            Ok(full)
        } else {
            Err(SecurityError::UnknownCapability {
                field,
                name: name.clone(),
            })
        }
    };
    let add: Vec<String> = add
        .iter()
        .map(|n| normalise("add_capabilities", n))
        .collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop
        .iter()
        .map(|n| normalise("drop_capabilities", n))
        .collect::<Result<_, _>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|d| d == "ALL") {
        Vec::new()
    } else {
        base.iter().filter(|c| !drop.contains(c)).cloned().collect()
    };
    if add.iter().any(|a| a == "ALL") {
        caps = CAPABILITY_NAMES.iter().map(|c| c.to_string()).collect();
    } else {
        for cap in add {
            if !caps.contains(&cap) {
                caps.push(cap);
            }
        }
    }
    Ok(caps)
}

/// Which seccomp profile a container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// No filter.
    Unconfined,
    /// The built-in default profile.
    RuntimeDefault,
    /// A profile file on the node.
    Localhost(String),
}

/// Reads the seccomp choice from `seccomp` (when set) or the legacy
/// `seccomp_profile_path`: empty and `unconfined` are unconfined,
/// `runtime/default` and `docker/default` the default, `localhost/<path>`
/// a file; anything else is refused.
// The legacy field is still what critest and older kubelets send.
#[allow(deprecated)]
pub fn seccomp_choice(
    security: &cri::LinuxContainerSecurityContext,
) -> Result<SeccompChoice, SecurityError> {
    use cri::security_profile::ProfileType;
    if let Some(profile) = &security.seccomp {
        return match ProfileType::try_from(profile.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(SeccompChoice::RuntimeDefault),
            Ok(ProfileType::Unconfined) => Ok(SeccompChoice::Unconfined),
            Ok(ProfileType::Localhost) if profile.localhost_ref.starts_with('/') => {
                Ok(SeccompChoice::Localhost(profile.localhost_ref.clone()))
            }
            _ => Err(SecurityError::SeccompReference {
                field: "seccomp.localhost_ref",
                value: profile.localhost_ref.clone(),
            }),
        };
    }
    let path = security.seccomp_profile_path.as_str();
    match path {
        "" | "unconfined" => Ok(SeccompChoice::Unconfined),
        "runtime/default" | "docker/default" => Ok(SeccompChoice::RuntimeDefault),
        _ => match path.strip_prefix("localhost/") {
            Some(file) if file.starts_with('/') => Ok(SeccompChoice::Localhost(file.to_string())),
            _ => Err(SecurityError::SeccompReference {
                field: "seccomp_profile_path",
                value: path.to_string(),
            }),
        },
    }
}

/// The seccomp filter for a container holding `capabilities`, or `None`
/// when it runs unconfined.
pub fn seccomp(
    security: &cri::LinuxContainerSecurityContext,
    capabilities: &[String],
) -> Result<Option<LinuxSeccomp>, SecurityError> {
    let field = if security.seccomp.is_some() {
        "seccomp.localhost_ref"
    } else {
        "seccomp_profile_path"
    };
    let profile = match seccomp_choice(security)? {
        SeccompChoice::Unconfined => return Ok(None),
        SeccompChoice::RuntimeDefault => Profile::runtime_default(),
        SeccompChoice::Localhost(path) => Profile::load(Path::new(&path)),
    }
    .map_err(|source| SecurityError::Seccomp { field, source })?;
    profile
        .to_oci(capabilities)
        .map(Some)
        .map_err(|source| SecurityError::Seccomp { field, source })
}

/// Whether the kernel has AppArmor enabled.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// The AppArmor profile to apply, or `None`. Without AppArmor on the node,
/// unconfined and the runtime default mean nothing and a named profile is
/// an error; with it, the runtime default is [`APPARMOR_DEFAULT_PROFILE`]
/// when the node has loaded it.
// The legacy field is still what critest and older kubelets send.
#[allow(deprecated)]
pub fn apparmor(
    security: &cri::LinuxContainerSecurityContext,
    enabled: bool,
) -> Result<Option<String>, SecurityError> {
    use cri::security_profile::ProfileType;
    let (field, named) = if let Some(profile) = &security.apparmor {
        let field = "apparmor.localhost_ref";
        match ProfileType::try_from(profile.profile_type) {
            Ok(ProfileType::RuntimeDefault) => (field, Some(None)),
            Ok(ProfileType::Unconfined) => (field, None),
            Ok(ProfileType::Localhost) if !profile.localhost_ref.is_empty() => (
                field,
                Some(Some(
                    profile
                        .localhost_ref
                        .strip_prefix("localhost/")
                        .unwrap_or(&profile.localhost_ref)
                        .to_string(),
                )),
            ),
            _ => {
                return Err(SecurityError::AppArmorReference {
                    field,
                    value: profile.localhost_ref.clone(),
                })
            }
        }
    } else {
        let field = "apparmor_profile";
        match security.apparmor_profile.as_str() {
            "" | "unconfined" => (field, None),
            "runtime/default" => (field, Some(None)),
            other => match other.strip_prefix("localhost/") {
                Some(name) if !name.is_empty() => (field, Some(Some(name.to_string()))),
                _ => {
                    return Err(SecurityError::AppArmorReference {
                        field,
                        value: other.to_string(),
                    })
                }
            },
        }
    };
    match named {
        None => Ok(None),
        Some(None) if !enabled => Ok(None),
        Some(None) => {
            Ok(apparmor_loaded(APPARMOR_DEFAULT_PROFILE)
                .then(|| APPARMOR_DEFAULT_PROFILE.to_string()))
        }
        Some(Some(profile)) if !enabled => Err(SecurityError::AppArmorDisabled { field, profile }),
        Some(Some(profile)) => Ok(Some(profile)),
    }
}

fn apparmor_loaded(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").is_ok_and(|list| {
        list.lines()
            .any(|l| l.split(" (").next().is_some_and(|n| n == name))
    })
}

/// Gives a privileged container every character and block device under
/// `dev` (as containerd does), and a cgroup rule allowing all devices.
fn add_host_devices(spec: &mut ContainerSpec, dev: &Path) -> Result<(), SecurityError> {
    let mut found = Vec::new();
    collect_devices(dev, &mut found)?;
    for path in found {
        if spec.devices.iter().any(|d| d.path() == &path) {
            continue;
        }
        let device = cri::Device {
            container_path: path.to_string_lossy().into_owned(),
            host_path: path.to_string_lossy().into_owned(),
            permissions: "rwm".into(),
        };
        // A node that vanished while we looked is not the request's fault.
        if let Ok((node, _)) = crate::devices::to_oci(&device) {
            spec.devices.push(node);
        }
    }
    let allow_all = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .access("rwm")
        .build()
        .map_err(|e| SecurityError::HostDevice {
            path: dev.display().to_string(),
            cause: e.to_string(),
        })?;
    let mut resources = spec.resources.take().unwrap_or_default();
    resources.set_devices(Some(vec![allow_all]));
    spec.resources = Some(resources);
    Ok(())
}

fn collect_devices(dir: &Path, found: &mut Vec<std::path::PathBuf>) -> Result<(), SecurityError> {
    use std::os::unix::fs::FileTypeExt;
    let entries = std::fs::read_dir(dir).map_err(|e| SecurityError::HostDevice {
        path: dir.display().to_string(),
        cause: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if kind.is_dir() {
            // The container gets its own of these.
            if !matches!(
                name.to_str(),
                Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
            ) {
                collect_devices(&path, found)?;
            }
        } else if (kind.is_char_device() || kind.is_block_device())
            && path != Path::new("/dev/console")
        {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(deprecated)]
mod tests {
    use super::*;
    use cri::security_profile::ProfileType;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    fn context() -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext::default()
    }

    #[test]
    fn capability_add_and_drop() {
        let base = v(&["CAP_CHOWN", "CAP_KILL"]);
        assert_eq!(
            capabilities(&base, &v(&["sys_admin"]), &v(&["KILL"])).unwrap(),
            v(&["CAP_CHOWN", "CAP_SYS_ADMIN"])
        );
        assert_eq!(
            capabilities(&base, &v(&["CAP_NET_RAW"]), &v(&["ALL"])).unwrap(),
            v(&["CAP_NET_RAW"])
        );
        assert_eq!(
            capabilities(&base, &v(&["ALL"]), &[]).unwrap().len(),
            CAPABILITY_NAMES.len()
        );
        let err = capabilities(&base, &[], &v(&["CAP_FLY"])).unwrap_err();
        assert!(
            err.to_string().contains("drop_capabilities") && err.to_string().contains("CAP_FLY"),
            "{err}"
        );
    }

    #[test]
    fn seccomp_references() {
        let path = |p: &str| cri::LinuxContainerSecurityContext {
            seccomp_profile_path: p.into(),
            ..context()
        };
        assert_eq!(
            seccomp_choice(&path("")).unwrap(),
            SeccompChoice::Unconfined
        );
        assert_eq!(
            seccomp_choice(&path("unconfined")).unwrap(),
            SeccompChoice::Unconfined
        );
        for default in ["runtime/default", "docker/default"] {
            assert_eq!(
                seccomp_choice(&path(default)).unwrap(),
                SeccompChoice::RuntimeDefault
            );
        }
        assert_eq!(
            seccomp_choice(&path("localhost//etc/p.json")).unwrap(),
            SeccompChoice::Localhost("/etc/p.json".into())
        );
        let err = seccomp_choice(&path("/etc/p.json")).unwrap_err();
        assert!(err.to_string().contains("seccomp_profile_path"), "{err}");
        let typed = |t: ProfileType, r: &str| cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            }),
            // The typed field wins over the legacy one.
            seccomp_profile_path: "bogus".into(),
            ..context()
        };
        assert_eq!(
            seccomp_choice(&typed(ProfileType::RuntimeDefault, "")).unwrap(),
            SeccompChoice::RuntimeDefault
        );
        assert_eq!(
            seccomp_choice(&typed(ProfileType::Localhost, "/p")).unwrap(),
            SeccompChoice::Localhost("/p".into())
        );
        assert!(seccomp_choice(&typed(ProfileType::Localhost, "p")).is_err());
    }

    #[test]
    fn unreadable_seccomp_file_names_the_field_and_file() {
        let sc = cri::LinuxContainerSecurityContext {
            seccomp_profile_path: "localhost//nonexistent/profile.json".into(),
            ..context()
        };
        let err = seccomp(&sc, &[]).unwrap_err().to_string();
        assert!(err.contains("seccomp_profile_path"), "{err}");
        assert!(err.contains("/nonexistent/profile.json"), "{err}");
    }

    #[test]
    fn apparmor_without_the_kernel() {
        let legacy = |p: &str| cri::LinuxContainerSecurityContext {
            apparmor_profile: p.into(),
            ..context()
        };
        assert_eq!(apparmor(&legacy(""), false).unwrap(), None);
        assert_eq!(apparmor(&legacy("runtime/default"), false).unwrap(), None);
        assert_eq!(apparmor(&legacy("unconfined"), false).unwrap(), None);
        let err = apparmor(&legacy("localhost/my-profile"), false).unwrap_err();
        assert!(
            matches!(err, SecurityError::AppArmorDisabled { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("my-profile"));
        assert_eq!(
            apparmor(&legacy("localhost/my-profile"), true).unwrap(),
            Some("my-profile".into())
        );
        assert!(apparmor(&legacy("my-profile"), true).is_err());
        let typed = cri::LinuxContainerSecurityContext {
            apparmor: Some(cri::SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: "p".into(),
            }),
            ..context()
        };
        assert!(apparmor(&typed, false).is_err());
        assert_eq!(apparmor(&typed, true).unwrap(), Some("p".into()));
    }

    #[test]
    fn defaults_and_requested_paths() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        apply(&mut spec, &context(), false).unwrap();
        assert_eq!(spec.masked_paths, v(&DEFAULT_MASKED_PATHS));
        assert_eq!(spec.readonly_paths, v(&DEFAULT_READONLY_PATHS));
        assert!(spec.seccomp.is_none());
        let sc = cri::LinuxContainerSecurityContext {
            masked_paths: v(&["/etc/hostname"]),
            readonly_paths: v(&["/etc"]),
            no_new_privs: true,
            ..context()
        };
        apply(&mut spec, &sc, false).unwrap();
        assert_eq!(spec.masked_paths, v(&["/etc/hostname"]));
        assert_eq!(spec.readonly_paths, v(&["/etc"]));
        assert!(spec.process.no_new_privileges);
    }

    #[test]
    fn privileged_lifts_confinement() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        let sc = cri::LinuxContainerSecurityContext {
            privileged: true,
            seccomp_profile_path: "runtime/default".into(),
            ..context()
        };
        apply(&mut spec, &sc, false).unwrap();
        assert!(spec.privileged);
        assert!(spec.seccomp.is_none());
        assert!(spec.masked_paths.is_empty() && spec.readonly_paths.is_empty());
        let sys = spec.mounts.iter().find(|m| m.kind == "sysfs").unwrap();
        assert!(!sys.options.contains(&"ro".to_string()), "{sys:?}");
        assert!(spec
            .devices
            .iter()
            .any(|d| d.path() == Path::new("/dev/null")));
        let rules = spec.resources.as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow() && rules[0].typ().is_none());
    }

    #[test]
    fn privileged_without_host_devices_lifts_the_rest_only() {
        let mut spec = ContainerSpec::new("/r", ["true"]);
        let before = spec.devices.len();
        let sc = cri::LinuxContainerSecurityContext {
            privileged: true,
            ..context()
        };
        apply_with_devices(&mut spec, &sc, false, false).unwrap();
        assert!(spec.privileged && spec.masked_paths.is_empty());
        assert_eq!(spec.devices.len(), before, "{:?}", spec.devices);
        assert!(!spec
            .devices
            .iter()
            .any(|d| d.path() == Path::new("/dev/null")));
    }
}
