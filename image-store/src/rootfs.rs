//! Per-container root filesystems: an overlayfs mount with the image's
//! layers as lower directories and a private upper and work directory, all
//! under `containers/<container id>/`.
//!
//! The directory also records which image the container uses
//! (`image.json`), written before the mount: that file is how the store
//! refuses to remove an image in use, and it survives daemon restarts.
//!
//! Lower directories are named by [`ChainId`]s only, and every path handed
//! to overlayfs is checked first: each lower directory must be a real
//! directory directly under the store's `layers/`, and no path may hold a
//! character overlayfs reads as syntax (`,` between options, `:` between
//! lower directories, `\` escapes) or a control character.

use crate::error::{io, Error, Result};
use crate::layer_store::{ChainId, LayerStore};
use crate::metadata::write_atomic;
use crate::overlay_paths;
use crate::temp;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A container's mounted root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootFs {
    /// The container it belongs to.
    pub container_id: String,
    /// The image it was made from.
    pub image_id: String,
    /// The mount point to hand to the OCI runtime as `root.path`.
    pub path: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// How a root filesystem is shown to a container in a user namespace: its
/// image layers through idmapped mounts with the namespace's mapping (so
/// files owned by host root on disk are owned by the container's root),
/// and its writable layer owned by the host ids the container's root is.
/// No layer is ever chowned, and every container still shares them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootFsIdmap {
    /// The user namespace whose mapping applies (a pin or
    /// `/proc/<pid>/ns/user`).
    pub userns: PathBuf,
    /// The host uid and gid of the container's root.
    pub root: (u32, u32),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Usage {
    image_id: String,
    readonly: bool,
}

/// The `containers/` directory of one store.
#[derive(Clone, Debug)]
pub(crate) struct RootFsDir {
    dir: PathBuf,
    tmp: PathBuf,
    layers: LayerStore,
    mounts: Arc<dyn Mounts>,
}

const USAGE: &str = "image.json";
/// The temporary directory of root filesystems: inside `containers/`,
/// since renames cannot cross into it once it is a mount of its own
/// (`rootfs_tree`), and dot-named, so never taken for a container.
pub(crate) const CONTAINERS_TMP: &str = "containers/.tmp";

/// A root filesystem's mount point in its container's directory.
pub(crate) const MOUNT: &str = "rootfs";

/// Container ids become directory names: keep them to a safe alphabet.
pub(crate) fn check_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadContainerId(id.to_string()))
    }
}

/// One overlay mount, as the kernel wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Overlay {
    /// The mount point.
    pub target: PathBuf,
    /// Lower directories, **top first** (overlayfs order; images list layers
    /// bottom first).
    pub lower: Vec<PathBuf>,
    /// The container's writable layer.
    pub upper: PathBuf,
    /// overlayfs's scratch directory, on the upper's filesystem.
    pub work: PathBuf,
    /// Mount read-only.
    pub readonly: bool,
    /// Lower directories shown through this mapping.
    pub idmap: Option<RootFsIdmap>,
}

/// Every kernel call root filesystems make: [`KernelMounts`] makes them;
/// tests substitute a recording double.
pub(crate) trait Mounts: Send + Sync + std::fmt::Debug {
    /// Mounts `overlay`; on failure, the step that failed and the errno.
    fn mount_overlay(&self, overlay: &Overlay) -> Result<(), (&'static str, nix::errno::Errno)>;
    /// Lazily unmounts `target`.
    fn unmount(&self, target: &Path) -> Result<(), nix::errno::Errno>;
    /// Whether something is mounted on `path`.
    fn is_mounted(&self, path: &Path) -> bool;
}

/// The real kernel.
#[derive(Debug)]
pub(crate) struct KernelMounts;

impl Mounts for KernelMounts {
    fn mount_overlay(&self, overlay: &Overlay) -> Result<(), (&'static str, nix::errno::Errno)> {
        // From the container's directory, so the options can be relative
        // (see `overlay_paths`).
        let dir = overlay.upper.parent().unwrap_or(Path::new("/"));
        overlay_paths::in_directory(dir, || match &overlay.idmap {
            Some(idmap) => mount_idmapped_overlay(overlay, idmap),
            None => mount_overlay(overlay),
        })
        .map_err(|e| {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN));
            ("start the mounting thread", errno)
        })?
    }

    fn unmount(&self, target: &Path) -> Result<(), nix::errno::Errno> {
        // Detach so a process still holding a file open cannot keep the
        // container from being removed; the kernel finishes when it lets go.
        umount2(target, MntFlags::MNT_DETACH)
    }

    fn is_mounted(&self, path: &Path) -> bool {
        // An overlay mount has its own device number; the empty directory
        // under it shares its parent's.
        match (fs::metadata(path), path.parent().map(fs::metadata)) {
            (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
            _ => false,
        }
    }
}

/// Whether overlayfs reads `path` as the path it is: absolute UTF-8 with no
/// option (`,`) or layer (`:`) separator, no escape (`\\`) and no control
/// character.
pub(crate) fn overlay_safe(path: &Path) -> std::result::Result<(), &'static str> {
    let text = path.to_str().ok_or("not UTF-8")?;
    if !path.is_absolute() {
        return Err("not absolute");
    }
    if text
        .chars()
        .any(|c| matches!(c, ',' | ':' | '\\') || c.is_control())
    {
        return Err(
            "holds a character overlayfs reads as syntax (',' ':' '\\' or a control character)",
        );
    }
    Ok(())
}

/// The legacy `mount(2)` data string is limited to one page; past this we
/// switch to the new mount API, which takes lower directories one by one.
const MAX_MOUNT_DATA: usize = 4000;

/// Mounts `overlay` with `volatile` (Linux 5.10+), or without it where the
/// kernel refuses the option.
///
/// `volatile` skips every sync of the upper directory. Without it, each
/// unmount of a container's root filesystem syncs the whole file system
/// holding the store (overlayfs syncs its upper layer's superblock: every
/// dirty page of the node's disk, not only the container's), 120 ms here
/// per RemoveContainer. A container's writable layer never outlives a
/// host crash in Kubernetes (its containers are made anew), so the syncs
/// it skips, its processes' fsyncs included, protect nothing.
fn mount_overlay(overlay: &Overlay) -> Result<(), (&'static str, nix::errno::Errno)> {
    static NO_VOLATILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    use std::sync::atomic::Ordering;
    if !NO_VOLATILE.load(Ordering::Relaxed) {
        // A volatile upper once unmounted keeps this marker, and overlayfs
        // refuses it ever after (its contents may predate a crash): that
        // EINVAL says nothing of the kernel.
        let remount = overlay.work.join("work/incompat/volatile").exists();
        match mount_overlay_with(overlay, true) {
            Err((_, nix::errno::Errno::EINVAL)) if !remount => {
                tracing::info!(
                    "overlayfs refuses `volatile` (Linux < 5.10): root filesystems sync at unmount"
                );
                NO_VOLATILE.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    mount_overlay_with(overlay, false)
}

/// Where a container's idmapped lower layers are mounted while its overlay
/// is made (beside `upper` and `work`).
const IDMAPPED: &str = "idmapped";

/// Mounts `overlay` over idmapped copies of its lower directories
/// (overlayfs takes idmapped layers since Linux 5.19). Each layer is
/// mounted idmapped on `<container dir>/idmapped/<n>` only until the
/// overlay holds it: overlayfs keeps private clones of its layers, so the
/// temporary mounts are detached again whatever happens, and nothing stays
/// behind on any path.
fn mount_idmapped_overlay(
    overlay: &Overlay,
    idmap: &RootFsIdmap,
) -> Result<(), (&'static str, nix::errno::Errno)> {
    let errno_of =
        |e: &std::io::Error| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let dir = overlay
        .upper
        .parent()
        .unwrap_or(&overlay.upper)
        .join(IDMAPPED);
    let mut mapped = Vec::with_capacity(overlay.lower.len());
    let made = (|| {
        for (i, lower) in overlay.lower.iter().enumerate() {
            let target = dir.join(i.to_string());
            fs::create_dir_all(&target)
                .map_err(|e| ("create idmapped layer mount point", errno_of(&e)))?;
            idmapped::mount(lower, &target, &idmap.userns, idmapped::Recursive::No)
                .map_err(|e| (e.step, errno_of(&e.errno)))?;
            mapped.push(target);
        }
        mount_overlay(&Overlay {
            lower: mapped.clone(),
            idmap: None,
            ..overlay.clone()
        })
    })();
    detach_idmapped(&dir);
    made
}

/// Detaches every idmapped layer mount under `dir` and removes the mount
/// points without walking them (see [`idmapped::detach_all`]). A crash
/// between the mounts and their detach leaves them for the container's
/// removal, which calls this first.
fn detach_idmapped(dir: &Path) {
    idmapped::detach_all(dir);
}

/// The legacy `mount(2)` data string for `overlay`.
fn mount_data(overlay: &Overlay, volatile: bool) -> String {
    let lowerdir = overlay
        .lower
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut options = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        overlay.upper.display(),
        overlay.work.display()
    );
    if volatile {
        options.push_str(",volatile");
    }
    options
}

fn mount_overlay_with(
    overlay: &Overlay,
    volatile: bool,
) -> Result<(), (&'static str, nix::errno::Errno)> {
    let overlay = &overlay_paths::shortened(overlay);
    let options = mount_data(overlay, volatile);
    if options.len() > MAX_MOUNT_DATA {
        return new_api::mount_overlay(overlay, volatile);
    }
    let mut flags = MsFlags::empty();
    if overlay.readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(
        Some("overlay"),
        &overlay.target,
        Some("overlay"),
        flags,
        Some(options.as_str()),
    )
    .map_err(|errno| ("mount overlay", errno))
}

/// fsopen/fsconfig/fsmount/move_mount (Linux 5.2+, `lowerdir+` 6.8+),
/// which nix does not wrap yet.
mod new_api {
    use nix::errno::Errno;
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

    type Failure = (&'static str, Errno);

    fn cstring(bytes: &[u8], op: &'static str) -> Result<CString, Failure> {
        CString::new(bytes).map_err(|_| (op, Errno::EINVAL))
    }

    fn fd(ret: libc::c_long, op: &'static str) -> Result<OwnedFd, Failure> {
        let raw = Errno::result(ret).map_err(|e| (op, e))?;
        // SAFETY: the syscall succeeded and returned a new descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
    }

    fn set(fs: &OwnedFd, key: &str, value: &Path) -> Result<(), Failure> {
        let key = cstring(key.as_bytes(), "overlay option")?;
        let value = cstring(value.as_os_str().as_bytes(), "overlay option")?;
        // SAFETY: valid descriptor and NUL-terminated strings that outlive
        // the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        Errno::result(ret)
            .map(drop)
            .map_err(|e| ("fsconfig overlay", e))
    }

    /// Sets the flag `key` (an option without a value).
    fn set_flag(fs: &OwnedFd, key: &str) -> Result<(), Failure> {
        let key = cstring(key.as_bytes(), "overlay option")?;
        // SAFETY: valid descriptor and a NUL-terminated string that
        // outlives the call; a flag takes no value.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_FLAG,
                key.as_ptr(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        };
        Errno::result(ret)
            .map(drop)
            .map_err(|e| ("fsconfig overlay", e))
    }

    pub(super) fn mount_overlay(overlay: &super::Overlay, volatile: bool) -> Result<(), Failure> {
        let name = cstring(b"overlay", "fsopen overlay")?;
        // SAFETY: NUL-terminated string, plain flags.
        let fs = fd(
            unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) },
            "fsopen overlay",
        )?;
        // `lowerdir+` appends top-down, like lowerdir='s left to right.
        for layer in &overlay.lower {
            set(&fs, "lowerdir+", layer)?;
        }
        set(&fs, "upperdir", &overlay.upper)?;
        set(&fs, "workdir", &overlay.work)?;
        if volatile {
            set_flag(&fs, "volatile")?;
        }
        // SAFETY: valid descriptor; CREATE takes no key or value.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        };
        Errno::result(ret).map_err(|e| ("create overlay superblock", e))?;
        let attrs = if overlay.readonly {
            MOUNT_ATTR_RDONLY
        } else {
            0
        };
        // SAFETY: valid descriptor, plain flags.
        let mnt = fd(
            unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) },
            "fsmount overlay",
        )?;
        let empty = cstring(b"", "move_mount")?;
        let target = cstring(overlay.target.as_os_str().as_bytes(), "move_mount")?;
        // SAFETY: valid descriptors and NUL-terminated strings.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mnt.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        Errno::result(ret)
            .map(drop)
            .map_err(|e| ("move_mount overlay", e))
    }
}

impl RootFsDir {
    pub(crate) fn new(root: &Path) -> Self {
        Self::with_mounts(root, Arc::new(KernelMounts))
    }

    pub(crate) fn with_mounts(root: &Path, mounts: Arc<dyn Mounts>) -> Self {
        Self {
            dir: root.join("containers"),
            tmp: root.join(CONTAINERS_TMP),
            layers: LayerStore::new(root),
            mounts,
        }
    }

    /// The directory holding every container's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates (or, after a reboot, remounts) the root filesystem of
    /// `container_id` from the layers `chain`, bottom first. Calling it again
    /// for a mounted container returns the existing mount.
    pub(crate) fn create(
        &self,
        image_id: &str,
        chain: &[ChainId],
        container_id: &str,
        readonly: bool,
        idmap: Option<&RootFsIdmap>,
    ) -> Result<RootFs> {
        let lower: Vec<PathBuf> = chain.iter().map(|c| self.layers.path(c)).collect();
        let lower = lower.as_slice();
        check_container_id(container_id)?;
        let dir = self.dir.join(container_id);
        let rootfs = RootFs {
            container_id: container_id.into(),
            image_id: image_id.into(),
            path: dir.join(MOUNT),
            readonly,
        };
        if let Some(existing) = self.get(container_id)? {
            if existing.image_id != image_id {
                return Err(Error::Mount {
                    container: container_id.into(),
                    op: "already has a root filesystem from another image",
                    errno: nix::errno::Errno::EEXIST,
                });
            }
            if self.mounts.is_mounted(&existing.path) {
                return Ok(existing);
            }
        }
        if lower.is_empty() {
            return Err(Error::Mount {
                container: container_id.into(),
                op: "image has no layers",
                errno: nix::errno::Errno::EINVAL,
            });
        }
        // After a reboot the directory exists with the container's upper
        // layer in it: a failed remount must not throw that away.
        let fresh = !dir.exists();
        let made = self.prepare_and_mount(&dir, &rootfs, lower, idmap);
        if made.is_err() && fresh {
            // Nothing half-made stays behind, and above all no image.json
            // that would keep the image "in use" forever.
            let _ = self.discard(&dir);
        }
        made?;
        Ok(rootfs)
    }

    fn prepare_and_mount(
        &self,
        dir: &Path,
        rootfs: &RootFs,
        lower: &[PathBuf],
        idmap: Option<&RootFsIdmap>,
    ) -> Result<()> {
        for sub in ["upper", "work", MOUNT] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io(&p, "create"))?;
        }
        if let Some(RootFsIdmap {
            root: (uid, gid), ..
        }) = idmap
        {
            // The overlay's root directory is the upper one: the
            // container's root must own it to write at `/`.
            let upper = dir.join("upper");
            std::os::unix::fs::chown(&upper, Some(*uid), Some(*gid))
                .map_err(io(&upper, "chown"))?;
        }
        let usage = serde_json::to_vec(&Usage {
            image_id: rootfs.image_id.clone(),
            readonly: rootfs.readonly,
        })
        .map_err(|source| Error::Metadata {
            path: dir.join(USAGE),
            source,
        })?;
        // Recorded before the mount: a crash in between leaves the image
        // marked in use (safe), never a mount of an unrecorded image.
        write_atomic(&self.tmp, &dir.join(USAGE), &usage)?;
        let overlay = Overlay {
            target: rootfs.path.clone(),
            lower: lower.iter().rev().cloned().collect(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            readonly: rootfs.readonly,
            idmap: idmap.cloned(),
        };
        self.check(&overlay, &rootfs.container_id)?;
        self.mounts
            .mount_overlay(&overlay)
            .map_err(|(op, errno)| Error::Mount {
                container: rootfs.container_id.clone(),
                op,
                errno,
            })
    }

    /// Refuses an overlay whose lower directories are not layers of this
    /// store, or whose paths overlayfs would misread. Chain ids make neither
    /// possible; this keeps it so whatever changes around it.
    fn check(&self, overlay: &Overlay, container: &str) -> Result<()> {
        let unsafe_path = |role, path: &Path, why| Error::UnsafeMountPath {
            container: container.into(),
            role,
            path: path.to_path_buf(),
            why,
        };
        for lower in &overlay.lower {
            let in_store = lower.parent() == Some(self.layers.dir())
                && lower
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(ChainId::from_dir_name)
                    .is_some();
            if !in_store {
                return Err(unsafe_path("lowerdir", lower, "not a layer of the store"));
            }
            if !fs::symlink_metadata(lower).is_ok_and(|m| m.is_dir()) {
                return Err(unsafe_path("lowerdir", lower, "not a directory"));
            }
        }
        let all = [("upperdir", &overlay.upper), ("workdir", &overlay.work)];
        let lowers = overlay.lower.iter().map(|l| ("lowerdir", l));
        for (role, path) in lowers.chain(all) {
            if let Err(why) = overlay_safe(path) {
                return Err(unsafe_path(role, path, why));
            }
        }
        Ok(())
    }

    /// Moves `dir` out of `containers/` (so it stops counting as an image
    /// user at once) and deletes it.
    fn discard(&self, dir: &Path) -> Result<()> {
        let doomed = self.move_out(dir)?;
        fs::remove_dir_all(&doomed).map_err(io(&doomed, "remove"))
    }

    /// Moves container directory `dir` into `containers/.tmp/`, its idmapped layer
    /// mounts detached first; returns where it went.
    fn move_out(&self, dir: &Path) -> Result<PathBuf> {
        detach_idmapped(&dir.join(IDMAPPED));
        let doomed = temp::path(&self.tmp, "removed-container");
        fs::rename(dir, &doomed).map_err(io(dir, "move out"))?;
        Ok(doomed)
    }

    /// The recorded root filesystem of `container_id`, if any.
    /// Bytes and inodes in `container_id`'s writable (upper) layer; `None`
    /// when it has no root filesystem. Symlinks are not followed and hard
    /// links inside the layer are counted once.
    pub(crate) fn upper_usage(&self, container_id: &str) -> Result<Option<(u64, u64)>> {
        check_container_id(container_id)?;
        let upper = self.dir.join(container_id).join("upper");
        if !upper.is_dir() {
            return Ok(None);
        }
        let (mut bytes, mut inodes) = (0u64, 0u64);
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![upper];
        while let Some(dir) = stack.pop() {
            // A directory vanishing under us (the container deletes it) is
            // not an error for a usage figure.
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                use std::os::unix::fs::MetadataExt;
                if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
                    continue;
                }
                inodes += 1;
                bytes += meta.blocks() * 512;
                if meta.is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        Ok(Some((bytes, inodes)))
    }

    pub(crate) fn get(&self, container_id: &str) -> Result<Option<RootFs>> {
        check_container_id(container_id)?;
        let dir = self.dir.join(container_id);
        let path = dir.join(USAGE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path, "read")(e)),
        };
        let usage: Usage =
            serde_json::from_slice(&bytes).map_err(|source| Error::Metadata { path, source })?;
        Ok(Some(RootFs {
            container_id: container_id.into(),
            image_id: usage.image_id,
            path: dir.join(MOUNT),
            readonly: usage.readonly,
        }))
    }

    /// Unmounts and deletes the root filesystem of `container_id`; absent is
    /// fine.
    #[cfg(test)]
    pub(crate) fn remove(&self, container_id: &str) -> Result<()> {
        match self.take_out(container_id)? {
            Some(doomed) => fs::remove_dir_all(&doomed).map_err(io(&doomed, "remove")),
            None => Ok(()),
        }
    }

    /// [`RootFsDir::remove`] up to the point where the container no longer
    /// has a root filesystem: unmounted and moved out of `containers/` into
    /// `tmp/` (which [`crate::ImageStore::open`] empties). Returns where it
    /// went, for the caller to delete when it likes; `None` if there was
    /// nothing.
    pub(crate) fn take_out(&self, container_id: &str) -> Result<Option<PathBuf>> {
        check_container_id(container_id)?;
        let dir = self.dir.join(container_id);
        if !dir.exists() {
            return Ok(None);
        }
        let mountpoint = dir.join(MOUNT);
        // Stacked mounts (a create raced with another) come off one by one.
        while self.mounts.is_mounted(&mountpoint) {
            self.mounts
                .unmount(&mountpoint)
                .map_err(|errno| Error::Mount {
                    container: container_id.into(),
                    op: "unmount",
                    errno,
                })?;
        }
        // Out of containers/ first: a crash mid-way must not leave a
        // half-deleted container that still counts as an image user.
        self.move_out(&dir).map(Some)
    }

    /// Every container that has a root filesystem here, mounted or not.
    pub(crate) fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(io(&self.dir, "list")(e)),
        };
        for entry in entries.filter_map(|e| e.ok()) {
            if let Ok(name) = entry.file_name().into_string() {
                if check_container_id(&name).is_ok() {
                    ids.push(name);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Containers whose root filesystem comes from `image_id`.
    pub(crate) fn users_of(&self, image_id: &str) -> Result<Vec<String>> {
        let mut users = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if let Ok(Some(rootfs)) = self.get(&name) {
                if rootfs.image_id == image_id {
                    users.push(name);
                }
            }
        }
        users.sort();
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recording double for [`Mounts`]: remembers every call, keeps a
    /// set of "mounted" targets, and fails mounts on request.
    #[derive(Debug, Default)]
    struct Recording {
        calls: std::sync::Mutex<Vec<Call>>,
        mounted: std::sync::Mutex<Vec<PathBuf>>,
        fail_mount: Option<nix::errno::Errno>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Mount(Overlay),
        Unmount(PathBuf),
    }

    impl Mounts for Recording {
        fn mount_overlay(
            &self,
            overlay: &Overlay,
        ) -> Result<(), (&'static str, nix::errno::Errno)> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Mount(overlay.clone()));
            if let Some(errno) = self.fail_mount {
                return Err(("mount overlay", errno));
            }
            self.mounted.lock().unwrap().push(overlay.target.clone());
            Ok(())
        }

        fn unmount(&self, target: &Path) -> Result<(), nix::errno::Errno> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Unmount(target.to_path_buf()));
            let mut mounted = self.mounted.lock().unwrap();
            let at = mounted
                .iter()
                .rposition(|m| m == target)
                .ok_or(nix::errno::Errno::EINVAL)?;
            mounted.remove(at);
            Ok(())
        }

        fn is_mounted(&self, path: &Path) -> bool {
            self.mounted.lock().unwrap().iter().any(|m| m == path)
        }
    }

    /// A layer directory under `root/layers` for chain id `c…c`.
    fn layer(root: &Path, c: char) -> ChainId {
        let chain = ChainId::from_dir_name(&c.to_string().repeat(64)).unwrap();
        fs::create_dir_all(LayerStore::new(root).path(&chain)).unwrap();
        chain
    }

    fn recorded(
        fail_mount: Option<nix::errno::Errno>,
    ) -> (tempfile::TempDir, RootFsDir, Arc<Recording>) {
        let root = tempfile::tempdir().unwrap();
        for d in ["containers", "tmp", CONTAINERS_TMP, "layers"] {
            fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let mounts = Arc::new(Recording {
            fail_mount,
            ..Default::default()
        });
        let dir = RootFsDir::with_mounts(root.path(), mounts.clone());
        (root, dir, mounts)
    }

    #[test]
    fn layers_are_handed_to_overlayfs_top_first() {
        let (root, dir, mounts) = recorded(None);
        let lower: Vec<ChainId> = ['b', 'c', 'd'].map(|c| layer(root.path(), c)).into();
        let rootfs = dir.create("sha256:x", &lower, "c", true, None).unwrap();
        let container = root.path().join("containers/c");
        let path = |c: char| root.path().join("layers").join(c.to_string().repeat(64));
        assert_eq!(
            *mounts.calls.lock().unwrap(),
            [Call::Mount(Overlay {
                target: container.join("rootfs"),
                lower: vec![path('d'), path('c'), path('b')],
                upper: container.join("upper"),
                work: container.join("work"),
                readonly: true,
                idmap: None,
            })]
        );
        assert_eq!(rootfs.path, container.join("rootfs"));
        // Mounted already: no second mount.
        dir.create("sha256:x", &lower, "c", true, None).unwrap();
        assert_eq!(mounts.calls.lock().unwrap().len(), 1);
        let err = dir
            .create("sha256:other", &lower, "c", true, None)
            .unwrap_err();
        assert!(err.to_string().contains("another image"), "{err}");
    }

    #[test]
    fn a_failed_mount_leaves_nothing_and_no_user() {
        let (root, dir, _mounts) = recorded(Some(nix::errno::Errno::ENODEV));
        let err = dir
            .create("sha256:x", &[layer(root.path(), 'a')], "c", false, None)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "rootfs of container c: mount overlay: ENODEV: No such device"
        );
        assert!(!root.path().join("containers/c").exists());
        assert!(dir.users_of("sha256:x").unwrap().is_empty());
        assert_eq!(
            fs::read_dir(root.path().join(CONTAINERS_TMP))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_failed_remount_keeps_the_upper_layer() {
        let (root, dir, mounts) = recorded(None);
        let l = [layer(root.path(), 'a')];
        dir.create("sha256:x", &l, "c", false, None).unwrap();
        let upper_file = root.path().join("containers/c/upper/data");
        fs::write(&upper_file, b"container state").unwrap();
        // As after a reboot: nothing mounted any more, and mounting fails.
        mounts.mounted.lock().unwrap().clear();
        let failing = RootFsDir::with_mounts(
            root.path(),
            Arc::new(Recording {
                fail_mount: Some(nix::errno::Errno::EIO),
                ..Default::default()
            }),
        );
        assert!(failing.create("sha256:x", &l, "c", false, None).is_err());
        assert_eq!(fs::read(&upper_file).unwrap(), b"container state");
        assert_eq!(dir.users_of("sha256:x").unwrap(), ["c".to_string()]);
    }

    #[test]
    fn remove_unmounts_every_stacked_mount_before_deleting() {
        let (root, dir, mounts) = recorded(None);
        dir.create("sha256:x", &[layer(root.path(), 'a')], "c", false, None)
            .unwrap();
        let target = root.path().join("containers/c/rootfs");
        mounts.mounted.lock().unwrap().push(target.clone());
        dir.remove("c").unwrap();
        let calls = mounts.calls.lock().unwrap().clone();
        assert_eq!(
            calls[1..],
            [Call::Unmount(target.clone()), Call::Unmount(target)]
        );
        assert!(!root.path().join("containers/c").exists());
        dir.remove("c").unwrap();
        assert_eq!(mounts.calls.lock().unwrap().len(), 3, "absent: no calls");
    }

    #[test]
    fn container_ids_are_checked() {
        for bad in ["", "..", ".x", "a/b", "a b", &"x".repeat(200)] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
        check_container_id("abc-123_x.y").unwrap();
    }

    fn setup() -> (tempfile::TempDir, RootFsDir, Vec<ChainId>) {
        let root = tempfile::tempdir().unwrap();
        for d in ["containers", "tmp", CONTAINERS_TMP] {
            fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let lower = vec![layer(root.path(), '1'), layer(root.path(), '2')];
        let layers = LayerStore::new(root.path());
        fs::write(layers.path(&lower[0]).join("base"), b"1").unwrap();
        fs::write(layers.path(&lower[0]).join("shadowed"), b"1").unwrap();
        fs::write(layers.path(&lower[1]).join("shadowed"), b"2").unwrap();
        let dir = RootFsDir::new(root.path());
        (root, dir, lower)
    }

    #[test]
    fn overlay_is_writable_stacked_and_removed() {
        let (_root, dir, lower) = setup();
        let id = format!("sha256:{}", "a".repeat(64));
        let rootfs = dir.create(&id, &lower, "c1", false, None).unwrap();
        assert_eq!(fs::read(rootfs.path.join("base")).unwrap(), b"1");
        assert_eq!(fs::read(rootfs.path.join("shadowed")).unwrap(), b"2");
        fs::write(rootfs.path.join("new"), b"n").unwrap();
        assert!(
            !LayerStore::new(_root.path())
                .path(&lower[1])
                .join("new")
                .exists(),
            "writes must go to the upper dir"
        );
        // Again: the same mount, not a second one on top.
        assert_eq!(dir.create(&id, &lower, "c1", false, None).unwrap(), rootfs);
        assert_eq!(dir.users_of(&id).unwrap(), vec!["c1".to_string()]);
        dir.remove("c1").unwrap();
        dir.remove("c1").unwrap();
        assert!(!rootfs.path.exists());
        assert!(dir.users_of(&id).unwrap().is_empty());
    }

    /// A process in a new user namespace mapping 0..65536 to 200000..;
    /// killed and reaped on drop.
    struct UserNs(std::process::Child);

    impl UserNs {
        fn new() -> UserNs {
            let child = std::process::Command::new("unshare")
                .args(["--user", "sleep", "60"])
                .spawn()
                .unwrap();
            let pid = child.id();
            let userns = UserNs(child);
            let ns = |p: &str| fs::read_link(format!("/proc/{p}/ns/user")).ok();
            for _ in 0..200 {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "sleep" && ns(&pid.to_string()) != ns("self") {
                    for file in ["uid_map", "gid_map"] {
                        fs::write(format!("/proc/{pid}/{file}"), "0 200000 65536\n").unwrap();
                    }
                    return userns;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("no user namespace for {pid}");
        }
    }

    impl Drop for UserNs {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn an_idmapped_overlay_belongs_to_the_mapped_root_and_copies_up_mapped() {
        let (root, dir, lower) = setup();
        let userns = UserNs::new();
        let idmap = RootFsIdmap {
            userns: format!("/proc/{}/ns/user", userns.0.id()).into(),
            root: (200_000, 200_000),
        };
        let id = format!("sha256:{}", "9".repeat(64));
        let rootfs = dir.create(&id, &lower, "u1", false, Some(&idmap)).unwrap();
        let uid = |p: &Path| fs::metadata(p).unwrap().uid();
        assert_eq!(uid(&rootfs.path), 200_000, "the writable root");
        assert_eq!(uid(&rootfs.path.join("base")), 200_000, "a layer's file");
        // Appending copies the file up: owned by the mapped root on disk.
        fs::OpenOptions::new()
            .append(true)
            .open(rootfs.path.join("base"))
            .unwrap();
        fs::write(rootfs.path.join("base"), b"changed").unwrap();
        let upper = root.path().join("containers/u1/upper");
        assert_eq!(uid(&upper.join("base")), 200_000);
        let layer = LayerStore::new(root.path()).path(&lower[0]);
        assert_eq!(uid(&layer.join("base")), 0, "the layer is never chowned");
        assert_eq!(fs::read(layer.join("base")).unwrap(), b"1");
        // The temporary idmapped layer mounts are gone.
        assert!(!root.path().join("containers/u1").join(IDMAPPED).exists());
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.contains(IDMAPPED))
            .collect();
        assert!(points.is_empty(), "{points:?}");
        dir.remove("u1").unwrap();
    }

    #[test]
    fn removal_after_a_crash_mid_mount_detaches_layer_mounts_before_deleting() {
        let (root, dir, lower) = setup();
        let id = format!("sha256:{}", "7".repeat(64));
        dir.create(&id, &lower, "u3", false, None).unwrap();
        // As a crash between an idmapped layer's mount and its detach leaves it.
        let layer = LayerStore::new(root.path()).path(&lower[0]);
        let left = root.path().join("containers/u3").join(IDMAPPED).join("0");
        fs::create_dir_all(&left).unwrap();
        mount(
            Some(&layer),
            &left,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        dir.remove("u3").unwrap();
        assert_eq!(
            fs::read(layer.join("base")).unwrap(),
            b"1",
            "the layer survives"
        );
        assert!(!root.path().join("containers/u3").exists());
    }

    #[test]
    fn a_bad_user_namespace_mounts_nothing_and_leaves_nothing() {
        let (root, dir, lower) = setup();
        let idmap = RootFsIdmap {
            userns: "/proc/self/ns/net".into(),
            root: (200_000, 200_000),
        };
        let id = format!("sha256:{}", "8".repeat(64));
        let err = dir
            .create(&id, &lower, "u2", false, Some(&idmap))
            .unwrap_err();
        assert!(err.to_string().contains("mount_setattr"), "{err}");
        assert!(!root.path().join("containers/u2").exists());
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains("containers/u2"), "{mounts}");
    }

    #[test]
    fn many_layers_beyond_the_mount_data_limit() {
        let (root, dir, _) = setup();
        // 80 layers with long paths: ~8 KiB of lowerdir, twice a page.
        let layers = LayerStore::new(root.path());
        let lower: Vec<ChainId> = (0..80)
            .map(|i| {
                let chain = ChainId::from_dir_name(&format!("{i:02x}").repeat(64)).unwrap();
                let layer = layers.path(&chain);
                fs::create_dir_all(&layer).unwrap();
                fs::write(layer.join("which"), format!("{i}")).unwrap();
                fs::write(layer.join(format!("only-{i}")), b"").unwrap();
                chain
            })
            .collect();
        let id = format!("sha256:{}", "e".repeat(64));
        let rootfs = dir.create(&id, &lower, "deep", true, None).unwrap();
        assert_eq!(fs::read_to_string(rootfs.path.join("which")).unwrap(), "79");
        assert!(rootfs.path.join("only-0").exists());
        assert!(fs::write(rootfs.path.join("x"), b"").is_err(), "read-only");
        dir.remove("deep").unwrap();
        assert!(!rootfs.path.exists());
    }

    #[test]
    fn root_filesystems_come_and_go_inside_a_containers_mount_of_its_own() {
        let (root, dir, lower) = setup();
        let tree = crate::rootfs_tree::isolate(&root.path().join("containers"))
            .unwrap()
            .unwrap();
        // Records and removals rename within `containers/`: a rename
        // across its mount would fail (EXDEV).
        let id = format!("sha256:{}", "c".repeat(64));
        let rootfs = dir.create(&id, &lower, "c1", false, None).unwrap();
        assert_eq!(rootfs.path, tree.mount_point("c1"));
        assert_eq!(dir.users_of(&id).unwrap(), ["c1".to_string()]);
        dir.remove("c1").unwrap();
        assert!(!rootfs.path.exists());
        umount2(tree.dir(), MntFlags::MNT_DETACH).unwrap();
    }

    #[test]
    fn mount_table_lines_name_layers_relative_to_the_container() {
        let (root, dir, lower) = setup();
        let id = format!("sha256:{}", "f".repeat(64));
        let rootfs = dir.create(&id, &lower, "short", false, None).unwrap();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let target = rootfs.path.to_str().unwrap();
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(target))
            .unwrap_or_else(|| panic!("{target} not in {mounts}"));
        let layers = LayerStore::new(root.path());
        let layer = |c: &ChainId| {
            let path = layers.path(c);
            format!(
                "../../layers/{}",
                path.file_name().unwrap().to_str().unwrap()
            )
        };
        let expected = format!(
            "lowerdir={}:{},upperdir=upper,workdir=work",
            layer(&lower[1]),
            layer(&lower[0])
        );
        assert!(line.contains(&expected), "{line}");
        assert!(
            !line.contains(root.path().join("layers").to_str().unwrap()),
            "{line}"
        );
        assert_eq!(fs::read(rootfs.path.join("shadowed")).unwrap(), b"2");
        dir.remove("short").unwrap();
    }

    #[test]
    fn readonly_rootfs_refuses_writes() {
        let (_root, dir, lower) = setup();
        let id = format!("sha256:{}", "b".repeat(64));
        let rootfs = dir.create(&id, &lower, "ro", true, None).unwrap();
        let err = fs::write(rootfs.path.join("new"), b"n").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        dir.remove("ro").unwrap();
    }

    #[test]
    fn lower_directories_outside_the_store_are_refused() {
        let (root, dir, mounts) = recorded(None);
        let good = LayerStore::new(root.path()).path(&layer(root.path(), 'a'));
        let overlay = |lower: PathBuf| Overlay {
            target: root.path().join("containers/c/rootfs"),
            lower: vec![lower],
            upper: root.path().join("containers/c/upper"),
            work: root.path().join("containers/c/work"),
            readonly: false,
            idmap: None,
        };
        dir.check(&overlay(good.clone()), "c").unwrap();
        let link = root.path().join("layers").join("b".repeat(64));
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        for bad in [
            PathBuf::from("/etc"),
            root.path().join("layers/../layers").join("a".repeat(64)),
            root.path().join("layers/x"),
            good.join("sub"),
            link,
        ] {
            let err = dir.check(&overlay(bad.clone()), "c").unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::UnsafeMountPath {
                        role: "lowerdir",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
        assert!(mounts.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn paths_overlayfs_would_misread_are_refused_before_mounting() {
        for name in ["a,upperdir=x", "a:b", "a\\b", "a\nb"] {
            let parent = tempfile::tempdir().unwrap();
            let root = parent.path().join(name);
            for d in ["containers", "tmp", CONTAINERS_TMP, "layers"] {
                fs::create_dir_all(root.join(d)).unwrap();
            }
            let mounts = Arc::new(Recording::default());
            let dir = RootFsDir::with_mounts(&root, mounts.clone());
            let err = dir
                .create("sha256:x", &[layer(&root, 'a')], "c", false, None)
                .unwrap_err();
            assert!(
                matches!(err, Error::UnsafeMountPath { .. }),
                "{name}: {err}"
            );
            assert!(mounts.calls.lock().unwrap().is_empty(), "{name}");
            assert!(!root.join("containers/c").exists(), "{name}");
        }
        assert!(overlay_safe(Path::new("relative")).is_err());
        assert!(overlay_safe(Path::new("/var/lib/cri-server/images/layers/ab")).is_ok());
    }
}
