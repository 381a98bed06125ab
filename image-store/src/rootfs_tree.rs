//! The directory every container's root filesystem is mounted under, as a
//! private mount of its own.
//!
//! One overlay per container puts hundreds of mounts in the host's table
//! on a busy node, and runc pays for each of them at every `create`: it
//! reads the table four times, copies it into the container's mount
//! namespace and detaches it again. As a mount of its own, `containers/`
//! takes all of them out of a process's view in one detach, so a runtime
//! can be started in a namespace that keeps only its own container's root
//! filesystem (`oci-monitor --hide-mounts`). Private, so none of those
//! mounts or detaches propagates anywhere.

use crate::error::{io, Result};
use nix::mount::{mount, MsFlags};
use std::path::{Path, PathBuf};

/// `containers/`, made a private mount of itself: see the module docs.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(store: image_store::ImageStore) -> image_store::Result<()> {
/// if let Some(tree) = store.isolate_root_filesystems().await? {
///     let own = tree.mount_point("c1");
///     println!("detach {} and keep {}", tree.dir().display(), own.display());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFsTree {
    dir: PathBuf,
}

impl RootFsTree {
    /// The mount holding every container's root filesystem.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where container `container_id`'s root filesystem is mounted.
    pub fn mount_point(&self, container_id: &str) -> PathBuf {
        self.dir.join(container_id).join(crate::rootfs::MOUNT)
    }
}

/// Makes `dir` a private mount of itself, unless something is already
/// mounted below it that a bind would hide (root filesystems a daemon
/// without this mount left running): then `None`, until the next boot.
pub(crate) fn isolate(dir: &Path) -> Result<Option<RootFsTree>> {
    std::fs::create_dir_all(dir).map_err(io(dir, "create"))?;
    let dir = dir.canonicalize().map_err(io(dir, "resolve"))?;
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io("/proc/self/mountinfo", "read"))?;
    let points: Vec<PathBuf> = netns::mountinfo::parse(&table)
        .into_iter()
        .map(|m| m.mount_point)
        .collect();
    let mounted = points.contains(&dir);
    if !mounted && points.iter().any(|p| p.starts_with(&dir)) {
        tracing::info!(
            dir = %dir.display(),
            "root filesystems mounted before this daemon kept them under a mount of their own: \
             runtimes see every one of them until the next boot"
        );
        return Ok(None);
    }
    let errno = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
    if !mounted {
        mount(
            Some(&dir),
            &dir,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io(&dir, "bind-mount onto itself")(errno(e)))?;
    }
    mount(
        None::<&str>,
        &dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| io(&dir, "make a private mount")(errno(e)))?;
    Ok(Some(RootFsTree { dir }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount table's lines for mounts at `dir`.
    fn mount_lines(dir: &Path) -> Vec<String> {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let at_dir = |l: &&str| {
            let mounts = netns::mountinfo::parse(l);
            mounts.first().is_some_and(|m| m.mount_point == dir)
        };
        table.lines().filter(at_dir).map(str::to_string).collect()
    }

    #[test]
    fn the_directory_becomes_one_private_mount_and_stays_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("containers");
        let tree = isolate(&dir).unwrap().expect("nothing below: isolated");
        let dir = dir.canonicalize().unwrap();
        assert_eq!(tree.dir(), dir);
        assert_eq!(tree.mount_point("c1"), dir.join("c1/rootfs"));
        // A restarted daemon finds it mounted and mounts nothing more.
        assert_eq!(isolate(&dir).unwrap(), Some(tree));
        let lines = mount_lines(&dir);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(!lines[0].contains("shared:"), "private: {lines:?}");
        nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }

    #[test]
    fn mounts_already_below_are_never_hidden() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("containers");
        let below = dir.join("c1/rootfs");
        std::fs::create_dir_all(&below).unwrap();
        mount(
            Some("tmpfs"),
            &below,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        assert_eq!(isolate(&dir).unwrap(), None);
        assert!(mount_lines(&dir.canonicalize().unwrap()).is_empty());
        nix::mount::umount2(&below, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
}
