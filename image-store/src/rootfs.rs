//! Per-container root filesystems: an overlayfs mount with the image's
//! layers as lower directories and a private upper and work directory, all
//! under `containers/<container id>/`.
//!
//! The directory also records which image the container uses
//! (`image.json`), written before the mount: that file is how the store
//! refuses to remove an image in use, and it survives daemon restarts.

use crate::error::{io, Error, Result};
use crate::metadata::write_atomic;
use crate::temp;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
}

const USAGE: &str = "image.json";
const MOUNT: &str = "rootfs";

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

fn is_mounted(path: &Path) -> bool {
    // An overlay mount has its own device number; the empty directory under
    // it shares its parent's.
    match (fs::metadata(path), path.parent().map(fs::metadata)) {
        (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
        _ => false,
    }
}

/// The legacy `mount(2)` data string is limited to one page; past this we
/// switch to the new mount API, which takes lower directories one by one.
const MAX_MOUNT_DATA: usize = 4000;

/// Mounts overlayfs on `target`; `lower` is bottom first, as images list
/// layers.
fn mount_overlay(
    target: &Path,
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    readonly: bool,
) -> Result<(), (&'static str, nix::errno::Errno)> {
    let lowerdir = lower
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let options = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    if options.len() > MAX_MOUNT_DATA {
        return new_api::mount_overlay(target, lower, upper, work, readonly);
    }
    let mut flags = MsFlags::empty();
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(
        Some("overlay"),
        target,
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
    use std::path::{Path, PathBuf};

    const FSOPEN_CLOEXEC: libc::c_uint = 1;
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

    pub(super) fn mount_overlay(
        target: &Path,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        readonly: bool,
    ) -> Result<(), Failure> {
        let name = cstring(b"overlay", "fsopen overlay")?;
        // SAFETY: NUL-terminated string, plain flags.
        let fs = fd(
            unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) },
            "fsopen overlay",
        )?;
        // `lowerdir+` appends top-down, like the leftmost entry of lowerdir=.
        for layer in lower.iter().rev() {
            set(&fs, "lowerdir+", layer)?;
        }
        set(&fs, "upperdir", upper)?;
        set(&fs, "workdir", work)?;
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
        let attrs = if readonly { MOUNT_ATTR_RDONLY } else { 0 };
        // SAFETY: valid descriptor, plain flags.
        let mnt = fd(
            unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) },
            "fsmount overlay",
        )?;
        let empty = cstring(b"", "move_mount")?;
        let target = cstring(target.as_os_str().as_bytes(), "move_mount")?;
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
        Self {
            dir: root.join("containers"),
            tmp: root.join("tmp"),
        }
    }

    /// Creates (or, after a reboot, remounts) the root filesystem of
    /// `container_id`. `lower` lists layer directories bottom first. Calling
    /// it again for a mounted container returns the existing mount.
    pub(crate) fn create(
        &self,
        image_id: &str,
        lower: &[PathBuf],
        container_id: &str,
        readonly: bool,
    ) -> Result<RootFs> {
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
            if is_mounted(&existing.path) {
                return Ok(existing);
            }
        }
        for sub in ["upper", "work", MOUNT] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io(&p, "create"))?;
        }
        let usage = serde_json::to_vec(&Usage {
            image_id: image_id.into(),
            readonly,
        })
        .map_err(|source| Error::Metadata {
            path: dir.join(USAGE),
            source,
        })?;
        write_atomic(&self.tmp, &dir.join(USAGE), &usage)?;
        if lower.is_empty() {
            return Err(Error::Mount {
                container: container_id.into(),
                op: "image has no layers",
                errno: nix::errno::Errno::EINVAL,
            });
        }
        let upper = dir.join("upper");
        let work = dir.join("work");
        mount_overlay(&rootfs.path, lower, &upper, &work, readonly).map_err(|(op, errno)| {
            Error::Mount {
                container: container_id.into(),
                op,
                errno,
            }
        })?;
        Ok(rootfs)
    }

    /// The recorded root filesystem of `container_id`, if any.
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
    pub(crate) fn remove(&self, container_id: &str) -> Result<()> {
        check_container_id(container_id)?;
        let dir = self.dir.join(container_id);
        if !dir.exists() {
            return Ok(());
        }
        let mountpoint = dir.join(MOUNT);
        // Detach so a process still holding a file open cannot keep the
        // container from being removed; the kernel finishes when it lets go.
        while is_mounted(&mountpoint) {
            umount2(&mountpoint, MntFlags::MNT_DETACH).map_err(|errno| Error::Mount {
                container: container_id.into(),
                op: "unmount",
                errno,
            })?;
        }
        // Out of containers/ first: a crash mid-way must not leave a
        // half-deleted container that still counts as an image user.
        let doomed = temp::path(&self.tmp, "removed-container");
        fs::rename(&dir, &doomed).map_err(io(&dir, "move out"))?;
        fs::remove_dir_all(&doomed).map_err(io(&doomed, "remove"))
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

    #[test]
    fn container_ids_are_checked() {
        for bad in ["", "..", ".x", "a/b", "a b", &"x".repeat(200)] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
        check_container_id("abc-123_x.y").unwrap();
    }

    fn setup() -> (tempfile::TempDir, RootFsDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().unwrap();
        for d in ["containers", "tmp", "l1", "l2"] {
            fs::create_dir_all(root.path().join(d)).unwrap();
        }
        fs::write(root.path().join("l1/base"), b"1").unwrap();
        fs::write(root.path().join("l1/shadowed"), b"1").unwrap();
        fs::write(root.path().join("l2/shadowed"), b"2").unwrap();
        let lower = vec![root.path().join("l1"), root.path().join("l2")];
        let dir = RootFsDir::new(root.path());
        (root, dir, lower)
    }

    #[test]
    fn overlay_is_writable_stacked_and_removed() {
        let (_root, dir, lower) = setup();
        let id = format!("sha256:{}", "a".repeat(64));
        let rootfs = dir.create(&id, &lower, "c1", false).unwrap();
        assert_eq!(fs::read(rootfs.path.join("base")).unwrap(), b"1");
        assert_eq!(fs::read(rootfs.path.join("shadowed")).unwrap(), b"2");
        fs::write(rootfs.path.join("new"), b"n").unwrap();
        assert!(
            !lower[1].join("new").exists(),
            "writes must go to the upper dir"
        );
        // Again: the same mount, not a second one on top.
        assert_eq!(dir.create(&id, &lower, "c1", false).unwrap(), rootfs);
        assert_eq!(dir.users_of(&id).unwrap(), vec!["c1".to_string()]);
        dir.remove("c1").unwrap();
        dir.remove("c1").unwrap();
        assert!(!rootfs.path.exists());
        assert!(dir.users_of(&id).unwrap().is_empty());
    }

    #[test]
    fn many_layers_beyond_the_mount_data_limit() {
        let (root, dir, _) = setup();
        // 80 layers with long paths: ~8 KiB of lowerdir, twice a page.
        let lower: Vec<PathBuf> = (0..80)
            .map(|i| {
                let layer = root.path().join(format!("{i:02}-{}", "l".repeat(90)));
                fs::create_dir_all(&layer).unwrap();
                fs::write(layer.join("which"), format!("{i}")).unwrap();
                fs::write(layer.join(format!("only-{i}")), b"").unwrap();
                layer
            })
            .collect();
        let id = format!("sha256:{}", "e".repeat(64));
        let rootfs = dir.create(&id, &lower, "deep", true).unwrap();
        assert_eq!(fs::read_to_string(rootfs.path.join("which")).unwrap(), "79");
        assert!(rootfs.path.join("only-0").exists());
        assert!(fs::write(rootfs.path.join("x"), b"").is_err(), "read-only");
        dir.remove("deep").unwrap();
        assert!(!rootfs.path.exists());
    }

    #[test]
    fn readonly_rootfs_refuses_writes() {
        let (_root, dir, lower) = setup();
        let id = format!("sha256:{}", "b".repeat(64));
        let rootfs = dir.create(&id, &lower, "ro", true).unwrap();
        let err = fs::write(rootfs.path.join("new"), b"n").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        dir.remove("ro").unwrap();
    }
}
