//! The one error type of this crate.
//!
//! Every variant names the object (a pin path, a directory, a namespace name)
//! and the operation that failed, so a log line alone tells an operator what
//! to look at: `network namespace pin /run/x/ns1: unmount: EBUSY: Device or
//! resource busy`.

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kernel operation that failed; part of [`Error::Sys`].
///
/// Kept as an enum (rather than free text) so callers and tests can match on
/// *what* failed without parsing messages.
///
/// # Examples
///
/// ```
/// assert_eq!(netns::Op::Unmount.to_string(), "unmount");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Creating the empty file a namespace is bind-mounted onto.
    CreatePin,
    /// Creating a directory.
    CreateDir,
    /// Resolving a path (symlinks, `..`).
    Resolve,
    /// Opening a file.
    Open,
    /// Moving the creating thread into a fresh network namespace.
    Unshare,
    /// Entering a namespace from a helper thread.
    Setns,
    /// Bringing the loopback interface up.
    LoopbackUp,
    /// Bind-mounting a namespace or directory.
    BindMount,
    /// Changing a mount's propagation to private.
    MakePrivate,
    /// Unmounting.
    Unmount,
    /// Removing a file.
    Unlink,
    /// Reading a directory.
    ReadDir,
    /// Reading `/proc/self/mountinfo`.
    ReadMountinfo,
    /// Querying the filesystem type or namespace type of a file.
    Inspect,
    /// Recording a pin that could not be removed yet.
    Park,
    /// Setting the host name of a fresh UTS namespace.
    SetHostname,
    /// Writing a new user namespace's uid or gid map.
    WriteIdMap,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::CreatePin => "create pin file",
            Op::CreateDir => "create directory",
            Op::Resolve => "resolve path",
            Op::Open => "open",
            Op::Unshare => "unshare network namespace",
            Op::Setns => "enter namespace",
            Op::LoopbackUp => "bring loopback up",
            Op::BindMount => "bind mount",
            Op::MakePrivate => "make mount private",
            Op::Unmount => "unmount",
            Op::Unlink => "unlink",
            Op::ReadDir => "read directory",
            Op::ReadMountinfo => "read /proc/self/mountinfo",
            Op::Inspect => "inspect",
            Op::Park => "park",
            Op::SetHostname => "set host name",
            Op::WriteIdMap => "write id map",
        })
    }
}

/// Everything that can go wrong in this crate.
///
/// # Examples
///
/// ```
/// use netns::{Error, Op};
/// use nix::errno::Errno;
///
/// let err = Error::Sys { path: "/run/x/ns1".into(), op: Op::Unmount, source: Errno::EBUSY };
/// assert_eq!(
///     err.to_string(),
///     "network namespace pin /run/x/ns1: unmount: EBUSY: Device or resource busy"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A kernel call on `path` failed.
    #[error("network namespace pin {}: {op}: {source}", path.display())]
    Sys {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What we were doing.
        op: Op,
        /// What the kernel said.
        #[source]
        source: Errno,
    },
    /// A kernel call on the pin directory `path` failed.
    #[error("network namespace pin directory {}: {op}: {source}", path.display())]
    DirSys {
        /// The directory.
        path: PathBuf,
        /// What we were doing.
        op: Op,
        /// What the kernel said.
        #[source]
        source: Errno,
    },
    /// A namespace name that would not stay a single entry of the pin directory.
    #[error("network namespace name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A pin of that name already exists; it is never overwritten.
    #[error("network namespace pin {}: already exists", path.display())]
    AlreadyExists {
        /// The existing pin.
        path: PathBuf,
    },
    /// The path exists but is not a network namespace.
    #[error("{}: not a network namespace ({found})", path.display())]
    NotNetNs {
        /// The path that was opened.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// A pin made for one kind of namespace holds another.
    #[error("{}: not {expected} namespace ({found})", path.display())]
    WrongKind {
        /// The pin.
        path: PathBuf,
        /// The kind wanted, with its article ("an IPC").
        expected: &'static str,
        /// What was found instead.
        found: String,
    },
    /// The namespace was removed through this handle; it can no longer be used.
    #[error("network namespace pin {}: already removed", path.display())]
    Removed {
        /// The pin that was removed.
        path: PathBuf,
    },
    /// The dedicated OS thread could not be started.
    #[error("network namespace pin {}: spawn thread: {source}", path.display())]
    Thread {
        /// The pin the thread was for.
        path: PathBuf,
        /// Why the thread could not start.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Builds an [`Error::Sys`]; a small helper because almost every call site needs one.
    pub(crate) fn sys(path: impl Into<PathBuf>, op: Op, source: Errno) -> Self {
        Error::Sys {
            path: path.into(),
            op,
            source,
        }
    }

    /// Builds an [`Error::DirSys`].
    pub(crate) fn dir(path: impl Into<PathBuf>, op: Op, source: Errno) -> Self {
        Error::DirSys {
            path: path.into(),
            op,
            source,
        }
    }

    /// The errno behind this error, if a kernel call failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use netns::{Error, Op};
    /// use nix::errno::Errno;
    ///
    /// let err = Error::Sys { path: "/p".into(), op: Op::Unlink, source: Errno::EBUSY };
    /// assert_eq!(err.errno(), Some(Errno::EBUSY));
    /// ```
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { source, .. } | Error::DirSys { source, .. } => Some(*source),
            _ => None,
        }
    }
}
