//! Removing a pin: the part that must never leave a pod stuck.
//!
//! Order matters. First every mount stacked on the pin is detached
//! (`MNT_DETACH`, repeated until the kernel says `EINVAL`, "not a mount
//! point"): on a propagating directory another mount namespace can mount on
//! top of our pin and the mount travels back, so one unmount is not always
//! enough. After that the namespace is released as far as this process is
//! concerned. Then the file is unlinked; if the kernel still answers `EBUSY`
//! the file is parked (see [`crate::park`]) and removal reports success,
//! because the pod no longer depends on it.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MntFlags;
use tracing::{debug, warn};

use crate::error::{Error, Op, Result};
use crate::netns::NetNs;
use crate::park;
use crate::syscall::Syscall;

/// Upper bound on layers peeled off one pin in one call.
///
/// A peer that keeps mounting onto its copy of a pin in a *shared* directory
/// can stack layers onto ours as fast as we peel them (and each unmount gets
/// slower the more mounts the namespace has). The bound keeps one removal
/// short; past it we park, and every retry peels another batch. Only unmanaged, propagating directories can get
/// here: a private [`PinDir`](crate::PinDir) receives no foreign layers.
const MAX_UNMOUNTS: usize = 64;

/// What a removal did.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> netns::Result<()> {
/// use netns::{PinDir, Removal};
///
/// let dir = PinDir::prepare("/var/lib/my-runtime/netns")?;
/// match dir.remove("cni-1234")? {
///     Removal::Removed | Removal::AlreadyRemoved => {}
///     Removal::Parked => eprintln!("pin still busy; retried later"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The namespace was unmounted and the pin unlinked.
    Removed,
    /// There was nothing to remove.
    AlreadyRemoved,
    /// The pin file could not be removed yet; it is recorded and retried
    /// later. Usually the namespace is already unmounted (released for the
    /// pod) and only the empty file is stuck; on a propagating directory
    /// where a peer keeps stacking mounts, the lowest layer may remain until
    /// a retry peels the rest.
    Parked,
}

/// Unmounts every layer on `pin` and unlinks it; see the module docs.
pub(crate) fn remove_pin(sys: &dyn Syscall, pin: &Path) -> Result<Removal> {
    // NOFOLLOW: a symlink planted in the pin directory must not make us
    // detach whatever it points at (think `/`).
    let flags = MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW;
    let mut unmounted = 0;
    loop {
        match sys.umount2(pin, flags) {
            Ok(()) if unmounted == MAX_UNMOUNTS => {
                warn!(pin = %pin.display(), "more than {MAX_UNMOUNTS} layers mounted; parking");
                return Ok(park_or_warn(sys, pin));
            }
            Ok(()) => unmounted += 1,
            Err(Errno::EINVAL) => break,
            Err(Errno::ENOENT) => return Ok(gone(sys, pin, unmounted)),
            Err(e) => return Err(Error::sys(pin, Op::Unmount, e)),
        }
    }
    match sys.unlink(pin) {
        Ok(()) => {
            debug!(pin = %pin.display(), unmounted, "removed network namespace pin");
            unpark_or_warn(sys, pin);
            Ok(Removal::Removed)
        }
        Err(Errno::ENOENT) => Ok(gone(sys, pin, unmounted)),
        Err(Errno::EBUSY) => {
            warn!(
                pin = %pin.display(),
                "unlink: EBUSY (a mount from another mount namespace landed on the pin); parked"
            );
            Ok(park_or_warn(sys, pin))
        }
        Err(e) => Err(Error::sys(pin, Op::Unlink, e)),
    }
}

/// The pin vanished under us (or never existed).
fn gone(sys: &dyn Syscall, pin: &Path, unmounted: usize) -> Removal {
    unpark_or_warn(sys, pin);
    if unmounted == 0 {
        Removal::AlreadyRemoved
    } else {
        Removal::Removed
    }
}

fn park_or_warn(sys: &dyn Syscall, pin: &Path) -> Removal {
    // Failing to write the ledger loses nothing: the pin itself is still in
    // the directory and the next stale sweep finds it.
    if let Err(err) = park::park(sys, pin) {
        warn!(%err, "could not record parked pin; the stale sweep will find it");
    }
    Removal::Parked
}

fn unpark_or_warn(sys: &dyn Syscall, pin: &Path) {
    if let Err(err) = park::unpark(sys, pin) {
        warn!(%err, "could not clear parked marker");
    }
}

impl NetNs {
    /// Removes the namespace: closes this handle's descriptor, unmounts the
    /// pin (every stacked layer) and unlinks it. If the handle was opened
    /// through a symlink, the symlink goes too.
    ///
    /// Idempotent: a second call returns `Ok(Removal::AlreadyRemoved)`.
    /// An `EBUSY` from unlink — mounts that another mount namespace keeps
    /// propagating onto the pin — is not an error: the result is [`Removal::Parked`] and
    /// [`PinDir::retry_parked`](crate::PinDir::retry_parked) finishes later.
    /// On error the handle stays usable and the call can be repeated.
    ///
    /// This blocks on the filesystem; async callers should use
    /// `spawn_blocking`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> netns::Result<()> {
    /// use netns::{NetNs, PinDir, Removal};
    ///
    /// let dir = PinDir::prepare("/var/lib/my-runtime/netns")?;
    /// let mut ns = NetNs::create(&dir, "pod-1")?;
    /// assert_ne!(ns.remove()?, Removal::AlreadyRemoved);
    /// assert_eq!(ns.remove()?, Removal::AlreadyRemoved);
    /// # Ok(()) }
    /// ```
    pub fn remove(&mut self) -> Result<Removal> {
        if self.fd.is_none() {
            return Ok(Removal::AlreadyRemoved);
        }
        let outcome = remove_pin(&*self.sys, &self.path)?;
        if let Some(link) = &self.link {
            match self.sys.unlink(link) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(Error::sys(link, Op::Unlink, e)),
            }
        }
        // Closing last: until here the handle could still be retried.
        self.fd = None;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{CallKind, RecordingSyscall};

    fn pinned(mounts: u32) -> RecordingSyscall {
        let sys = RecordingSyscall::new();
        sys.add_file("/pins/a");
        sys.add_mounts("/pins/a", mounts);
        sys
    }

    #[test]
    fn peels_every_stacked_mount_before_unlinking() {
        let sys = pinned(3);
        assert_eq!(
            remove_pin(&sys, Path::new("/pins/a")).unwrap(),
            Removal::Removed
        );
        assert!(!sys.exists("/pins/a"));
        let kinds = sys.kinds();
        assert_eq!(&kinds[..4], &[CallKind::Umount2; 4]);
        assert_eq!(kinds[4], CallKind::Unlink);
    }

    #[test]
    fn never_follows_symlinks_when_unmounting() {
        let sys = pinned(1);
        remove_pin(&sys, Path::new("/pins/a")).unwrap();
        for call in sys.calls() {
            if let crate::syscall::Call::Umount2 { flags, .. } = call.call {
                assert!(flags.contains(MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH));
            }
        }
    }

    #[test]
    fn missing_pin_is_already_removed() {
        let sys = RecordingSyscall::new();
        assert_eq!(
            remove_pin(&sys, Path::new("/pins/a")).unwrap(),
            Removal::AlreadyRemoved
        );
    }

    #[test]
    fn ebusy_on_unlink_parks_and_succeeds() {
        let sys = pinned(1);
        sys.fail_next(CallKind::Unlink, Errno::EBUSY);
        assert_eq!(
            remove_pin(&sys, Path::new("/pins/a")).unwrap(),
            Removal::Parked
        );
        assert_eq!(sys.mount_count("/pins/a"), 0, "namespace released");
        assert!(sys.exists("/pins/.parked/a"));
        // A later retry succeeds and clears the marker.
        assert_eq!(
            remove_pin(&sys, Path::new("/pins/a")).unwrap(),
            Removal::Removed
        );
        assert!(!sys.exists("/pins/a"));
        assert!(!sys.exists("/pins/.parked/a"));
    }

    #[test]
    fn parking_still_succeeds_when_the_ledger_cannot_be_written() {
        let sys = pinned(0);
        sys.fail_next(CallKind::Unlink, Errno::EBUSY);
        sys.fail_next(CallKind::CreateDirAll, Errno::ENOSPC);
        assert_eq!(
            remove_pin(&sys, Path::new("/pins/a")).unwrap(),
            Removal::Parked
        );
        assert!(sys.exists("/pins/a"), "left for the stale sweep");
    }

    #[test]
    fn endless_remounting_is_parked_not_looped_forever() {
        let sys = pinned(MAX_UNMOUNTS as u32 + 10);
        assert_eq!(
            remove_pin(&sys, Path::new("/pins/a")).unwrap(),
            Removal::Parked
        );
        assert_eq!(
            sys.kinds()
                .iter()
                .filter(|k| **k == CallKind::Umount2)
                .count(),
            MAX_UNMOUNTS + 1
        );
    }

    proptest::proptest! {
        // Whatever the stacking and whatever the kernel says about unlink,
        // removal succeeds, the namespace is released whenever we could peel
        // it, and a pin is either gone or recorded for a retry.
        #[test]
        fn removal_never_fails_on_busy_pins(
            depth in proptest::prop_oneof![0u32..8, 60u32..70],
            busy in proptest::bool::ANY,
            ledger_broken in proptest::bool::ANY,
        ) {
            let sys = pinned(depth);
            if busy {
                sys.fail_next(CallKind::Unlink, Errno::EBUSY);
            }
            if ledger_broken {
                sys.fail_next(CallKind::CreateDirAll, Errno::ENOSPC);
            }
            let outcome = remove_pin(&sys, Path::new("/pins/a")).unwrap();
            let peelable = depth as usize <= MAX_UNMOUNTS;
            if peelable {
                proptest::prop_assert_eq!(sys.mount_count("/pins/a"), 0);
            }
            if busy || !peelable {
                proptest::prop_assert_eq!(outcome, Removal::Parked);
                proptest::prop_assert!(sys.exists("/pins/a"));
                proptest::prop_assert_eq!(sys.exists("/pins/.parked/a"), !ledger_broken);
            } else {
                proptest::prop_assert_eq!(outcome, Removal::Removed);
                proptest::prop_assert!(!sys.exists("/pins/a"));
                proptest::prop_assert!(!sys.exists("/pins/.parked/a"));
            }
        }
    }

    #[test]
    fn other_errors_name_pin_and_operation() {
        let sys = pinned(1);
        sys.fail_next(CallKind::Umount2, Errno::EPERM);
        let err = remove_pin(&sys, Path::new("/pins/a")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "network namespace pin /pins/a: unmount: EPERM: Operation not permitted"
        );
        let sys = pinned(0);
        sys.fail_next(CallKind::Unlink, Errno::EACCES);
        let err = remove_pin(&sys, Path::new("/pins/a")).unwrap_err();
        assert!(matches!(
            err,
            Error::Sys {
                op: Op::Unlink,
                source: Errno::EACCES,
                ..
            }
        ));
    }
}
