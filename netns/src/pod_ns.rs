//! IPC and UTS namespaces pinned like network ones.
//!
//! A pod whose containers share IPC and UTS namespaces needs something to
//! hold those namespaces while no container runs. An infra ("pause")
//! container does that at the cost of a runtime `create` and `start` per
//! pod; a pin does it with one `unshare` and a bind mount, as CRI-O's
//! `pinns` does. The pins live in the same [`PinDir`] as network pins, so
//! they get its private-mount guarantee and its removal and parking rules.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use tracing::info;

use crate::error::{Error, Op, Result};
use crate::pin_dir::PinDir;
use crate::syscall::Syscall;

/// A kind of namespace a pod pins besides its network namespace.
///
/// # Examples
///
/// ```
/// use netns::PinnedKind;
///
/// assert_eq!(PinnedKind::Ipc.pin_name("pod-1"), "pod-1.ipc");
/// assert_eq!(PinnedKind::Uts { hostname: "web-0".into() }.pin_name("pod-1"), "pod-1.uts");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinnedKind {
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Host and domain name; a new one gets `hostname` (an empty one keeps
    /// the copy of the creator's).
    Uts {
        /// The namespace's host name.
        hostname: String,
    },
}

impl PinnedKind {
    /// The pin's file name for the namespace of this kind named `name`:
    /// `name` with the kind as extension, beside `name`'s network pin.
    pub fn pin_name(&self, name: &str) -> String {
        format!("{name}.{}", self.proc_name())
    }

    /// The file under `/proc/<tid>/ns/` for this kind.
    fn proc_name(&self) -> &'static str {
        match self {
            PinnedKind::Ipc => "ipc",
            PinnedKind::Uts { .. } => "uts",
        }
    }

    fn flag(&self) -> CloneFlags {
        match self {
            PinnedKind::Ipc => CloneFlags::CLONE_NEWIPC,
            PinnedKind::Uts { .. } => CloneFlags::CLONE_NEWUTS,
        }
    }

    fn article(&self) -> &'static str {
        match self {
            PinnedKind::Ipc => "an IPC",
            PinnedKind::Uts { .. } => "a UTS",
        }
    }
}

impl PinDir {
    /// Creates a new namespace of `kind` pinned at `dir/<name>.<kind>` and
    /// returns the pin's path. As for [`NetNs::create`](crate::NetNs::create):
    /// the `unshare` happens on a throw-away thread, an existing pin is
    /// never overwritten, and a failure leaves nothing behind. Remove it
    /// with [`PinDir::remove`] and the same pin name.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> netns::Result<()> {
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir, PinnedKind};
    ///
    /// let sys = Arc::new(RecordingSyscall::new());
    /// let dir = PinDir::unmanaged_with(sys, "/pins")?;
    /// let pin = dir.create_pinned(&PinnedKind::Ipc, "pod-1")?;
    /// assert_eq!(pin.to_str(), Some("/pins/pod-1.ipc"));
    /// dir.remove("pod-1.ipc")?;
    /// # Ok(()) }
    /// ```
    pub fn create_pinned(&self, kind: &PinnedKind, name: &str) -> Result<PathBuf> {
        crate::name::validate(name)?;
        let pin = self.pin_path(&kind.pin_name(name))?;
        let sys = &**self.syscall();
        crate::create::make_pin(
            sys,
            &pin,
            "ns-pin",
            || pin_new(sys, kind, &pin),
            || check_kind(sys, kind, &pin),
        )?;
        info!(pin = %pin.display(), "created {} namespace", kind.proc_name());
        Ok(pin)
    }
}

/// Runs on the dedicated thread, which dies after the bind mount.
fn pin_new(sys: &dyn Syscall, kind: &PinnedKind, pin: &Path) -> Result<()> {
    sys.unshare(kind.flag())
        .map_err(|e| Error::sys(pin, Op::Unshare, e))?;
    if let PinnedKind::Uts { hostname } = kind {
        if !hostname.is_empty() {
            sys.set_hostname(hostname)
                .map_err(|e| Error::sys(pin, Op::SetHostname, e))?;
        }
    }
    let source = PathBuf::from(format!("/proc/thread-self/ns/{}", kind.proc_name()));
    sys.mount(Some(&source), pin, MsFlags::MS_BIND)
        .map_err(|e| Error::sys(pin, Op::BindMount, e))
}

/// Checks that the pin holds a namespace of `kind`.
fn check_kind(sys: &dyn Syscall, kind: &PinnedKind, pin: &Path) -> Result<()> {
    let (_, fs_type, ns_type) = crate::netns::inspect_pin(sys, pin)?;
    let found = match ns_type {
        Some(t) if t == kind.flag().bits() => return Ok(()),
        Some(t) => format!("{} namespace", crate::netns::ns_kind(t)),
        None => format!("not a namespace file: filesystem magic {fs_type:#x}"),
    };
    Err(Error::WrongKind {
        path: pin.to_path_buf(),
        expected: kind.article(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, CallKind, RecordingSyscall};
    use nix::errno::Errno;
    use std::sync::Arc;

    fn dir(ns_type: Option<i32>) -> (Arc<RecordingSyscall>, PinDir) {
        let sys = Arc::new(RecordingSyscall::new());
        if let Some(t) = ns_type {
            sys.set_ns_type(t);
        }
        let dir = PinDir::unmanaged_with(sys.clone(), "/pins").unwrap();
        sys.clear_calls();
        (sys, dir)
    }

    #[test]
    fn a_uts_pin_gets_its_host_name_on_another_thread_before_the_bind() {
        let (sys, dir) = dir(None);
        let kind = PinnedKind::Uts {
            hostname: "web-0".into(),
        };
        let pin = dir.create_pinned(&kind, "p").unwrap();
        assert_eq!(pin, Path::new("/pins/p.uts"));
        let calls = sys.calls();
        let kinds: Vec<_> = calls.iter().map(|c| c.call.kind()).collect();
        assert_eq!(
            kinds[2..5],
            [CallKind::Unshare, CallKind::SetHostname, CallKind::Mount]
        );
        assert_eq!(calls[2].call, Call::Unshare(CloneFlags::CLONE_NEWUTS));
        assert_eq!(calls[3].call, Call::SetHostname("web-0".into()));
        for c in &calls[2..5] {
            assert_ne!(c.thread, std::thread::current().id());
        }
        assert_eq!(sys.mount_count("/pins/p.uts"), 1);
    }

    #[test]
    fn an_ipc_pin_sets_no_host_name_and_an_empty_host_name_is_kept() {
        let (sys, dir) = dir(None);
        dir.create_pinned(&PinnedKind::Ipc, "p").unwrap();
        assert!(!sys.kinds().contains(&CallKind::SetHostname));
        let (sys, dir) = self::dir(None);
        let kind = PinnedKind::Uts {
            hostname: String::new(),
        };
        dir.create_pinned(&kind, "p").unwrap();
        assert!(!sys.kinds().contains(&CallKind::SetHostname));
    }

    #[test]
    fn a_failure_or_a_wrong_kind_leaves_no_pin() {
        let (sys, dir) = dir(None);
        sys.fail_next(CallKind::SetHostname, Errno::EINVAL);
        let kind = PinnedKind::Uts {
            hostname: "x".repeat(65),
        };
        let err = dir.create_pinned(&kind, "p").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Sys {
                    op: Op::SetHostname,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!sys.exists("/pins/p.uts"));

        let (sys, dir) = self::dir(Some(libc::CLONE_NEWIPC));
        let kind = PinnedKind::Uts {
            hostname: "h".into(),
        };
        let err = dir.create_pinned(&kind, "p").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/pins/p.uts: not a UTS namespace (ipc namespace)"
        );
        assert!(!sys.exists("/pins/p.uts"));
        assert_eq!(sys.mount_count("/pins/p.uts"), 0);
    }

    #[test]
    fn names_are_checked_and_existing_pins_kept() {
        let (sys, dir) = dir(None);
        assert!(matches!(
            dir.create_pinned(&PinnedKind::Ipc, "../x"),
            Err(Error::InvalidName { .. })
        ));
        sys.add_file("/pins/p.ipc");
        assert!(matches!(
            dir.create_pinned(&PinnedKind::Ipc, "p"),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(!sys.kinds().contains(&CallKind::Unshare));
    }
}
