//! Unpacking one layer tarball into a directory in overlayfs's format.
//!
//! Every path in the archive is resolved *inside* the layer directory:
//! names are cleaned lexically (so `../../etc/passwd` lands on
//! `<layer>/etc/passwd`, like containerd does) and parent directories are
//! opened with `openat2(RESOLVE_IN_ROOT)`, so a symlink in the archive that
//! points at `/` or `../..` resolves to the layer directory itself, never to
//! the host. The final component is always created or replaced with an
//! `*at` call that does not follow symlinks.
//!
//! OCI whiteouts are converted to overlayfs's own: `.wh.NAME` becomes a 0/0
//! character device `NAME`, and `.wh..wh..opq` sets `trusted.overlay.opaque`
//! on its directory. Each layer is unpacked on its own into an empty
//! directory, so layers can be stacked as overlay lower directories.

use crate::digest::{Algorithm, Digest, Hasher};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmodat, fstatat, makedev, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::UnlinkatFlags;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";

/// How a layer blob is compressed, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`tar+gzip`, Docker's `diff.tar.gzip`).
    Gzip,
    /// zstd (`tar+zstd`).
    Zstd,
}

impl Compression {
    /// The compression a layer media type declares, or `None` for a media
    /// type that is not a layer we can unpack.
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::layer_unpack::Compression;
    /// assert_eq!(
    ///     Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
    ///     Some(Compression::Zstd)
    /// );
    /// assert_eq!(Compression::from_media_type("text/plain"), None);
    /// ```
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The compressed stream or the tar framing is broken (truncated or
    /// corrupt data).
    #[error("reading archive: {0}")]
    Read(#[source] io::Error),
    /// Creating `entry` in the layer directory failed.
    #[error("entry {entry}: {op}: {errno}")]
    Create {
        /// The archive entry, as named in the tar.
        entry: String,
        /// The operation that failed.
        op: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },
    /// Writing a regular file's content failed (for example, a full disk).
    #[error("entry {entry}: writing content: {source}")]
    Write {
        /// The archive entry, as named in the tar.
        entry: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry type we do not unpack (for example, GNU sparse files).
    #[error("entry {entry}: unsupported tar entry type {kind:?}")]
    Unsupported {
        /// The archive entry, as named in the tar.
        entry: String,
        /// The tar entry type.
        kind: tar::EntryType,
    },
    /// The destination directory could not be opened.
    #[error("layer directory {path}: {errno}")]
    Destination {
        /// The directory.
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// What unpacking produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The digest of the uncompressed tar (in the algorithm asked for), to
    /// check against the image config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// Number of tar entries applied.
    pub entries: u64,
}

fn decompressor<'a>(
    blob: impl Read + 'a,
    compression: Compression,
) -> Result<Box<dyn Read + 'a>, UnpackError> {
    Ok(match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(blob).map_err(UnpackError::Read)?)
        }
    })
}

/// The diff id of the layer read from `blob`: the `algorithm` digest of its
/// uncompressed stream, without unpacking anything.
///
/// Blocking: run it on a blocking thread.
///
/// # Examples
///
/// ```
/// use image_store::digest::{Algorithm, Digest};
/// use image_store::layer_unpack::{diff_id, Compression};
/// let tar = vec![0u8; 1024];
/// let d = diff_id(tar.as_slice(), Compression::None, Algorithm::Sha256)?;
/// assert_eq!(d, Digest::of(Algorithm::Sha256, &tar));
/// # Ok::<(), image_store::layer_unpack::UnpackError>(())
/// ```
pub fn diff_id(
    blob: impl Read,
    compression: Compression,
    algorithm: Algorithm,
) -> Result<Digest, UnpackError> {
    let mut hashing = HashingReader {
        inner: decompressor(blob, compression)?,
        hasher: Hasher::new(algorithm),
    };
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Read)?;
    Ok(hashing.hasher.finish())
}

/// Unpacks the layer read from `blob` (compressed as `compression`) into the
/// existing, empty directory `dest`, computing its diff id with `algorithm`.
///
/// Blocking: run it on a blocking thread. On error `dest` holds whatever was
/// unpacked so far; callers unpack into a temporary directory and discard it.
///
/// # Examples
///
/// ```no_run
/// use image_store::digest::Algorithm;
/// use image_store::layer_unpack::{unpack, Compression};
/// let blob = std::fs::File::open("/tmp/layer.tar.gz")?;
/// let dest = std::path::Path::new("/tmp/layer");
/// let unpacked = unpack(blob, Compression::Gzip, dest, Algorithm::Sha256)?;
/// println!("diff id {}", unpacked.diff_id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn unpack(
    blob: impl Read,
    compression: Compression,
    dest: &Path,
    algorithm: Algorithm,
) -> Result<Unpacked, UnpackError> {
    let mut hashing = HashingReader {
        inner: decompressor(blob, compression)?,
        hasher: Hasher::new(algorithm),
    };
    let root = open_root(dest)?;
    let mut entries = 0;
    let mut dir_times = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            if let Some(time) = apply(&root, &mut entry)? {
                dir_times.push(time);
            }
            entries += 1;
        }
    }
    // The tar reader stops at the end-of-archive marker; the diff id covers
    // the whole stream, padding included, and reading to the end also
    // surfaces a truncated compressed stream.
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Read)?;
    // Directory times last: creating entries inside a directory bumps its
    // mtime.
    for (path, mtime) in dir_times.into_iter().rev() {
        if let Ok((parent, name)) = open_parent(&root, &path, false) {
            let t = TimeSpec::new(mtime, 0);
            let _ = utimensat(
                Some(parent.as_raw_fd()),
                name.as_os_str(),
                &t,
                &t,
                UtimensatFlags::NoFollowSymlink,
            );
        }
    }
    Ok(Unpacked {
        diff_id: hashing.hasher.finish(),
        entries,
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn open_root(dest: &Path) -> Result<OwnedFd, UnpackError> {
    let fd = nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| UnpackError::Destination {
        path: dest.to_path_buf(),
        errno,
    })?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The archive path cleaned lexically as if rooted at `/`: `.` and empty
/// components vanish and `..` never climbs above the root. Returns the
/// components relative to the layer directory (empty for the root itself).
///
/// # Examples
///
/// ```
/// use image_store::layer_unpack::clean_path;
/// use std::path::{Path, PathBuf};
/// assert_eq!(clean_path(Path::new("../../etc/passwd")), PathBuf::from("etc/passwd"));
/// assert_eq!(clean_path(Path::new("/a/./b/../c")), PathBuf::from("a/c"));
/// ```
pub fn clean_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass a descriptor the kernel just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens the directory `rel` inside `root`, resolving symlinks as if `root`
/// were `/`; with `create`, missing directories are made (mode 0755, like
/// tar implementations do for implied parents).
fn open_dir(root: &OwnedFd, rel: &Path, create: bool) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    let target = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    match openat2(root.as_raw_fd(), target, how(flags)) {
        Ok(fd) => return Ok(owned(fd)),
        Err(Errno::ENOENT) if create => {}
        Err(e) => return Err(e),
    }
    let mut dir = open_dir(root, Path::new(""), false)?;
    let mut so_far = PathBuf::new();
    for component in rel.components() {
        so_far.push(component);
        match openat2(root.as_raw_fd(), &so_far, how(flags)) {
            Ok(fd) => dir = owned(fd),
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(
                    Some(dir.as_raw_fd()),
                    component.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                dir = owned(openat2(root.as_raw_fd(), &so_far, how(flags))?);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// Opens the parent of `rel` (creating it when asked) and returns it with the
/// final component's name.
fn open_parent(
    root: &OwnedFd,
    rel: &Path,
    create: bool,
) -> Result<(OwnedFd, std::ffi::OsString), Errno> {
    let name = rel.file_name().ok_or(Errno::EINVAL)?.to_os_string();
    let parent = rel.parent().unwrap_or(Path::new(""));
    Ok((open_dir(root, parent, create)?, name))
}

/// Removes whatever `name` in `dir` is, unless it is a directory and
/// `keep_dir` is set. Returns whether a directory was kept.
fn clear(dir: &OwnedFd, name: &std::ffi::OsStr, keep_dir: bool) -> Result<bool, Errno> {
    let stat = match fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    let is_dir = stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if is_dir && keep_dir {
        return Ok(true);
    }
    if is_dir {
        // std's remove_dir_all does not follow symlinks, and the path goes
        // through our own descriptor, not a host path.
        let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        std::fs::remove_dir_all(path)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    } else {
        unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(false)
}

type DirTime = (PathBuf, i64);

fn apply<R: Read>(
    root: &OwnedFd,
    entry: &mut tar::Entry<R>,
) -> Result<Option<DirTime>, UnpackError> {
    let meta = EntryMeta::read(entry)?;
    let kind = meta.kind;
    if kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions()
        || kind.is_gnu_longname()
        || kind.is_gnu_longlink()
    {
        return Ok(None);
    }
    if meta.rel.as_os_str().is_empty() {
        // The layer root itself (`./`): only its metadata matters.
        if kind.is_dir() {
            meta.own(root, None)?;
        }
        return Ok(None);
    }
    let (parent, name) =
        open_parent(root, &meta.rel, true).map_err(meta.fail("open parent directory"))?;
    if whiteout(&parent, &name, &meta)? {
        return Ok(None);
    }
    match create(root, &parent, &name, entry, &meta)? {
        Created::HardLink => Ok(None),
        Created::Directory => {
            meta.own(&parent, Some(&name))?;
            set_xattrs(&parent, &name, entry, &meta)?;
            Ok(Some((meta.rel.clone(), meta.mtime)))
        }
        Created::Other => {
            meta.own(&parent, Some(&name))?;
            set_xattrs(&parent, &name, entry, &meta)?;
            let t = TimeSpec::new(meta.mtime, 0);
            utimensat(
                Some(parent.as_raw_fd()),
                name.as_os_str(),
                &t,
                &t,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(meta.fail("set times"))?;
            Ok(None)
        }
    }
}

/// What an archive entry says about itself, read once.
struct EntryMeta {
    /// The entry's path as written, for errors.
    shown: String,
    /// The path relative to the layer root, cleaned.
    rel: PathBuf,
    kind: tar::EntryType,
    mode: Mode,
    uid: u32,
    gid: u32,
    mtime: i64,
}

impl EntryMeta {
    fn read<R: Read>(entry: &tar::Entry<R>) -> Result<EntryMeta, UnpackError> {
        let raw_path = entry.path().map_err(UnpackError::Read)?.into_owned();
        let header = entry.header();
        let mode = header.mode().map_err(UnpackError::Read)? & 0o7777;
        Ok(EntryMeta {
            shown: raw_path.display().to_string(),
            rel: clean_path(&raw_path),
            kind: header.entry_type(),
            mode: Mode::from_bits_truncate(mode as libc::mode_t),
            uid: header.uid().map_err(UnpackError::Read)? as u32,
            gid: header.gid().map_err(UnpackError::Read)? as u32,
            mtime: header.mtime().map_err(UnpackError::Read)? as i64,
        })
    }

    /// An error of system call `op` on this entry.
    fn fail(&self, op: &'static str) -> impl FnOnce(Errno) -> UnpackError {
        let entry = self.shown.clone();
        move |errno| UnpackError::Create { entry, op, errno }
    }

    /// Sets owner and mode on `name` in `dir` (on `dir` itself for `None`).
    fn own(&self, dir: &OwnedFd, name: Option<&std::ffi::OsStr>) -> Result<(), UnpackError> {
        let path = name.unwrap_or(std::ffi::OsStr::new("."));
        fchownat(
            Some(dir.as_raw_fd()),
            path,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(self.fail("chown"))?;
        if self.kind != tar::EntryType::Symlink {
            // After chown, which clears setuid/setgid bits.
            fchmodat(
                Some(dir.as_raw_fd()),
                path,
                self.mode,
                FchmodatFlags::FollowSymlink,
            )
            .map_err(self.fail("chmod"))?;
        }
        Ok(())
    }
}

/// Applies an opaque-directory marker or a whiteout as overlayfs spells
/// them; `true` if the entry was one.
fn whiteout(
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
    meta: &EntryMeta,
) -> Result<bool, UnpackError> {
    let name = name.to_string_lossy();
    if name == OPAQUE_MARKER {
        set_xattr_at(parent, None, OPAQUE_XATTR, b"y")
            .map_err(meta.fail("mark directory opaque"))?;
        return Ok(true);
    }
    let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(false);
    };
    if hidden.is_empty() || hidden == "." || hidden == ".." {
        return Ok(true);
    }
    let hidden = std::ffi::OsString::from(hidden);
    clear(parent, &hidden, false).map_err(meta.fail("remove before whiteout"))?;
    mknodat(
        Some(parent.as_raw_fd()),
        hidden.as_os_str(),
        SFlag::S_IFCHR,
        Mode::empty(),
        makedev(0, 0),
    )
    .map_err(meta.fail("create whiteout device"))?;
    Ok(true)
}

/// What [`create`] made.
enum Created {
    /// A directory: its times are set once its contents are in.
    Directory,
    /// A hard link: it shares its target's inode and metadata.
    HardLink,
    /// A file, symlink or node.
    Other,
}

/// Creates the entry `name` in `parent`, replacing what was there.
fn create<R: Read>(
    root: &OwnedFd,
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
    entry: &mut tar::Entry<R>,
    meta: &EntryMeta,
) -> Result<Created, UnpackError> {
    let pfd = Some(parent.as_raw_fd());
    let replace = |keep_dir| clear(parent, name, keep_dir).map_err(meta.fail("replace"));
    match meta.kind {
        tar::EntryType::Directory => {
            if !replace(true)? {
                nix::sys::stat::mkdirat(pfd, name, meta.mode).map_err(meta.fail("mkdir"))?;
            }
            return Ok(Created::Directory);
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            replace(false)?;
            write_file(parent, name, entry, meta)?;
        }
        tar::EntryType::Symlink => {
            let target = link_target(entry, meta, "symlink without target")?;
            replace(false)?;
            // The target is stored verbatim: it is only ever followed inside
            // the container's root (or by us with RESOLVE_IN_ROOT).
            symlinkat(target.as_path(), pfd, name).map_err(meta.fail("symlink"))?;
        }
        tar::EntryType::Link => {
            let target = clean_path(&link_target(entry, meta, "hard link without target")?);
            let (tparent, tname) =
                open_parent(root, &target, false).map_err(meta.fail("resolve hard link target"))?;
            replace(false)?;
            linkat(
                Some(tparent.as_raw_fd()),
                tname.as_os_str(),
                pfd,
                name,
                AtFlags::empty(),
            )
            .map_err(meta.fail("hard link"))?;
            return Ok(Created::HardLink);
        }
        tar::EntryType::Fifo => {
            replace(false)?;
            mknodat(pfd, name, SFlag::S_IFIFO, meta.mode, 0).map_err(meta.fail("mknod"))?;
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            let header = entry.header();
            let major = header
                .device_major()
                .map_err(UnpackError::Read)?
                .unwrap_or(0);
            let minor = header
                .device_minor()
                .map_err(UnpackError::Read)?
                .unwrap_or(0);
            let kind = if meta.kind == tar::EntryType::Char {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            replace(false)?;
            mknodat(
                pfd,
                name,
                kind,
                meta.mode,
                makedev(major.into(), minor.into()),
            )
            .map_err(meta.fail("mknod"))?;
        }
        other => {
            return Err(UnpackError::Unsupported {
                entry: meta.shown.clone(),
                kind: other,
            })
        }
    }
    Ok(Created::Other)
}

/// A link entry's target.
fn link_target<R: Read>(
    entry: &tar::Entry<R>,
    meta: &EntryMeta,
    missing: &'static str,
) -> Result<PathBuf, UnpackError> {
    Ok(entry
        .link_name()
        .map_err(UnpackError::Read)?
        .ok_or(UnpackError::Create {
            entry: meta.shown.clone(),
            op: missing,
            errno: Errno::EINVAL,
        })?
        .into_owned())
}

/// Writes a regular file's contents into a new file `name` in `parent`.
fn write_file<R: Read>(
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
    entry: &mut tar::Entry<R>,
    meta: &EntryMeta,
) -> Result<(), UnpackError> {
    let fd = openat(
        Some(parent.as_raw_fd()),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(meta.fail("create file"))?;
    // SAFETY: openat just returned this descriptor.
    let mut file = unsafe { File::from_raw_fd(fd) };
    copy_content(entry, &mut file, meta)
}

/// The most of a file's content held at once: layers are mostly large
/// files, and the kernel's write path costs per call (`io::copy` would
/// write 8 KiB at a time).
const WRITE_CHUNK: usize = 256 << 10;

/// Copies an entry's content into `file` in writes of up to
/// [`WRITE_CHUNK`]; a failed read is the archive's, a failed write ours.
fn copy_content<R: Read>(
    entry: &mut tar::Entry<R>,
    file: &mut File,
    meta: &EntryMeta,
) -> Result<(), UnpackError> {
    // The header's size is the archive's word: only a cap on the buffer.
    let capacity = usize::try_from(entry.size()).map_or(WRITE_CHUNK, |n| n.min(WRITE_CHUNK));
    let mut buf = vec![0; capacity.max(1)];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match entry.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(UnpackError::Read(e)),
            }
        }
        file.write_all(&buf[..filled])
            .map_err(|source| UnpackError::Write {
                entry: meta.shown.clone(),
                source,
            })?;
        if filled < buf.len() {
            return Ok(());
        }
    }
}

/// The entry's extended attributes from its PAX records, except
/// overlayfs's own.
fn set_xattrs<R: Read>(
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
    entry: &mut tar::Entry<R>,
    meta: &EntryMeta,
) -> Result<(), UnpackError> {
    let Some(extensions) = entry.pax_extensions().map_err(UnpackError::Read)? else {
        return Ok(());
    };
    for ext in extensions {
        let ext = ext.map_err(UnpackError::Read)?;
        let Ok(key) = ext.key() else { continue };
        let Some(attr) = key.strip_prefix(PAX_XATTR_PREFIX) else {
            continue;
        };
        // overlayfs reads its own attributes (opaque, redirect, metacopy)
        // from lower layers; only our whiteout conversion may set them.
        if attr.starts_with(OVERLAY_XATTR_PREFIX) {
            tracing::warn!(entry = %meta.shown, %attr, "ignoring overlayfs xattr from archive");
            continue;
        }
        match set_xattr_at(parent, Some(name), attr, ext.value_bytes()) {
            Ok(()) => {}
            // The kernel refuses `user.` attributes on symlinks; losing
            // one there is better than failing the whole image.
            Err(errno) if meta.kind == tar::EntryType::Symlink => {
                tracing::warn!(entry = %meta.shown, %attr, %errno, "xattr on symlink not kept");
            }
            Err(errno) => return Err(meta.fail("set xattr")(errno)),
        }
    }
    Ok(())
}

/// Sets an extended attribute on `name` inside `dir` (or on `dir` itself),
/// without following a symlink in the last component.
fn set_xattr_at(
    dir: &OwnedFd,
    name: Option<&std::ffi::OsStr>,
    attr: &str,
    value: &[u8],
) -> Result<(), Errno> {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    // `/proc/self/fd/N/.` names the directory; `/proc/self/fd/N` alone would
    // be the magic link, which lsetxattr does not follow.
    path.push(name.unwrap_or(std::ffi::OsStr::new(".")));
    xattr::set(&path, attr, value)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    /// An entry written with raw header bytes, so names the tar crate's
    /// builder would refuse (`..`, absolute paths) can be tested.
    fn raw(
        b: &mut tar::Builder<Vec<u8>>,
        kind: tar::EntryType,
        name: &str,
        link: &str,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h.set_mtime(1_000_000);
        h
    }

    struct Sandbox {
        _dir: tempfile::TempDir,
        outer: PathBuf,
        layer: PathBuf,
    }

    /// `<tmp>/outer/layer`, plus a sentinel in `outer` that must survive.
    fn sandbox() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path().join("outer");
        let layer = outer.join("layer");
        fs::create_dir_all(&layer).unwrap();
        fs::write(outer.join("sentinel"), b"untouched").unwrap();
        Sandbox {
            _dir: dir,
            outer,
            layer,
        }
    }

    impl Sandbox {
        fn assert_outside_untouched(&self) {
            let mut names: Vec<_> = fs::read_dir(&self.outer)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, ["layer", "sentinel"]);
            assert_eq!(fs::read(self.outer.join("sentinel")).unwrap(), b"untouched");
        }
    }

    #[test]
    fn files_keep_owner_mode_setuid_links_devices_and_xattrs() {
        let sb = sandbox();
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut header(tar::EntryType::Directory, 0o750, 0),
            "d/",
            io::empty(),
        )
        .unwrap();
        let mut h = header(tar::EntryType::Regular, 0o4755, 5);
        h.set_uid(1234);
        h.set_gid(5678);
        b.append_pax_extensions([
            ("SCHILY.xattr.user.test", b"v".as_slice()),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc".as_slice()),
        ])
        .unwrap();
        b.append_data(&mut h, "d/suid", b"hello".as_slice())
            .unwrap();
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, "d/link", "suid").unwrap();
        let mut h = header(tar::EntryType::Link, 0o644, 0);
        b.append_link(&mut h, "hard", "d/suid").unwrap();
        let mut h = header(tar::EntryType::Char, 0o600, 0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        b.append_data(&mut h, "null", io::empty()).unwrap();
        let mut h = header(tar::EntryType::Fifo, 0o600, 0);
        b.append_data(&mut h, "fifo", io::empty()).unwrap();
        let tar = b.into_inner().unwrap();

        let unpacked = unpack(
            tar.as_slice(),
            Compression::None,
            &sb.layer,
            Algorithm::Sha256,
        )
        .unwrap();
        assert_eq!(unpacked.diff_id, Digest::of(Algorithm::Sha256, &tar));

        let suid = fs::metadata(sb.layer.join("d/suid")).unwrap();
        assert_eq!(suid.permissions().mode() & 0o7777, 0o4755);
        assert_eq!((suid.uid(), suid.gid()), (1234, 5678));
        assert_eq!(suid.mtime(), 1_000_000);
        assert_eq!(
            xattr::get(sb.layer.join("d/suid"), "user.test").unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(
            xattr::get(sb.layer.join("d/suid"), "trusted.overlay.redirect").unwrap(),
            None,
            "overlay attributes from archives are dropped"
        );
        assert_eq!(
            fs::metadata(sb.layer.join("d"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o750
        );
        assert_eq!(
            fs::read_link(sb.layer.join("d/link")).unwrap(),
            Path::new("suid")
        );
        let hard = fs::metadata(sb.layer.join("hard")).unwrap();
        assert_eq!(hard.ino(), suid.ino());
        let null = fs::metadata(sb.layer.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        assert!(fs::metadata(sb.layer.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        sb.assert_outside_untouched();
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let sb = sandbox();
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind) in [
            ("gone/", tar::EntryType::Directory),
            ("dir/", tar::EntryType::Directory),
        ] {
            b.append_data(&mut header(kind, 0o755, 0), path, io::empty())
                .unwrap();
        }
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, 0),
            ".wh.gone",
            io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, 0),
            "dir/.wh..wh..opq",
            io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, 0),
            "dir/.wh.file",
            io::empty(),
        )
        .unwrap();
        let tar = b.into_inner().unwrap();
        unpack(
            tar.as_slice(),
            Compression::None,
            &sb.layer,
            Algorithm::Sha256,
        )
        .unwrap();
        for whiteout in ["gone", "dir/file"] {
            let m = fs::symlink_metadata(sb.layer.join(whiteout)).unwrap();
            assert!(m.file_type().is_char_device(), "{whiteout}");
            assert_eq!(m.rdev(), 0);
        }
        assert_eq!(
            xattr::get(sb.layer.join("dir"), OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!sb.layer.join(".wh.gone").exists());
        assert!(!sb.layer.join("dir/.wh..wh..opq").exists());
    }

    #[test]
    fn traversal_attempts_stay_inside_the_layer() {
        let sb = sandbox();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, tar::EntryType::Regular, "../dotdot", "", b"x");
        raw(&mut b, tar::EntryType::Regular, "/absolute", "", b"x");
        raw(&mut b, tar::EntryType::Regular, "a/../../../deep", "", b"x");
        raw(&mut b, tar::EntryType::Symlink, "root-link", "/", b"");
        raw(
            &mut b,
            tar::EntryType::Regular,
            "root-link/via-abs-link",
            "",
            b"x",
        );
        raw(&mut b, tar::EntryType::Symlink, "up-link", "../../..", b"");
        raw(
            &mut b,
            tar::EntryType::Regular,
            "up-link/via-rel-link",
            "",
            b"x",
        );
        raw(
            &mut b,
            tar::EntryType::Symlink,
            "sentinel-link",
            "../sentinel",
            b"",
        );
        raw(&mut b, tar::EntryType::Link, "hard-out", "../sentinel", b"");
        let tar = b.into_inner().unwrap();
        // The hard link's target resolves inside the layer, where there is
        // no `sentinel`: an error, and nothing outside touched.
        let err = unpack(
            tar.as_slice(),
            Compression::None,
            &sb.layer,
            Algorithm::Sha256,
        )
        .unwrap_err();
        assert!(err.to_string().contains("hard-out"), "{err}");
        for inside in ["dotdot", "absolute", "deep", "via-abs-link", "via-rel-link"] {
            assert!(sb.layer.join(inside).is_file(), "{inside}");
        }
        sb.assert_outside_untouched();
    }

    #[test]
    fn gzip_and_zstd_layers_unpack_to_the_same_diff_id() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, 2),
            "f",
            b"hi".as_slice(),
        )
        .unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(tar.as_slice(), 1).unwrap();
        for (blob, c) in [(gz, Compression::Gzip), (zst, Compression::Zstd)] {
            let sb = sandbox();
            let u = unpack(blob.as_slice(), c, &sb.layer, Algorithm::Sha512).unwrap();
            assert_eq!(u.diff_id, Digest::of(Algorithm::Sha512, &tar));
            assert_eq!(
                diff_id(blob.as_slice(), c, Algorithm::Sha256).unwrap(),
                Digest::of(Algorithm::Sha256, &tar)
            );
            assert_eq!(fs::read(sb.layer.join("f")).unwrap(), b"hi");
        }
    }

    #[test]
    fn truncated_and_corrupt_streams_are_read_errors() {
        let mut b = tar::Builder::new(Vec::new());
        let data = vec![7u8; 100_000];
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, data.len() as u64),
            "big",
            data.as_slice(),
        )
        .unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let sb = sandbox();
        let err = unpack(
            &gz[..gz.len() / 2],
            Compression::Gzip,
            &sb.layer,
            Algorithm::Sha256,
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::Read(_)), "{err}");
        let sb = sandbox();
        let err = unpack(
            b"not gzip".as_slice(),
            Compression::Gzip,
            &sb.layer,
            Algorithm::Sha256,
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::Read(_)), "{err}");
        let sb = sandbox();
        let err = unpack(&tar[..700], Compression::None, &sb.layer, Algorithm::Sha256).unwrap_err();
        assert!(matches!(err, UnpackError::Read(_)), "{err}");
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("..".to_string()),
            Just(".".to_string()),
            Just("".to_string()),
            Just("sentinel".to_string()),
            Just("layer".to_string()),
            Just(".wh.a".to_string()),
            Just(".wh..wh..opq".to_string()),
            "[a-c]{1,2}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        (any::<bool>(), proptest::collection::vec(component(), 1..5)).prop_map(|(abs, parts)| {
            let p = parts.join("/");
            if abs {
                format!("/{p}")
            } else {
                p
            }
        })
    }

    fn entry() -> impl Strategy<Value = (u8, String, String)> {
        (0u8..5, path(), path())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        // Fuzz: whatever the archive holds, unpacking never panics and never
        // creates or changes anything outside the layer directory.
        #[test]
        fn arbitrary_archives_never_escape(entries in proptest::collection::vec(entry(), 1..12)) {
            let sb = sandbox();
            let mut b = tar::Builder::new(Vec::new());
            for (kind, name, link) in &entries {
                let (kind, data): (_, &[u8]) = match kind {
                    0 => (tar::EntryType::Regular, b"data"),
                    1 => (tar::EntryType::Directory, b""),
                    2 => (tar::EntryType::Symlink, b""),
                    3 => (tar::EntryType::Link, b""),
                    _ => (tar::EntryType::Fifo, b""),
                };
                if name.len() < 100 && link.len() < 100 {
                    raw(&mut b, kind, name, link, data);
                }
            }
            let tar = b.into_inner().unwrap();
            let _ = unpack(tar.as_slice(), Compression::None, &sb.layer, Algorithm::Sha256);
            sb.assert_outside_untouched();
        }
    }
}
