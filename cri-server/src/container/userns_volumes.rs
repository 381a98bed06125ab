//! Volumes of pods with a user namespace: idmapped ones, and read-only
//! ones that must stay read-only.
//!
//! For a pod with a user namespace, kubelet sets `uid_mappings` and
//! `gid_mappings` on the volumes it wants idmapped (KEP-127: the pod's own
//! mapping), so files kubelet wrote as host root (a ConfigMap, a Secret)
//! are owned by the pod's root inside. Debian's runc 1.1.5 cannot make
//! idmapped mounts, so the daemon mounts each such volume idmapped under
//! `Layout::staged_volumes` and hands runc that path as the bind source
//! (a bind of an idmapped mount keeps the mapping); once runc has made the
//! container, the staging mounts are detached.
//!
//! A read-only volume is staged the same way, as a read-only bind made in
//! the host's namespaces: copied into the container's mount namespace
//! (owned by the pod's user namespace) its read-only flag is locked, so
//! the pod's root, which holds `CAP_SYS_ADMIN` over that mount namespace,
//! cannot `mount -o remount,bind,rw` it, as it could a read-only bind runc
//! made from inside. (Only with private propagation: a staged clone
//! receives no later host mounts; a read-only volume with host-to-container
//! propagation is left to runc.)
//!
//! A volume *without* mappings is bound as it is: host root's files appear
//! owned by `nobody` and cannot be written by the pod's root, and whatever
//! the pod's root creates belongs to its mapped host uid. That is the
//! point of a user namespace, so nothing is idmapped unless asked, and a
//! mapping other than the pod's own is refused: it could show host root's
//! files as the pod's.

use crate::error::{Error, Result};
use cri_api::v1 as cri;
use sandbox_core::{IdMapping, Mount, MountPropagation, UserNamespace};
use std::path::{Path, PathBuf};

/// Whether `m` asks to be idmapped; refused unless its mappings are the
/// pod's own and its propagation is private (an idmapped clone is a
/// mount tree of its own: nothing would propagate through it).
pub fn wanted(
    m: &cri::Mount,
    pod: Option<&UserNamespace>,
) -> std::result::Result<bool, &'static str> {
    if m.uid_mappings.is_empty() && m.gid_mappings.is_empty() {
        return Ok(false);
    }
    let Some(pod) = pod else {
        return Err("uid/gid mappings on a mount of a pod without a user namespace");
    };
    let same = |given: &[cri::IdMapping], own: &[IdMapping]| {
        given.len() == own.len()
            && given.iter().zip(own).all(|(g, o)| {
                (g.container_id, g.host_id, g.length) == (o.container_id, o.host_id, o.length)
            })
    };
    if !same(&m.uid_mappings, &pod.uids) || !same(&m.gid_mappings, &pod.gids) {
        return Err("uid/gid mappings that are not the pod's user namespace mapping");
    }
    if !matches!(
        cri::MountPropagation::try_from(m.propagation),
        Ok(cri::MountPropagation::PropagationPrivate)
    ) {
        return Err("an idmapped mount with host-to-container or bidirectional propagation");
    }
    Ok(true)
}

/// Whether `mount` is staged: idmapped, or read-only and private.
fn staged(mount: &Mount) -> bool {
    mount.idmapped || (mount.readonly && mount.propagation == MountPropagation::Private)
}

/// Mounts each staged volume of `mounts` (idmapped, or read-only and
/// private) under `dir`,
/// idmapped with the user namespace at `userns` when asked, read-only when
/// asked, and returns the volumes as runc is to bind them. On failure
/// nothing stays mounted.
///
/// `dir` is made private to the pod's mapped root `root` (see
/// `container::userns_root`): runc, in the user namespace, must pass
/// through it, and no other local user may (a staged volume skips the
/// permissions of the host directories above the volume).
pub async fn stage(
    dir: PathBuf,
    userns: PathBuf,
    root: (u32, u32),
    mounts: Vec<Mount>,
) -> Result<Vec<Mount>> {
    if !mounts.iter().any(staged) {
        return Ok(mounts);
    }
    let what = format!("idmapped volumes in {}", dir.display());
    tokio::task::spawn_blocking(move || {
        let staged = stage_blocking(&dir, &userns, root, mounts);
        if staged.is_err() {
            release_blocking(&dir);
        }
        staged
    })
    .await
    .map_err(|e| Error::internal(&what, e))?
}

fn stage_blocking(
    dir: &Path,
    userns: &Path,
    root: (u32, u32),
    mut mounts: Vec<Mount>,
) -> Result<Vec<Mount>> {
    super::userns_root::private_to(dir, root).map_err(|e| Error::internal(dir.display(), e))?;
    for (i, mount) in mounts.iter_mut().enumerate().filter(|(_, m)| staged(m)) {
        let target = dir.join(i.to_string());
        // The mount point must be of the source's kind.
        let made = if mount.host_path.is_dir() {
            std::fs::create_dir(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        };
        made.map_err(|e| Error::internal(target.display(), e))?;
        // Idmapped only when kubelet asked: see the module's docs.
        let mapping = mount.idmapped.then_some(userns);
        idmapped::mount_with(
            &mount.host_path,
            &target,
            mapping,
            mount.readonly,
            idmapped::Recursive::Yes,
        )
        .map_err(|e| Error::internal(format!("volume {}", mount.container_path.display()), e))?;
        mount.host_path = target;
    }
    Ok(mounts)
}

/// Detaches container staging mounts under `dir` and removes the mount
/// points, never recursively (a mount still there must not be walked: it
/// is a host volume). Idempotent; a missing `dir` is fine.
pub async fn release(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || release_blocking(&dir)).await;
}

fn release_blocking(dir: &Path) {
    idmapped::detach_all(dir);
}

/// Releases every container's staging mounts under `root` (at start-up: a
/// crash between staging and release leaves them).
pub async fn release_all(root: PathBuf) {
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        release(entry.path()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> UserNamespace {
        let ids = vec![IdMapping {
            container_id: 0,
            host_id: 65536,
            length: 65536,
        }];
        UserNamespace {
            uids: ids.clone(),
            gids: ids,
        }
    }

    fn mapped(host_id: u32) -> cri::Mount {
        let ids = vec![cri::IdMapping {
            host_id,
            container_id: 0,
            length: 65536,
        }];
        cri::Mount {
            container_path: "/data".into(),
            host_path: "/srv".into(),
            uid_mappings: ids.clone(),
            gid_mappings: ids,
            ..Default::default()
        }
    }

    #[test]
    fn only_the_pods_own_mapping_on_a_private_mount_is_taken() {
        assert_eq!(wanted(&mapped(65536), Some(&pod())), Ok(true));
        assert_eq!(wanted(&cri::Mount::default(), Some(&pod())), Ok(false));
        assert_eq!(wanted(&cri::Mount::default(), None), Ok(false));
        // Host root as the pod's root, through a mount: refused.
        assert!(wanted(&mapped(0), Some(&pod())).is_err());
        assert!(wanted(&mapped(65536), None).is_err());
        let shared = cri::Mount {
            propagation: cri::MountPropagation::PropagationBidirectional as i32,
            ..mapped(65536)
        };
        assert!(wanted(&shared, Some(&pod())).is_err());
    }

    #[tokio::test]
    async fn release_never_walks_into_a_mount_left_behind() {
        let scratch = tempfile::tempdir().unwrap();
        let volume = scratch.path().join("volume");
        std::fs::create_dir(&volume).unwrap();
        std::fs::write(volume.join("precious"), "x").unwrap();
        let dir = scratch.path().join("staging");
        let left = dir.join("0");
        std::fs::create_dir_all(&left).unwrap();
        nix::mount::mount(
            Some(&volume),
            &left,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        release(dir.clone()).await;
        assert!(volume.join("precious").exists());
        assert!(!dir.exists());
    }
}
