//! Reading small files the daemon does not control: files of a container's
//! root filesystem (`/etc/passwd`, `/etc/group`), which the image's author
//! wrote, and node files a pod names (a seccomp profile).
//!
//! An image is hostile input. Its `/etc/passwd` may be a symlink to
//! `/dev/zero` (an endless read), to `/etc/shadow` (the host's file, if the
//! link were followed on the host), or a FIFO (an open that never returns).
//! So a root filesystem file is opened *relative to the root* with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, as the image store
//! unpacks layers: an absolute or `..` symlink resolves inside the image,
//! never on the host. Every open is `O_NONBLOCK` (a FIFO opens at once
//! instead of waiting for a writer), the descriptor is checked with `fstat`
//! to be a regular file, and at most `limit + 1` bytes are read so an
//! oversized file is refused rather than loaded.
//!
//! These calls block: callers run them on a blocking thread.

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, SFlag};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// The largest root filesystem file the daemon reads: real user databases
/// are a few KiB; 4 MiB leaves room for huge ones and bounds the memory a
/// hostile image can make the daemon spend.
pub const MAX_ROOTFS_FILE: u64 = 4 * 1024 * 1024;

/// Why a file could not be read. Each message names the file and the cause;
/// callers add the container or image it belongs to.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The root directory itself could not be opened.
    #[error("root filesystem {root}: open: {errno}")]
    Root {
        /// The root directory.
        root: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// Opening the file failed (other than "does not exist").
    #[error("{file}: open: {errno}")]
    Open {
        /// The file, as the image sees it (or the node path).
        file: String,
        /// Why.
        errno: Errno,
    },
    /// The file is a symlink that leads nowhere inside the image, such as
    /// `/etc/passwd -> /dev/zero` in an image without `/dev`. Followed on
    /// the host it would have reached a host file, so it is refused rather
    /// than taken as "no file".
    #[error(
        "{file} is a symlink to {target:?}, which does not exist inside the image; \
         refusing to read it"
    )]
    Dangling {
        /// The file, as the image sees it.
        file: String,
        /// The link's target, as written in the image.
        target: String,
    },
    /// The file is a device, FIFO, socket or directory.
    #[error("{file} is a {kind}, not a regular file; refusing to read it")]
    NotRegular {
        /// The file.
        file: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than the limit.
    #[error("{file} is larger than {limit} bytes; refusing to read it")]
    TooLarge {
        /// The file.
        file: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// Reading the opened file failed.
    #[error("{file}: read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
}

impl FileError {
    /// Whether the file itself is at fault (hostile or malformed), as
    /// opposed to the daemon failing to read a proper file.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            FileError::Dangling { .. } | FileError::NotRegular { .. } | FileError::TooLarge { .. }
        )
    }
}

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: callers pass a descriptor the kernel has just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The root directory, opened to resolve paths inside it.
fn open_root(root: &Path) -> Result<OwnedFd, FileError> {
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map(owned)
    .map_err(|errno| FileError::Root {
        root: root.to_path_buf(),
        errno,
    })
}

/// `flags` resolved inside the root (openat2 refuses `O_PATH` with flags
/// other than `O_DIRECTORY`, `O_NOFOLLOW` and `O_CLOEXEC`).
fn in_root(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// `path` made relative (leading `/` dropped); the kernel resolves `..`
/// inside the root.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect()
}

/// Reads `file` (an absolute path as the container sees it, e.g.
/// `/etc/passwd`) from the root filesystem at `root`, resolving every
/// symlink inside `root`. `Ok(None)` when the file does not exist.
///
/// # Errors
///
/// [`FileError`] when the root cannot be opened, the file is a dangling
/// symlink, not a regular file, larger than `limit`, or unreadable.
///
/// # Examples
///
/// ```
/// use cri_spec::rootfs_file::{read_in_root, FileError};
/// let root = tempfile::tempdir().unwrap();
/// std::fs::create_dir(root.path().join("etc")).unwrap();
/// std::fs::write(root.path().join("etc/hostname"), "web\n").unwrap();
/// // An absolute symlink resolves inside the root, not on the host.
/// std::os::unix::fs::symlink("/etc/hostname", root.path().join("etc/alias")).unwrap();
/// let read = |f: &str| read_in_root(root.path(), f.as_ref(), 1024);
/// assert_eq!(read("/etc/alias").unwrap().as_deref(), Some(&b"web\n"[..]));
/// assert_eq!(read("/etc/missing").unwrap(), None);
/// assert!(matches!(read("/etc"), Err(FileError::NotRegular { kind: "directory", .. })));
/// ```
pub fn read_in_root(root: &Path, file: &Path, limit: u64) -> Result<Option<Vec<u8>>, FileError> {
    let name = file.display().to_string();
    let root_fd = open_root(root)?;
    let rel = relative(file);
    let how = in_root(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY);
    match openat2(root_fd.as_raw_fd(), &rel, how) {
        Ok(fd) => read_opened(owned(fd), &name, limit).map(Some),
        Err(Errno::ENOENT) => match dangling_target(&root_fd, &rel) {
            Some(target) => Err(FileError::Dangling { file: name, target }),
            None => Ok(None),
        },
        Err(errno) => Err(FileError::Open { file: name, errno }),
    }
}

/// Where `path` (as the container sees it) is on the host, resolved inside
/// the root filesystem at `root` (every symlink resolved inside it, never
/// on the host), and whether it is a directory; `Ok(None)` when nothing is
/// there.
///
/// # Errors
///
/// [`FileError`] when the root cannot be opened or the lookup fails for
/// another reason than absence.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<Option<(PathBuf, bool)>, FileError> {
    let name = path.display().to_string();
    let root_fd = open_root(root)?;
    let fd = match openat2(root_fd.as_raw_fd(), &relative(path), in_root(OFlag::O_PATH)) {
        Ok(fd) => owned(fd),
        Err(Errno::ENOENT) => return Ok(None),
        Err(errno) => return Err(FileError::Open { file: name, errno }),
    };
    let stat = fstat(fd.as_raw_fd()).map_err(|errno| FileError::Open {
        file: name.clone(),
        errno,
    })?;
    let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    // The kernel names what the descriptor resolved to; it must be under
    // the root (RESOLVE_IN_ROOT makes it so; checked all the same).
    let host = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| {
        FileError::Open {
            file: name.clone(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    })?;
    let root = std::fs::canonicalize(root).map_err(|e| FileError::Root {
        root: root.to_path_buf(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    if !host.starts_with(&root) {
        return Err(FileError::Open {
            file: name,
            errno: Errno::EXDEV,
        });
    }
    Ok(Some((host, is_dir)))
}

/// The target of `rel` when `rel` itself is a symlink (so ENOENT came from
/// what it points at, not from `rel` missing).
fn dangling_target(root: &OwnedFd, rel: &Path) -> Option<String> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let name = rel.file_name()?;
    let dir = openat2(
        root.as_raw_fd(),
        parent,
        in_root(OFlag::O_PATH | OFlag::O_DIRECTORY),
    )
    .map(owned)
    .ok()?;
    let stat = fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
        return None;
    }
    let target = nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name).ok()?;
    Some(target.to_string_lossy().into_owned())
}

/// Reads a file of the node named by configuration or by a pod (a seccomp
/// profile): symlinks are followed (the node's administrator placed them),
/// but only a regular file of at most `limit` bytes is read, and a FIFO
/// cannot block the open.
///
/// # Errors
///
/// [`FileError`] naming `path` and the cause; `Open` with `ENOENT` when the
/// file does not exist.
pub fn read_node_file(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let name = path.display().to_string();
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map(owned)
    .map_err(|errno| FileError::Open {
        file: name.clone(),
        errno,
    })?;
    read_opened(fd, &name, limit)
}

fn kind(stat: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => "regular file",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFLNK => "symlink",
        _ => "file of unknown type",
    }
}

/// Checks the opened descriptor is a regular file within `limit` and reads
/// it, taking at most `limit + 1` bytes (the size may grow after `fstat`).
fn read_opened(fd: OwnedFd, name: &str, limit: u64) -> Result<Vec<u8>, FileError> {
    let stat = fstat(fd.as_raw_fd()).map_err(|errno| FileError::Open {
        file: name.to_owned(),
        errno,
    })?;
    let kind = kind(&stat);
    if kind != "regular file" {
        return Err(FileError::NotRegular {
            file: name.to_owned(),
            kind,
        });
    }
    let too_large = || FileError::TooLarge {
        file: name.to_owned(),
        limit,
    };
    if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    File::from(fd)
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Read {
            file: name.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        dir
    }

    fn read(root: &Path, file: &str) -> Result<Option<Vec<u8>>, FileError> {
        read_in_root(root, Path::new(file), MAX_ROOTFS_FILE)
    }

    #[test]
    fn absolute_and_dotdot_symlinks_stay_inside_the_root() {
        let dir = root();
        std::fs::write(dir.path().join("etc/shadow"), "in-image\n").unwrap();
        symlink("/etc/shadow", dir.path().join("etc/passwd")).unwrap();
        symlink("../../../../../../etc/shadow", dir.path().join("etc/group")).unwrap();
        assert_eq!(
            read(dir.path(), "/etc/passwd").unwrap().unwrap(),
            b"in-image\n"
        );
        assert_eq!(
            read(dir.path(), "/etc/group").unwrap().unwrap(),
            b"in-image\n"
        );
        // `..` in the requested path cannot climb out either.
        assert_eq!(
            read(dir.path(), "/../../etc/shadow").unwrap().unwrap(),
            b"in-image\n"
        );
    }

    #[test]
    fn a_symlink_to_a_host_device_is_refused_as_dangling() {
        let dir = root();
        symlink("/dev/zero", dir.path().join("etc/passwd")).unwrap();
        let started = Instant::now();
        let err = read(dir.path(), "/etc/passwd").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(&err, FileError::Dangling { target, .. } if target == "/dev/zero"));
        assert!(err.to_string().contains("/etc/passwd"), "{err}");
        assert!(err.is_refusal());
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_at_once() {
        let dir = root();
        nix::unistd::mkfifo(
            &dir.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        nix::sys::stat::mknod(
            &dir.path().join("etc/zero"),
            SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 5),
        )
        .unwrap();
        let started = Instant::now();
        let fifo = read(dir.path(), "/etc/passwd").unwrap_err();
        let device = read(dir.path(), "/etc/zero").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(fifo, FileError::NotRegular { kind: "FIFO", .. }));
        assert!(matches!(
            device,
            FileError::NotRegular {
                kind: "character device",
                ..
            }
        ));
        assert!(device.to_string().contains("/etc/zero"), "{device}");
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let dir = root();
        std::fs::write(dir.path().join("etc/passwd"), vec![b'x'; 11]).unwrap();
        let read = |limit| read_in_root(dir.path(), Path::new("/etc/passwd"), limit);
        assert!(matches!(
            read(10),
            Err(FileError::TooLarge { limit: 10, .. })
        ));
        assert_eq!(read(11).unwrap().unwrap().len(), 11);
    }

    #[test]
    fn missing_files_and_missing_parents_are_none() {
        let dir = root();
        assert_eq!(read(dir.path(), "/etc/passwd").unwrap(), None);
        assert_eq!(read(dir.path(), "/nothing/here").unwrap(), None);
        assert!(matches!(
            read_in_root(Path::new("/nonexistent-root"), Path::new("/etc/passwd"), 1),
            Err(FileError::Root { .. })
        ));
    }

    #[test]
    fn node_files_follow_symlinks_but_refuse_devices() {
        let dir = root();
        std::fs::write(dir.path().join("profile.json"), "{}").unwrap();
        symlink(dir.path().join("profile.json"), dir.path().join("link")).unwrap();
        assert_eq!(read_node_file(&dir.path().join("link"), 10).unwrap(), b"{}");
        assert!(matches!(
            read_node_file(Path::new("/dev/zero"), 10),
            Err(FileError::NotRegular { .. })
        ));
        assert!(matches!(
            read_node_file(&dir.path().join("none"), 10),
            Err(FileError::Open {
                errno: Errno::ENOENT,
                ..
            })
        ));
    }
}
