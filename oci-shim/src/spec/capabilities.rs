//! Linux capabilities as bit masks, and the set the daemon itself holds.
//!
//! Privileged containers get exactly what the daemon holds rather than a
//! hard-coded "all capabilities" list: on hosts whose bounding set lacks a
//! capability (this project's CI lacks `CAP_SYS_RESOURCE`) asking runc for it
//! fails the whole create with "unable to apply caps".

use oci_spec::runtime::{Capabilities, Capability};

/// Capability names indexed by their bit number (`linux/capability.h`).
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A set of capabilities as the kernel shows it in `/proc/PID/status`.
///
/// # Examples
///
/// ```
/// use oci_shim::spec::CapabilityMask;
///
/// let held = CapabilityMask::from_status_hex("000001fffeffffff").unwrap();
/// assert!(held.contains_name("CAP_SYS_ADMIN"));
/// assert!(!held.contains_name("CAP_SYS_RESOURCE"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityMask(pub u64);

impl CapabilityMask {
    /// Parses the hexadecimal mask of a `CapBnd:`/`CapEff:` status line.
    pub fn from_status_hex(hex: &str) -> Option<Self> {
        u64::from_str_radix(hex.trim(), 16).ok().map(CapabilityMask)
    }

    /// Reads the capabilities this process may hand to a container: those
    /// both effective and in the bounding set.
    pub fn of_current_process() -> std::io::Result<Self> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(CapabilityMask::from_status_hex)
        };
        match (field("CapEff:"), field("CapBnd:")) {
            (Some(eff), Some(bnd)) => Ok(CapabilityMask(eff.0 & bnd.0)),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "/proc/self/status lacks CapEff/CapBnd",
            )),
        }
    }

    /// Whether the capability called `name` (e.g. `CAP_NET_ADMIN`) is in the set.
    /// Unknown names are never contained.
    pub fn contains_name(&self, name: &str) -> bool {
        bit_of(name).is_some_and(|bit| self.0 & (1 << bit) != 0)
    }

    /// The names of the capabilities in the set that this crate knows about.
    pub fn names(&self) -> Vec<&'static str> {
        CAPABILITY_NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.0 & (1u64 << bit) != 0)
            .map(|(_, name)| *name)
            .collect()
    }
}

fn bit_of(name: &str) -> Option<usize> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAPABILITY_NAMES.iter().position(|n| *n == full)
}

/// A capability name oci-spec does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown capability {0:?}")]
pub struct UnknownCapability(pub String);

/// Converts capability names to oci-spec's enum; names oci-spec does not know
/// are reported back so the caller can say which one was refused.
pub(crate) fn to_oci_set<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Capabilities, UnknownCapability> {
    names
        .into_iter()
        .map(|name| {
            let upper = name.to_ascii_uppercase();
            let full = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            serde_json::from_value::<Capability>(serde_json::Value::String(full))
                .map_err(|_| UnknownCapability(name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn machine_mask_lacks_sys_resource() {
        let m = CapabilityMask::from_status_hex("000001fffeffffff").unwrap();
        let names = m.names();
        assert_eq!(names.len(), 40);
        assert!(!names.contains(&"CAP_SYS_RESOURCE"));
        assert!(names.contains(&"CAP_CHECKPOINT_RESTORE"));
    }

    #[test]
    fn names_without_prefix_are_accepted() {
        let m = CapabilityMask(1 << 21);
        assert!(m.contains_name("sys_admin"));
        assert!(!m.contains_name("CAP_NOT_A_THING"));
    }

    #[test]
    fn every_known_name_converts_to_oci() {
        let set = to_oci_set(CAPABILITY_NAMES.iter().copied()).unwrap();
        assert_eq!(set.len(), CAPABILITY_NAMES.len());
        assert!(to_oci_set(["CAP_BOGUS"]).is_err());
    }

    proptest! {
        #[test]
        fn names_round_trip_through_the_mask(mask in 0u64..(1u64 << 41)) {
            let m = CapabilityMask(mask);
            let rebuilt = m.names().iter().fold(0u64, |acc, n| acc | 1 << bit_of(n).unwrap());
            prop_assert_eq!(rebuilt, mask);
        }
    }
}
