//! Idmapped mounts: a directory shown through a user namespace's id
//! mapping, so that what its files' owners are on disk appears shifted by
//! the mapping (Linux 5.12+: `open_tree`, `mount_setattr` with
//! `MOUNT_ATTR_IDMAP`, `move_mount`).
//!
//! A pod with a user namespace (Kubernetes `hostUsers: false`) maps its
//! root to an unprivileged host id, say 65536. Image layers on disk are
//! owned by host root; through an idmapped mount with the pod's mapping
//! they are owned by host 65536, which is root inside the pod. Nothing is
//! chowned, and the same layers serve every pod whatever its mapping.
//! Writes through an idmapped mount are mapped back: a file the pod's
//! root creates is owned by host root on disk.
//!
//! Debian's runc 1.1.5 cannot make idmapped mounts itself, so a runtime
//! makes them before `runc create` and hands runc the result as a bind
//! source; a bind mount of an idmapped mount keeps the mapping.
//!
//! [`mount_with`] also makes plain read-only binds the same way. A bind
//! made here, in the host's namespaces, and then copied into a container's
//! mount namespace owned by a user namespace has its read-only flag
//! *locked* by the kernel: root in that user namespace cannot remount it
//! writable, which it can do to a read-only bind runc makes from inside.
//!
//! Every call here changes the mount table of the calling thread's mount
//! namespace and blocks on the kernel: run it on a dedicated thread.
//!
//! # Examples
//!
//! ```no_run
//! use std::path::Path;
//!
//! // The pod's pinned user namespace gives the mapping.
//! idmapped::mount(
//!     Path::new("/var/lib/kubelet/pods/p/volumes/config"),
//!     Path::new("/run/cri-server/idmapped/c1-0"),
//!     Path::new("/run/cri-server/netns/p.user"),
//!     idmapped::Recursive::Yes,
//! )?;
//! # Ok::<(), idmapped::Error>(())
//! ```

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// Whether submounts of the source are cloned (and idmapped) too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recursive {
    /// The source and everything mounted below it (a volume with
    /// submounts keeps them, each idmapped).
    Yes,
    /// The source's own mount only.
    No,
}

/// What failed, on which path, with the kernel's errno.
#[derive(Debug, thiserror::Error)]
#[error("idmapped mount of {source_path} on {target}: {step}: {errno}")]
pub struct Error {
    /// The directory or file being mapped.
    pub source_path: PathBuf,
    /// Where it was to be mounted.
    pub target: PathBuf,
    /// The step: `open user namespace`, `open_tree`, `mount_setattr`,
    /// `move_mount`.
    pub step: &'static str,
    /// The kernel's answer (`EINVAL` from `mount_setattr` means the
    /// filesystem cannot be idmapped).
    pub errno: std::io::Error,
}

impl Error {
    /// The errno the kernel returned.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.errno.raw_os_error()
    }
}

/// Mounts `source` on `target` (an existing directory, or file for a file
/// source) shown through the id mapping of the user namespace at `userns`
/// (a `/proc/<pid>/ns/user` file or a pin of one).
///
/// # Errors
///
/// [`Error`] naming the step; nothing is mounted then.
pub fn mount(
    source: &Path,
    target: &Path,
    userns: &Path,
    recursive: Recursive,
) -> Result<(), Error> {
    mount_with(source, target, Some(userns), false, recursive)
}

/// Binds `source` on `target` as a detached clone: idmapped with the user
/// namespace at `userns` if given, read-only (for every submount too, when
/// recursive) if `readonly`.
///
/// # Errors
///
/// [`Error`] naming the step; nothing is mounted then.
pub fn mount_with(
    source: &Path,
    target: &Path,
    userns: Option<&Path>,
    readonly: bool,
    recursive: Recursive,
) -> Result<(), Error> {
    let fail = |step: &'static str| {
        let errno = std::io::Error::last_os_error();
        Error {
            source_path: source.to_path_buf(),
            target: target.to_path_buf(),
            step,
            errno,
        }
    };
    let userns_file = userns
        .map(std::fs::File::open)
        .transpose()
        .map_err(|errno| Error {
            source_path: source.to_path_buf(),
            target: target.to_path_buf(),
            step: "open user namespace",
            errno,
        })?;
    let invalid = |step| Error {
        source_path: source.to_path_buf(),
        target: target.to_path_buf(),
        step,
        errno: std::io::Error::from_raw_os_error(libc::EINVAL),
    };
    let source_c = CString::new(source.as_os_str().as_bytes()).map_err(|_| invalid("open_tree"))?;
    let target_c =
        CString::new(target.as_os_str().as_bytes()).map_err(|_| invalid("move_mount"))?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive == Recursive::Yes {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: a NUL-terminated path and plain flags; the result is a new
    // descriptor, owned below only when the call succeeded.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source_c.as_ptr(),
            flags,
        )
    };
    if tree < 0 {
        return Err(fail("open_tree"));
    }
    // SAFETY: open_tree returned a new descriptor nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let mut attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    if let Some(file) = &userns_file {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = file.as_raw_fd() as u64;
    }
    if readonly {
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    let mut setattr_flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive == Recursive::Yes {
        setattr_flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let empty = c"";
    if attr.attr_set != 0 {
        // SAFETY: a valid detached-tree descriptor, an empty path with
        // AT_EMPTY_PATH, and a mount_attr that outlives the call, with its
        // size.
        let set = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty.as_ptr(),
                setattr_flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if set < 0 {
            return Err(fail("mount_setattr"));
        }
    }
    // SAFETY: valid descriptor and NUL-terminated paths.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(fail("move_mount"));
    }
    Ok(())
}

/// Detaches every mount stacked on `target` (one comes off per call) and
/// removes the mount point, never recursively: a mount point still mounted
/// (something held on) must not be walked, or the walk would delete the
/// files of what is mounted there (an image layer, a host volume).
/// Idempotent: a missing `target` is fine.
pub fn detach(target: &Path) {
    if let Ok(path) = CString::new(target.as_os_str().as_bytes()) {
        // SAFETY: a NUL-terminated path and a plain flag; EINVAL once
        // nothing is mounted there any more.
        while unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {}
    }
    let _ = std::fs::remove_dir(target).or_else(|_| std::fs::remove_file(target));
}

/// [`detach`] for each entry of directory `dir`, then `dir` itself.
pub fn detach_all(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            detach(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
