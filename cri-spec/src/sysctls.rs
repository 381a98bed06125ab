//! A pod's sysctls: checked before anything is created, then set on the
//! infra container's spec.
//!
//! Only namespaced sysctls are allowed (the IPC ones and `net.*`), as
//! kubelet and runc require: setting them in the infra container sets them
//! in the pod's IPC and network namespaces, which every container of the pod
//! joins. The network ones reach the pinned namespace because the infra
//! container joins it. Whether a sysctl is "safe" or "unsafe" is kubelet's
//! admission decision; here both kinds are set.

use std::collections::{BTreeMap, HashMap};

/// A sysctl the pod cannot have; each names the sysctl.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SysctlError {
    /// Not a well-formed sysctl name.
    #[error("sysctls: {name:?} is not a valid sysctl name")]
    Name {
        /// The name as given.
        name: String,
    },
    /// An empty value or one with a newline or NUL.
    #[error("sysctls: {name}: value {value:?} is empty or has a newline or NUL")]
    Value {
        /// The sysctl.
        name: String,
        /// The value as given.
        value: String,
    },
    /// A sysctl that is not namespaced: it would change the whole node.
    #[error("sysctls: {name} is not namespaced: it would change the node, not the pod")]
    NotNamespaced {
        /// The sysctl.
        name: String,
    },
    /// A namespaced sysctl whose namespace the pod shares with the host.
    #[error("sysctls: {name} would change the host's {namespace} namespace, which the pod shares")]
    HostNamespace {
        /// The sysctl.
        name: String,
        /// `network` or `IPC`.
        namespace: &'static str,
    },
}

/// The namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNamespace {
    /// IPC (`kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`).
    Ipc,
    /// Network (`net.*`).
    Network,
}

/// The namespace of sysctl `name` (dotted form), or `None` if it has none.
pub fn namespace_of(name: &str) -> Option<SysctlNamespace> {
    const IPC_EXACT: [&str; 7] = [
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
    ];
    if IPC_EXACT.contains(&name) || name == "kernel.msgmni" || name.starts_with("fs.mqueue.") {
        Some(SysctlNamespace::Ipc)
    } else if name.starts_with("net.") {
        Some(SysctlNamespace::Network)
    } else {
        None
    }
}

/// Checks `requested` for a pod that shares the host's network
/// (`host_network`) or IPC (`host_ipc`) namespace, and returns the sysctls
/// in dotted form, ready for the infra container's spec.
///
/// # Examples
///
/// ```
/// use cri_spec::sysctls::validate;
/// use std::collections::HashMap;
///
/// let ok = HashMap::from([("net/ipv4/ip_forward".to_string(), "1".to_string())]);
/// assert_eq!(validate(&ok, false, false).unwrap()["net.ipv4.ip_forward"], "1");
/// let node_wide = HashMap::from([("vm.swappiness".to_string(), "1".to_string())]);
/// assert!(validate(&node_wide, false, false).is_err());
/// ```
pub fn validate(
    requested: &HashMap<String, String>,
    host_network: bool,
    host_ipc: bool,
) -> Result<BTreeMap<String, String>, SysctlError> {
    let mut out = BTreeMap::new();
    for (raw, value) in requested {
        let name = dotted(raw);
        if !well_formed(&name) {
            return Err(SysctlError::Name { name: raw.clone() });
        }
        if value.trim().is_empty() || value.contains(['\n', '\0']) {
            return Err(SysctlError::Value {
                name: name.clone(),
                value: value.clone(),
            });
        }
        match namespace_of(&name) {
            None => return Err(SysctlError::NotNamespaced { name }),
            Some(SysctlNamespace::Network) if host_network => {
                return Err(SysctlError::HostNamespace {
                    name,
                    namespace: "network",
                })
            }
            Some(SysctlNamespace::Ipc) if host_ipc => {
                return Err(SysctlError::HostNamespace {
                    name,
                    namespace: "IPC",
                })
            }
            Some(_) => {}
        }
        out.insert(name, value.clone());
    }
    Ok(out)
}

/// kubelet accepts `a/b/c` for `a.b.c`. In the slash form a dot belongs to
/// a component (an interface like `eth0.100`); the runtime turns dots into
/// slashes when it writes `/proc/sys`, so such a dot must become a slash.
fn dotted(name: &str) -> String {
    if name.contains('/') {
        name.chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect()
    } else {
        name.to_string()
    }
}

fn well_formed(name: &str) -> bool {
    // Components separated by dots (or slashes for dotted components), each
    // a lowercase alphanumeric word with inner `-` and `_`.
    !name.is_empty()
        && name.split(['.', '/']).all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                && !part.starts_with(['-', '_'])
                && !part.ends_with(['-', '_'])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> HashMap<String, String> {
        HashMap::from([(name.to_string(), value.to_string())])
    }

    #[test]
    fn safe_and_unsafe_namespaced_sysctls_pass() {
        for name in [
            "kernel.shm_rmid_forced",
            "kernel.msgmax",
            "net.ipv4.ip_local_port_range",
            "fs.mqueue.msg_max",
        ] {
            assert!(validate(&one(name, "1 2"), false, false).is_ok(), "{name}");
        }
    }

    #[test]
    fn slashes_become_dots_and_dotted_components_survive() {
        let out = validate(&one("net/ipv4/conf/eth0.100/forwarding", "1"), false, false).unwrap();
        assert!(
            out.contains_key("net.ipv4.conf.eth0/100.forwarding"),
            "{out:?}"
        );
    }

    #[test]
    fn malformed_and_node_wide_sysctls_are_refused() {
        assert!(matches!(
            validate(&one("kernel..msgmax", "1"), false, false),
            Err(SysctlError::Name { .. })
        ));
        assert!(matches!(
            validate(&one("Kernel.MsgMax", "1"), false, false),
            Err(SysctlError::Name { .. })
        ));
        assert!(matches!(
            validate(&one("kernel.msgmax", ""), false, false),
            Err(SysctlError::Value { .. })
        ));
        assert!(matches!(
            validate(&one("kernel.msgmax", "1\n2"), false, false),
            Err(SysctlError::Value { .. })
        ));
        assert!(matches!(
            validate(&one("vm.swappiness", "1"), false, false),
            Err(SysctlError::NotNamespaced { .. })
        ));
        let err = validate(&one("net.ipv4.ip_forward", "1"), true, false).unwrap_err();
        assert!(err.to_string().contains("net.ipv4.ip_forward"), "{err}");
        assert!(validate(&one("kernel.sem", "1 2 3 4"), false, true).is_err());
        assert!(validate(&one("kernel.sem", "1 2 3 4"), true, false).is_ok());
    }

    #[test]
    fn every_accepted_name_is_well_formed_and_namespaced() {
        let names = [
            "net.core.somaxconn",
            "net/core/somaxconn",
            "kernel.shmmax",
            "kernel.hostname",
            "net.ipv4.conf.all.rp_filter",
            "fs.file-max",
            "net..x",
            "net.-x",
        ];
        for name in names {
            if let Ok(out) = validate(&one(name, "1"), false, false) {
                for key in out.keys() {
                    assert!(namespace_of(key).is_some(), "{key}");
                    assert!(well_formed(key), "{key}");
                }
            }
        }
        assert!(validate(&one("net..x", "1"), false, false).is_err());
        assert!(validate(&one("fs.file-max", "1"), false, false).is_err());
    }
}
