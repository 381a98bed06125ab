//! What a daemon run may leave behind on the host, found and removed: the
//! mounts under its private directory and the cgroups of its containers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The daemon's cgroup subtree when kubelet gives no cgroup parent.
const DAEMON_CGROUP: &str = "cri-server";

/// The names of the cgroups under the daemon's subtree, in every hierarchy
/// (cgroup v2 and each v1 controller).
pub fn daemon_cgroups() -> BTreeSet<String> {
    subtree_dirs()
        .into_iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Removes the daemon cgroups named in `names` that are empty; returns how
/// many names still had a directory somewhere.
pub fn remove_cgroups(names: &BTreeSet<String>) -> usize {
    let mut found = 0;
    for name in names {
        let mut any = false;
        for dir in subtree_dirs() {
            let path = dir.join(name);
            if path.is_dir() {
                any = true;
                // rmdir fails on a cgroup that still has processes: left alone.
                let _ = std::fs::remove_dir(&path);
            }
        }
        found += usize::from(any);
    }
    found
}

fn subtree_dirs() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.join(DAEMON_CGROUP)];
    if let Ok(controllers) = std::fs::read_dir(base) {
        dirs.extend(controllers.flatten().map(|c| c.path().join(DAEMON_CGROUP)));
    }
    dirs
}

/// Unmounts (lazily, deepest first) every mount at or under `dir`; returns
/// the mount points that were found.
pub fn unmount_under(dir: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let points = mount_points_under(&mounts, dir);
    for p in &points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
    points
}

fn mount_points_under(mounts: &str, dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| {
            p.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_under_a_directory_deepest_first() {
        let mounts = "/dev/vda /tmp/.tmpA/state/netns ext4 rw 0 0\n\
                      tmpfs /tmp/.tmpAB tmpfs rw 0 0\n\
                      proc /tmp/.tmpA/state/netns/x nsfs rw 0 0\n\
                      /dev/vda / ext4 rw 0 0\n";
        assert_eq!(
            mount_points_under(mounts, Path::new("/tmp/.tmpA")),
            ["/tmp/.tmpA/state/netns/x", "/tmp/.tmpA/state/netns"]
        );
    }
}
