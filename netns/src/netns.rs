//! The [`NetNs`] handle and its accessors; each verb lives in its own file
//! (`create.rs`, `open.rs`, `run_in.rs`, `remove.rs`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use crate::error::{Error, Op, Result};
use crate::syscall::{FileId, Syscall};

/// A network namespace kept alive by a bind mount ("pin") on a file.
///
/// The pin outlives this handle: dropping a `NetNs` only closes its
/// descriptor, and [`NetNs::open`] restores it later (for example after a
/// daemon restart). Only [`NetNs::remove`] destroys the pin.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> netns::Result<()> {
/// use netns::{NetNs, PinDir};
///
/// let dir = PinDir::prepare("/var/lib/my-runtime/netns")?;
/// let ns = NetNs::create(&dir, "pod-1")?;
/// println!("{} is net:[{}]", ns.path().display(), ns.inode());
/// drop(ns);
/// let again = NetNs::open(dir.path().join("pod-1"))?;
/// assert!(again.is_restored());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NetNs {
    pub(crate) sys: Arc<dyn Syscall>,
    pub(crate) path: PathBuf,
    pub(crate) link: Option<PathBuf>,
    /// `None` once removed; holding it keeps the namespace alive even if the
    /// pin is unmounted behind our back.
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) id: FileId,
    pub(crate) restored: bool,
}

impl NetNs {
    /// The pin: the file the namespace is bind-mounted on. For a handle
    /// opened through a symlink, this is the resolved target.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The symlink this handle was opened through, if any.
    pub fn link_path(&self) -> Option<&Path> {
        self.link.as_deref()
    }

    /// The namespace's inode number, the `N` of `net:[N]` in
    /// `/proc/<pid>/ns/net`.
    pub fn inode(&self) -> u64 {
        self.id.ino
    }

    /// Device and inode of the namespace; equal ids mean the same namespace.
    pub fn file_id(&self) -> FileId {
        self.id
    }

    /// Whether this handle came from [`NetNs::open`] rather than
    /// [`NetNs::create`].
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// Whether [`NetNs::remove`] has completed on this handle.
    pub fn is_removed(&self) -> bool {
        self.fd.is_none()
    }

    /// An open descriptor of the namespace, for `setns(2)` or to hand to a
    /// runtime; an error once the namespace was removed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> netns::Result<()> {
    /// use nix::sched::{setns, CloneFlags};
    ///
    /// let ns = netns::NetNs::open("/var/run/netns/blue")?;
    /// let fd = ns.fd()?;
    /// std::thread::spawn({
    ///     let fd = fd.try_clone_to_owned().expect("dup");
    ///     move || setns(fd, CloneFlags::CLONE_NEWNET)
    /// });
    /// # Ok(()) }
    /// ```
    pub fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd
            .as_ref()
            .map(AsFd::as_fd)
            .ok_or_else(|| Error::Removed {
                path: self.path.clone(),
            })
    }
}

/// Opens `pin` and checks it really is a network namespace.
pub(crate) fn open_pin(sys: &dyn Syscall, pin: &Path) -> Result<(OwnedFd, FileId)> {
    let (fd, fs_type, ns_type) = inspect_pin(sys, pin)?;
    let Some(ns_type) = ns_type else {
        return Err(Error::NotNetNs {
            path: pin.to_path_buf(),
            found: format!("not a namespace file: filesystem magic {fs_type:#x}"),
        });
    };
    if ns_type != CloneFlags::CLONE_NEWNET.bits() {
        return Err(Error::NotNetNs {
            path: pin.to_path_buf(),
            found: format!("a {} namespace", ns_kind(ns_type)),
        });
    }
    let id = sys
        .file_id(fd.as_fd())
        .map_err(|e| Error::sys(pin, Op::Inspect, e))?;
    Ok((fd, id))
}

/// Opens `pin`: its descriptor, filesystem magic and, for a namespace
/// file (nsfs), the namespace type.
pub(crate) fn inspect_pin(sys: &dyn Syscall, pin: &Path) -> Result<(OwnedFd, i64, Option<i32>)> {
    let fd = sys
        .open(pin, OFlag::O_RDONLY, Mode::empty())
        .map_err(|e| Error::sys(pin, Op::Open, e))?;
    let fs_type = sys
        .fs_type(fd.as_fd())
        .map_err(|e| Error::sys(pin, Op::Inspect, e))?;
    if fs_type != crate::syscall::NSFS_MAGIC {
        return Ok((fd, fs_type, None));
    }
    let ns_type = sys
        .ns_type(fd.as_fd())
        .map_err(|e| Error::sys(pin, Op::Inspect, e))?;
    Ok((fd, fs_type, Some(ns_type)))
}

pub(crate) fn ns_kind(ns_type: i32) -> String {
    let name = match ns_type {
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWTIME => "time",
        other => return format!("type {other:#x}"),
    };
    name.to_owned()
}
