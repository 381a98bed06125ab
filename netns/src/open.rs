//! `NetNs::open`: restore a handle from an existing pin.

use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use tracing::debug;

use crate::error::{Error, Op, Result};
use crate::netns::{open_pin, NetNs};
use crate::syscall::{LinuxSyscall, Syscall};

impl NetNs {
    /// Restores a namespace from the pin at `path`, e.g. after a daemon
    /// restart. A symlink is followed to the pin (as CRI-O's `netNsGet` did)
    /// and remembered, so [`NetNs::remove`] removes both.
    ///
    /// Anything that is not a network namespace — a plain file, another kind
    /// of namespace — is refused with [`Error::NotNetNs`] naming `path`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> netns::Result<()> {
    /// let ns = netns::NetNs::open("/var/run/netns/blue")?;
    /// assert!(ns.is_restored());
    /// # Ok(()) }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs> {
        Self::open_with(Arc::new(LinuxSyscall), path)
    }

    /// [`NetNs::open`] through a given [`Syscall`], for tests.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, NetNs};
    ///
    /// let sys = Arc::new(RecordingSyscall::new());
    /// sys.add_file("/pins/a");
    /// let ns = NetNs::open_with(sys, "/pins/a").unwrap();
    /// assert_eq!(ns.path().to_str(), Some("/pins/a"));
    /// ```
    pub fn open_with(sys: Arc<dyn Syscall>, path: impl AsRef<Path>) -> Result<NetNs> {
        let given = path.as_ref();
        let is_symlink = match sys.read_link(given) {
            Ok(_) => true,
            Err(Errno::EINVAL) => false,
            Err(e) => return Err(Error::sys(given, Op::Open, e)),
        };
        let (pin, link) = match sys.canonicalize(given) {
            Ok(resolved) => (resolved, is_symlink.then(|| given.to_path_buf())),
            // A kernel "magic" link such as /proc/<pid>/ns/net resolves to no
            // path, yet open() follows it. It is not ours to remove, so it is
            // not remembered as a link; a dangling link fails at open below.
            Err(_) if is_symlink => (given.to_path_buf(), None),
            Err(e) => return Err(Error::sys(given, Op::Resolve, e)),
        };
        let (fd, id) = open_pin(&*sys, &pin).map_err(|err| match err {
            // Name what the caller asked for, not only where it led.
            Error::NotNetNs { found, .. } if pin != given => Error::NotNetNs {
                path: given.to_path_buf(),
                found: format!("{found}, via symlink to {}", pin.display()),
            },
            other => other,
        })?;
        debug!(pin = %pin.display(), inode = id.ino, "restored network namespace");
        Ok(NetNs {
            sys,
            path: pin,
            link,
            fd: Some(fd),
            id,
            restored: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{CallKind, RecordingSyscall};
    use crate::Removal;

    #[test]
    fn follows_symlink_and_remove_takes_both() {
        let sys = Arc::new(RecordingSyscall::new());
        sys.add_file("/pins/a");
        sys.add_mounts("/pins/a", 1);
        sys.add_symlink("/infra/link", "/pins/a");
        let mut ns = NetNs::open_with(sys.clone(), "/infra/link").unwrap();
        assert!(ns.is_restored());
        assert_eq!(ns.path(), Path::new("/pins/a"));
        assert_eq!(ns.link_path(), Some(Path::new("/infra/link")));
        assert_eq!(ns.remove().unwrap(), Removal::Removed);
        assert!(!sys.exists("/pins/a"));
        assert!(!sys.exists("/infra/link"));
    }

    #[test]
    fn not_a_namespace_names_the_path() {
        let sys = Arc::new(RecordingSyscall::new());
        sys.add_file("/etc/hosts");
        sys.set_fs_type(0xef53);
        let err = NetNs::open_with(sys.clone(), "/etc/hosts").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/hosts: not a network namespace (not a namespace file: filesystem magic 0xef53)"
        );

        sys.set_fs_type(crate::syscall::NSFS_MAGIC);
        sys.set_ns_type(libc::CLONE_NEWPID);
        sys.add_symlink("/l", "/etc/hosts");
        let err = NetNs::open_with(sys, "/l").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/l: not a network namespace (a pid namespace, via symlink to /etc/hosts)"
        );
    }

    #[test]
    fn dangling_symlink_names_the_link() {
        let sys = Arc::new(RecordingSyscall::new());
        sys.add_symlink("/infra/link", "/pins/gone");
        let err = NetNs::open_with(sys, "/infra/link").unwrap_err();
        assert_eq!(
            err.to_string(),
            "network namespace pin /infra/link: open: ENOENT: No such file or directory"
        );
    }

    #[test]
    fn missing_path_is_a_typed_error() {
        let sys = Arc::new(RecordingSyscall::new());
        let err = NetNs::open_with(sys.clone(), "/pins/none").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Sys {
                    source: Errno::ENOENT,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(sys.kinds(), [CallKind::ReadLink]);
    }
}
