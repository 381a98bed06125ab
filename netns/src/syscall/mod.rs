//! Every kernel call this crate makes, behind one trait.
//!
//! The interesting logic of this crate (peeling stacked mounts, parking pins
//! that the kernel refuses to unlink, idempotent removal, rollback of a
//! half-created namespace) is decided by errno values. Routing every call
//! through [`Syscall`] lets unit tests drive that logic with
//! [`RecordingSyscall`] — which records calls and injects errors such as
//! `EBUSY` — without root, while [`LinuxSyscall`] does the real thing.

mod linux;
mod recording;

use std::ffi::OsString;
use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

pub use linux::LinuxSyscall;
pub use recording::{Call, CallKind, RecordedCall, RecordingSyscall};

/// `f_type` of files on nsfs, the filesystem of namespace files; spelled out
/// because libc's constant changes type between targets.
pub const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Device and inode of a file: together they identify a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// `st_dev` of the file.
    pub dev: u64,
    /// `st_ino` of the file; for a namespace, the number shown as `net:[N]`.
    pub ino: u64,
}

/// The kernel interface used by this crate.
///
/// Implementations must be usable from several threads at once, because
/// namespace work happens on dedicated threads.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use netns::syscall::{LinuxSyscall, Syscall};
///
/// let sys: Arc<dyn Syscall> = Arc::new(LinuxSyscall);
/// assert!(sys.mountinfo().unwrap().contains(" / "));
/// ```
pub trait Syscall: fmt::Debug + Send + Sync {
    /// `unshare(2)` for the calling thread.
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    /// `setns(2)` for the calling thread.
    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> nix::Result<()>;
    /// `mount(2)` without filesystem type or data: bind mounts
    /// (`source` is `Some`) and propagation changes (`source` is `None`).
    fn mount(&self, source: Option<&Path>, target: &Path, flags: MsFlags) -> nix::Result<()>;
    /// `umount2(2)`.
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    /// `unlink(2)`.
    fn unlink(&self, path: &Path) -> nix::Result<()>;
    /// `open(2)`; the descriptor is always close-on-exec.
    fn open(&self, path: &Path, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd>;
    /// `mkdir -p` with mode 0755.
    fn create_dir_all(&self, path: &Path) -> nix::Result<()>;
    /// `realpath(3)`: the absolute path with every symlink resolved.
    fn canonicalize(&self, path: &Path) -> nix::Result<PathBuf>;
    /// `readlink(2)`; `EINVAL` if `path` is not a symlink.
    fn read_link(&self, path: &Path) -> nix::Result<PathBuf>;
    /// Names of the entries of a directory, without `.` and `..`.
    fn read_dir(&self, path: &Path) -> nix::Result<Vec<OsString>>;
    /// The contents of `/proc/self/mountinfo`.
    fn mountinfo(&self) -> nix::Result<String>;
    /// `f_type` from `fstatfs(2)`.
    fn fs_type(&self, fd: BorrowedFd<'_>) -> nix::Result<i64>;
    /// `ioctl(fd, NS_GET_NSTYPE)`: the `CLONE_NEW*` flag of a namespace file.
    fn ns_type(&self, fd: BorrowedFd<'_>) -> nix::Result<i32>;
    /// Device and inode from `fstat(2)`.
    fn file_id(&self, fd: BorrowedFd<'_>) -> nix::Result<FileId>;
    /// Sets `IFF_UP` on interface `name` of the calling thread's network
    /// namespace (`SIOCGIFFLAGS`/`SIOCSIFFLAGS`).
    fn interface_up(&self, name: &str) -> nix::Result<()>;
    /// `sethostname(2)`: the host name of the calling thread's UTS
    /// namespace.
    fn set_hostname(&self, name: &str) -> nix::Result<()>;
    /// Starts a process in new namespaces (`clone(2)` with `flags`, which
    /// include `CLONE_NEWUSER`: the others are then owned by the new user
    /// namespace). The process sets `hostname` (if any) and brings `lo` up
    /// when it has a new network namespace, then waits until
    /// [`Syscall::end_ns_holder`]; it dies with the thread that made it.
    fn spawn_ns_holder(&self, flags: CloneFlags, hostname: Option<&str>) -> nix::Result<NsHolder>;
    /// Writes `text` to `/proc/<pid>/<file>` (`uid_map`, `gid_map`).
    fn write_proc(&self, pid: i32, file: &str, text: &str) -> nix::Result<()>;
    /// Lets the holder exit and reaps it.
    fn end_ns_holder(&self, holder: NsHolder);
}

/// A process holding new namespaces (see [`Syscall::spawn_ns_holder`]).
#[derive(Debug)]
pub struct NsHolder {
    /// Its pid: its namespaces are under `/proc/<pid>/ns/`.
    pub pid: i32,
    /// Writing a byte (or closing) lets it exit.
    pub release: OwnedFd,
}
