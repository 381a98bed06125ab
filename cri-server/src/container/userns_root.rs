//! Where a container in a user namespace finds its root filesystem.
//!
//! runc resolves `root.path` from inside the container's user namespace,
//! as the pod's mapped root: an unprivileged host uid, which may not pass
//! through the image store (0700, so that no local user reaches a layer's
//! setuid binaries: cf. CVE-2021-41091). So the root filesystem is bound
//! onto `<container dir>/userns-root/rootfs`, where `userns-root` is 0700
//! and owned by the mapped root: that uid (the container's own root) and
//! host root may pass, nobody else. The same kind of directory guards the
//! staged volumes (`container::userns_volumes`).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The directory, under a container's directory, only its mapped root
/// may pass.
const DIR: &str = "userns-root";

/// Makes `dir` (and its parents) and gives it to the mapped root, mode
/// 0700: a directory only that uid and host root may pass through.
pub fn private_to(dir: &Path, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
}

/// Binds `rootfs` where the mapped root `root` can reach it, under
/// container directory `container_dir`; returns the path for runc.
pub async fn bind(container_dir: &Path, rootfs: &Path, root: (u32, u32)) -> Result<PathBuf> {
    let dir = container_dir.join(DIR);
    let target = dir.join("rootfs");
    let source = rootfs.to_path_buf();
    let what = format!("root filesystem bind {}", target.display());
    tokio::task::spawn_blocking(move || {
        private_to(&dir, root)?;
        std::fs::create_dir_all(&target)?;
        nix::mount::mount(
            Some(&source),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok::<_, std::io::Error>(target)
    })
    .await
    .map_err(|e| Error::internal(&what, e))?
    .map_err(|e| Error::internal(&what, e))
}

/// Detaches the bind under `container_dir` and removes its mount point,
/// never recursively (the bind is the container's root filesystem).
/// Idempotent.
pub async fn release(container_dir: &Path) {
    let dir = container_dir.join(DIR);
    let _ = tokio::task::spawn_blocking(move || idmapped::detach_all(&dir)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn only_the_mapped_root_may_pass_and_release_leaves_the_root_filesystem() {
        let scratch = tempfile::tempdir().unwrap();
        let rootfs = scratch.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        std::fs::write(rootfs.join("precious"), "x").unwrap();
        let container = scratch.path().join("c1");
        let target = bind(&container, &rootfs, (165_536, 165_536)).await.unwrap();
        assert!(target.join("precious").exists());
        let guard = std::fs::metadata(container.join(DIR)).unwrap();
        assert_eq!((guard.uid(), guard.mode() & 0o777), (165_536, 0o700));
        release(&container).await;
        release(&container).await;
        assert!(!container.join(DIR).exists());
        assert!(rootfs.join("precious").exists(), "never walked into");
    }
}
