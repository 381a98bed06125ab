//! Seccomp profiles: the built-in default (`RuntimeDefault`), profiles loaded
//! from the node (`Localhost`), and their translation to OCI's
//! [`LinuxSeccomp`] for one container's capabilities and the node's
//! architecture.
//!
//! Profiles are read in Docker's format, which kubelet, containerd and CRI-O
//! all accept: a default action, an `archMap` (or OCI's `architectures`) and
//! rules that may apply only when the container holds (`includes.caps`) or
//! lacks (`excludes.caps`) a capability, or only on some architectures. An
//! OCI `linux.seccomp` document is a subset of that format and loads too.
//! The conditions are resolved here, once, so the runtime receives a plain
//! OCI filter: this is how `sethostname` is refused without `CAP_SYS_ADMIN`
//! and allowed with it under the same default profile.

use oci_spec::runtime::LinuxSeccomp;
use serde::Deserialize;
use std::path::Path;

/// The default profile, equivalent to Docker's and containerd's: deny with
/// `EPERM` unless allowed, and the privileged syscalls only with their
/// capability. Written for this project; see `data/seccomp-default.json`.
pub const DEFAULT_PROFILE_JSON: &str = include_str!("../data/seccomp-default.json");

/// The largest seccomp profile read from the node (Docker's default is
/// 20 KiB).
pub const MAX_PROFILE_BYTES: u64 = 1024 * 1024;

/// Why a seccomp profile could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile file could not be read, or is not a regular file of at
    /// most [`MAX_PROFILE_BYTES`] (the error names the file and the cause).
    #[error("seccomp profile: {0}")]
    Read(#[from] crate::rootfs_file::FileError),
    /// A rule of the profile cannot become an OCI filter.
    #[error("seccomp profile: {0}")]
    Filter(String),
    /// The profile is not valid JSON in Docker's or OCI's seccomp format.
    #[error("seccomp profile {name}: {cause}")]
    Parse {
        /// The file, or `default` for the built-in profile.
        name: String,
        /// What the parser said.
        cause: String,
    },
}

/// A seccomp profile in Docker's format, not yet specialised to a container.
///
/// # Examples
///
/// ```
/// use cri_spec::seccomp::Profile;
///
/// let profile = Profile::runtime_default().unwrap();
/// let without_admin = profile.to_oci(&["CAP_CHOWN".to_string()]).unwrap();
/// let with_admin = profile.to_oci(&["CAP_SYS_ADMIN".to_string()]).unwrap();
/// let allows = |f: &oci_spec::runtime::LinuxSeccomp| {
///     f.syscalls().iter().flatten().any(|s| s.names().iter().any(|n| n == "sethostname"))
/// };
/// assert!(!allows(&without_admin));
/// assert!(allows(&with_admin));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    /// Docker's pre-1.0 spelling of a one-name rule.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<serde_json::Value>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

impl Profile {
    /// The built-in default profile.
    pub fn runtime_default() -> Result<Profile, SeccompError> {
        Profile::parse("default", DEFAULT_PROFILE_JSON)
    }

    /// Loads a profile from a file on the node.
    pub fn load(path: &Path) -> Result<Profile, SeccompError> {
        // The path comes from the pod: a FIFO or a device there must not
        // hang or flood the daemon.
        let bytes = crate::rootfs_file::read_node_file(path, MAX_PROFILE_BYTES)?;
        Profile::parse(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        )
    }

    /// Parses profile `text`; `name` only labels errors.
    pub fn parse(name: &str, text: &str) -> Result<Profile, SeccompError> {
        let profile: Profile = serde_json::from_str(text).map_err(|e| SeccompError::Parse {
            name: name.to_string(),
            cause: e.to_string(),
        })?;
        // Fail now, naming the file, rather than in the runtime later.
        profile.to_oci(&[]).map_err(|e| SeccompError::Parse {
            name: name.to_string(),
            cause: match e {
                SeccompError::Filter(cause) => cause,
                other => other.to_string(),
            },
        })?;
        Ok(profile)
    }

    /// The OCI filter for a container holding `capabilities` (`CAP_` names)
    /// on this node's architecture.
    pub fn to_oci(&self, capabilities: &[String]) -> Result<LinuxSeccomp, SeccompError> {
        self.to_oci_for(capabilities, native_arch())
    }

    fn to_oci_for(
        &self,
        capabilities: &[String],
        arch: NativeArch,
    ) -> Result<LinuxSeccomp, SeccompError> {
        let holds = |cap: &String| {
            let cap = cap.to_ascii_uppercase();
            capabilities.iter().any(|c| c.eq_ignore_ascii_case(&cap))
        };
        let mut syscalls = Vec::new();
        for rule in &self.syscalls {
            let applies = rule.includes.caps.iter().all(holds)
                && !rule.excludes.caps.iter().any(holds)
                && (rule.includes.arches.is_empty()
                    || rule.includes.arches.iter().any(|a| a == arch.docker))
                && !rule.excludes.arches.iter().any(|a| a == arch.docker);
            if !applies {
                continue;
            }
            let mut names = rule.names.clone();
            names.extend(rule.name.clone());
            if names.is_empty() {
                return Err(SeccompError::Filter(format!(
                    "a rule with action {} names no syscall",
                    rule.action
                )));
            }
            let mut entry = serde_json::json!({ "names": names, "action": rule.action });
            if let Some(errno) = rule.errno_ret {
                entry["errnoRet"] = errno.into();
            }
            if !rule.args.is_empty() {
                entry["args"] = rule.args.clone().into();
            }
            syscalls.push(entry);
        }
        let mut architectures = self.architectures.clone();
        if let Some(map) = self
            .arch_map
            .iter()
            .find(|m| m.architecture == arch.seccomp)
        {
            architectures.push(map.architecture.clone());
            architectures.extend(map.sub_architectures.iter().cloned());
        }
        let mut doc = serde_json::json!({
            "defaultAction": self.default_action,
            "syscalls": syscalls,
        });
        if let Some(errno) = self.default_errno_ret {
            doc["defaultErrnoRet"] = errno.into();
        }
        if !architectures.is_empty() {
            doc["architectures"] = architectures.into();
        }
        if !self.flags.is_empty() {
            doc["flags"] = self.flags.clone().into();
        }
        serde_json::from_value(doc).map_err(|e| SeccompError::Filter(e.to_string()))
    }
}

/// The node's architecture in Docker's (`amd64`) and libseccomp's
/// (`SCMP_ARCH_X86_64`) spelling.
#[derive(Debug, Clone, Copy)]
struct NativeArch {
    docker: &'static str,
    seccomp: &'static str,
}

fn native_arch() -> NativeArch {
    let (docker, seccomp) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        other => (other, ""),
    };
    NativeArch { docker, seccomp }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompOperator};

    const AMD64: NativeArch = NativeArch {
        docker: "amd64",
        seccomp: "SCMP_ARCH_X86_64",
    };

    fn allowed(filter: &LinuxSeccomp, name: &str) -> bool {
        filter.syscalls().iter().flatten().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow && s.names().iter().any(|n| n == name)
        })
    }

    #[test]
    fn the_default_profile_parses_and_denies_by_default() {
        let profile = Profile::runtime_default().unwrap();
        let filter = profile.to_oci_for(&[], AMD64).unwrap();
        assert_eq!(filter.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(filter.default_errno_ret(), Some(1));
        for common in [
            "read",
            "write",
            "execve",
            "exit_group",
            "openat",
            "arch_prctl",
        ] {
            assert!(allowed(&filter, common), "{common} must be allowed");
        }
        for privileged in ["sethostname", "mount", "reboot", "init_module", "unshare"] {
            assert!(!allowed(&filter, privileged), "{privileged} must not be");
        }
        let arches = filter.architectures().clone().unwrap();
        assert_eq!(arches.len(), 3, "{arches:?}");
    }

    #[test]
    fn capability_rules_follow_the_container() {
        let profile = Profile::runtime_default().unwrap();
        let admin = profile
            .to_oci_for(&["CAP_SYS_ADMIN".into()], AMD64)
            .unwrap();
        assert!(allowed(&admin, "sethostname"));
        assert!(allowed(&admin, "mount"));
        // clone is unconditional with SYS_ADMIN, limited by flags without.
        let plain = profile.to_oci_for(&[], AMD64).unwrap();
        let clone = plain
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names().iter().any(|n| n == "clone"))
            .unwrap();
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), 2114060288);
        let clone3 = plain
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names().iter().any(|n| n == "clone3"))
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(38));
    }

    #[test]
    fn arch_specific_rules_are_dropped_elsewhere() {
        let profile = Profile::runtime_default().unwrap();
        let arm = NativeArch {
            docker: "arm64",
            seccomp: "SCMP_ARCH_AARCH64",
        };
        let filter = profile.to_oci_for(&[], arm).unwrap();
        assert!(!allowed(&filter, "arch_prctl"));
        assert!(allowed(&filter, "set_tls"));
    }

    #[test]
    fn a_small_docker_profile_and_an_oci_one_load() {
        let docker = r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}"#;
        let p = Profile::parse("x", docker).unwrap();
        let f = p.to_oci(&[]).unwrap();
        assert_eq!(f.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(f.syscalls().as_ref().unwrap().len(), 1);
        let oci = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#;
        assert!(Profile::parse("y", oci).is_ok());
    }

    #[test]
    fn bad_profiles_name_the_file() {
        let err = Profile::parse("/p.json", "{").unwrap_err().to_string();
        assert!(err.contains("/p.json"), "{err}");
        let err = Profile::parse("/q.json", r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/q.json"), "{err}");
        let err = Profile::load(Path::new("/nonexistent/profile.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/profile.json"), "{err}");
    }
}
