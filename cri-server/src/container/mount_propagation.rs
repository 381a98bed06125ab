//! The host side of a volume's mount propagation.
//!
//! `rslave` in the container only sees host mounts if the host mount holding
//! the volume is shared (or itself a slave), and `rshared` only sends mounts
//! back if it is shared. On hosts whose root is private (this project's CI,
//! many containers-in-VMs) neither holds, so before the container is created
//! the volume is made shared: its mount if the path is a mount point,
//! otherwise a bind mount of the path onto itself that is then made shared.
//! The bind mount stays (as a mount kubelet's volume manager would leave);
//! it changes nothing for the host but lets mounts propagate.

use nix::mount::{mount, MsFlags};
use sandbox_core::MountPropagation;
use std::path::{Path, PathBuf};

/// Why a volume's host mount could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("mount {path} (propagation {propagation}): {what}: {cause}")]
pub struct PropagationError {
    /// The host path.
    pub path: PathBuf,
    /// `rslave` or `rshared`.
    pub propagation: &'static str,
    /// The step that failed.
    pub what: &'static str,
    /// The cause.
    pub cause: String,
}

/// The kernel calls this module makes, so tests can record them.
pub trait HostMounts {
    /// The text of `/proc/self/mountinfo`.
    fn mountinfo(&self) -> std::io::Result<String>;
    /// Bind-mounts `path` onto itself.
    fn bind_onto_itself(&self, path: &Path) -> nix::Result<()>;
    /// Makes the mount at `path` shared.
    fn make_shared(&self, path: &Path) -> nix::Result<()>;
}

/// The real kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kernel;

impl HostMounts for Kernel {
    fn mountinfo(&self) -> std::io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }

    fn bind_onto_itself(&self, path: &Path) -> nix::Result<()> {
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
    }

    fn make_shared(&self, path: &Path) -> nix::Result<()> {
        mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
    }
}

/// A mount point from mountinfo and how it propagates.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountPoint {
    path: PathBuf,
    shared: bool,
    slave: bool,
}

/// Makes the host mount of `path` (absolute, resolved) propagate as
/// `propagation` needs. Private volumes need nothing.
///
/// # Examples
///
/// ```no_run
/// use cri_server::container::mount_propagation::{prepare, Kernel};
/// use sandbox_core::MountPropagation;
///
/// prepare(&Kernel, std::path::Path::new("/srv/data"), MountPropagation::Bidirectional).unwrap();
/// ```
pub fn prepare(
    kernel: &impl HostMounts,
    path: &Path,
    propagation: MountPropagation,
) -> Result<(), PropagationError> {
    let name = match propagation {
        MountPropagation::Private => return Ok(()),
        MountPropagation::HostToContainer => "rslave",
        MountPropagation::Bidirectional => "rshared",
    };
    let err = |what, cause: String| PropagationError {
        path: path.to_path_buf(),
        propagation: name,
        what,
        cause,
    };
    let info = kernel
        .mountinfo()
        .map_err(|e| err("read /proc/self/mountinfo", e.to_string()))?;
    let holder = holding_mount(&info, path)
        .ok_or_else(|| err("find its mount", "no mount holds it".into()))?;
    let enough = match propagation {
        MountPropagation::Bidirectional => holder.shared,
        _ => holder.shared || holder.slave,
    };
    if enough {
        return Ok(());
    }
    if holder.path != path {
        kernel
            .bind_onto_itself(path)
            .map_err(|e| err("bind onto itself", e.to_string()))?;
    }
    kernel
        .make_shared(path)
        .map_err(|e| err("make shared", e.to_string()))
}

/// The innermost (last mounted, longest) mount point holding `path`.
fn holding_mount(mountinfo: &str, path: &Path) -> Option<MountPoint> {
    let mut best: Option<MountPoint> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(separator) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let Some(point) = fields.get(4).map(|p| PathBuf::from(unescape(p))) else {
            continue;
        };
        if !path.starts_with(&point) {
            continue;
        }
        let optional = fields.get(6..separator).unwrap_or_default();
        let candidate = MountPoint {
            shared: optional.iter().any(|f| f.starts_with("shared:")),
            slave: optional.iter().any(|f| f.starts_with("master:")),
            path: point,
        };
        // Later lines are mounted later: on equal paths the last one wins.
        if best
            .as_ref()
            .is_none_or(|b| candidate.path.as_os_str().len() >= b.path.as_os_str().len())
        {
            best = Some(candidate);
        }
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| std::str::from_utf8(d).ok());
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Recording {
        info: String,
        calls: RefCell<Vec<String>>,
    }

    impl HostMounts for Recording {
        fn mountinfo(&self) -> std::io::Result<String> {
            Ok(self.info.clone())
        }
        fn bind_onto_itself(&self, path: &Path) -> nix::Result<()> {
            self.calls
                .borrow_mut()
                .push(format!("bind {}", path.display()));
            Ok(())
        }
        fn make_shared(&self, path: &Path) -> nix::Result<()> {
            self.calls
                .borrow_mut()
                .push(format!("shared {}", path.display()));
            Ok(())
        }
    }

    const INFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:50 / /srv/shared rw shared:7 - tmpfs tmpfs rw
41 27 0:51 / /srv/slave rw master:7 - tmpfs tmpfs rw
42 27 0:52 / /srv/with\\040space rw - tmpfs tmpfs rw
";

    fn run(path: &str, p: MountPropagation) -> Vec<String> {
        let k = Recording {
            info: INFO.into(),
            calls: RefCell::new(Vec::new()),
        };
        prepare(&k, Path::new(path), p).unwrap();
        k.calls.into_inner()
    }

    #[test]
    fn private_root_gets_a_shared_bind_mount() {
        assert_eq!(
            run("/tmp/vol", MountPropagation::Bidirectional),
            ["bind /tmp/vol", "shared /tmp/vol"]
        );
        assert_eq!(
            run("/tmp/vol", MountPropagation::HostToContainer),
            ["bind /tmp/vol", "shared /tmp/vol"]
        );
        assert!(run("/tmp/vol", MountPropagation::Private).is_empty());
    }

    #[test]
    fn shared_and_slave_mounts_are_used_as_they_are() {
        assert!(run("/srv/shared/x", MountPropagation::Bidirectional).is_empty());
        assert!(run("/srv/slave/x", MountPropagation::HostToContainer).is_empty());
        // A slave does not send mounts back: make it shared.
        assert_eq!(
            run("/srv/slave", MountPropagation::Bidirectional),
            ["shared /srv/slave"]
        );
    }

    #[test]
    fn escaped_mount_points_match() {
        assert_eq!(
            run("/srv/with space", MountPropagation::Bidirectional),
            ["shared /srv/with space"]
        );
    }
}
