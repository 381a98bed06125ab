//! `NetNs::create`: a fresh network namespace, loopback up, pinned.

use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use tracing::{info, warn};

use crate::error::{Error, Op, Result};
use crate::netns::{open_pin, NetNs};
use crate::pin_dir::PinDir;
use crate::remove::remove_pin;
use crate::syscall::Syscall;
use crate::thread::on_dedicated_thread;

/// The creating thread's own namespace; binding it (not `/proc/self`, which
/// is the main thread's) is what pins the namespace we just unshared.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

impl NetNs {
    /// Creates a new network namespace pinned at `dir/name`, with the
    /// loopback interface up.
    ///
    /// The `unshare` happens on a dedicated OS thread that is thrown away
    /// afterwards, so neither the caller's thread nor any tokio worker ever
    /// changes namespace. An existing pin is never overwritten
    /// ([`Error::AlreadyExists`]). On failure nothing is left behind: the pin
    /// is unmounted and unlinked again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> netns::Result<()> {
    /// use netns::{NetNs, PinDir};
    ///
    /// let dir = PinDir::prepare("/var/lib/my-runtime/netns")?;
    /// let ns = NetNs::create(&dir, "pod-1")?;
    /// assert_eq!(ns.path(), dir.path().join("pod-1"));
    /// # Ok(()) }
    /// ```
    pub fn create(dir: &PinDir, name: &str) -> Result<NetNs> {
        let pin = dir.pin_path(name)?;
        let sys = Arc::clone(dir.syscall());
        let (fd, id) = make_pin(
            &*sys,
            &pin,
            "netns-create",
            || pin_new_namespace(&*sys, &pin),
            || open_pin(&*sys, &pin),
        )?;
        info!(pin = %pin.display(), inode = id.ino, "created network namespace");
        Ok(NetNs {
            sys,
            path: pin,
            link: None,
            fd: Some(fd),
            id,
            restored: false,
        })
    }
}

/// Makes pin file `pin` (never over an existing one), has `unshare_and_bind`
/// pin a fresh namespace on it from a throw-away thread, then `check`s the
/// result; on any failure the pin is unmounted and unlinked again.
pub(crate) fn make_pin<T>(
    sys: &dyn Syscall,
    pin: &Path,
    thread: &str,
    unshare_and_bind: impl FnOnce() -> Result<()> + Send,
    check: impl FnOnce() -> Result<T>,
) -> Result<T> {
    sys.open(
        pin,
        OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::from_bits_truncate(0o444),
    )
    .map_err(|e| match e {
        Errno::EEXIST => Error::AlreadyExists {
            path: pin.to_path_buf(),
        },
        e => Error::sys(pin, Op::CreatePin, e),
    })?;
    // The exclusive create proved any earlier pin of this name is gone, so
    // a leftover parked marker is stale; left in place, a later
    // retry_parked would remove this new, live namespace.
    crate::park::unpark(sys, pin)?;
    let made = on_dedicated_thread(thread, pin, unshare_and_bind).and_then(|()| check());
    if made.is_err() {
        if let Err(cleanup) = remove_pin(sys, pin) {
            warn!(%cleanup, "could not roll back half-created namespace");
        }
    }
    made
}

/// Runs on the dedicated thread: after `unshare` this thread is the only one
/// in the new namespace, and it dies right after the bind mount.
fn pin_new_namespace(sys: &dyn Syscall, pin: &Path) -> Result<()> {
    sys.unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::sys(pin, Op::Unshare, e))?;
    sys.interface_up("lo")
        .map_err(|e| Error::sys(pin, Op::LoopbackUp, e))?;
    sys.mount(Some(Path::new(THREAD_NETNS)), pin, MsFlags::MS_BIND)
        .map_err(|e| Error::sys(pin, Op::BindMount, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, CallKind, RecordingSyscall};
    use std::path::PathBuf;

    fn dir() -> (Arc<RecordingSyscall>, PinDir) {
        let sys = Arc::new(RecordingSyscall::new());
        let dir = PinDir::unmanaged_with(sys.clone(), "/pins").unwrap();
        sys.clear_calls();
        (sys, dir)
    }

    #[test]
    fn namespace_is_made_on_another_thread_in_order() {
        let (sys, dir) = dir();
        let ns = NetNs::create(&dir, "a").unwrap();
        assert_eq!(ns.path(), Path::new("/pins/a"));
        assert!(!ns.is_restored());
        assert_eq!(ns.inode(), 4026532000);
        assert_eq!(
            sys.kinds(),
            [
                CallKind::Open,
                CallKind::Unlink,
                CallKind::Unshare,
                CallKind::InterfaceUp,
                CallKind::Mount,
                CallKind::Open,
                CallKind::FsType,
                CallKind::NsType,
                CallKind::FileId
            ]
        );
        let calls = sys.calls();
        let me = std::thread::current().id();
        for c in &calls[2..5] {
            assert_ne!(c.thread, me, "{:?} ran on the caller's thread", c.call);
        }
        assert_eq!(calls[3].call, Call::InterfaceUp("lo".into()));
        assert_eq!(
            calls[4].call,
            Call::Mount {
                source: Some(PathBuf::from(THREAD_NETNS)),
                target: PathBuf::from("/pins/a"),
                flags: MsFlags::MS_BIND
            }
        );
        assert_eq!(sys.mount_count("/pins/a"), 1);
    }

    #[test]
    fn existing_pin_is_never_overwritten() {
        let (sys, dir) = dir();
        sys.add_file("/pins/a");
        let err = NetNs::create(&dir, "a").unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert!(!sys.kinds().contains(&CallKind::Unshare));
        assert!(sys.exists("/pins/a"), "someone else's pin stays");
    }

    #[test]
    fn failure_after_pin_file_rolls_everything_back() {
        for (kind, op) in [
            (CallKind::Unshare, Op::Unshare),
            (CallKind::InterfaceUp, Op::LoopbackUp),
            (CallKind::Mount, Op::BindMount),
        ] {
            let (sys, dir) = dir();
            sys.fail_next(kind, Errno::EPERM);
            let err = NetNs::create(&dir, "a").unwrap_err();
            assert!(
                matches!(&err, Error::Sys { op: o, source: Errno::EPERM, .. } if *o == op),
                "{err}"
            );
            assert!(!sys.exists("/pins/a"), "pin left behind after {kind:?}");
        }
    }

    #[test]
    fn a_pin_that_is_not_a_netns_is_rolled_back() {
        let (sys, dir) = dir();
        sys.set_ns_type(libc::CLONE_NEWNS);
        let err = NetNs::create(&dir, "a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/pins/a: not a network namespace (a mount namespace)"
        );
        assert!(!sys.exists("/pins/a"));
        assert_eq!(sys.mount_count("/pins/a"), 0);
    }

    #[test]
    fn recreating_a_parked_name_clears_the_stale_marker() {
        let (sys, dir) = dir();
        sys.add_file("/pins/.parked/a");
        let ns = NetNs::create(&dir, "a").unwrap();
        assert!(dir.parked().unwrap().is_empty());
        let report = dir.retry_parked().unwrap();
        assert!(report.removed.is_empty());
        assert_eq!(sys.mount_count(ns.path()), 1, "live namespace untouched");
    }

    #[test]
    fn invalid_names_touch_nothing() {
        let (sys, dir) = dir();
        assert!(matches!(
            NetNs::create(&dir, "../etc"),
            Err(Error::InvalidName { .. })
        ));
        assert!(sys.calls().is_empty());
    }
}
