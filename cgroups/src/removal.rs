//! Removing a cgroup a runtime left behind.
//!
//! `runc delete` removes a container's cgroup, but only for a container it
//! has state for: a `runc create` killed half-way (a daemon killed mid
//! CreateContainer, a runtime timeout) can leave the cgroup, sometimes with
//! `runc init` still in it, and no runtime will ever remove it. The daemon's
//! orphan sweep calls [`Hierarchy::remove`] for such containers.
//!
//! A cgroup directory can only be removed once no process is in it and it
//! has no children, so removal thaws it (a frozen process never dies),
//! kills what is left, waits for the kernel to empty it, then removes it
//! bottom-up, in every hierarchy the host mounts.

use crate::hierarchy::Hierarchy;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// How long killed processes may take to leave a cgroup.
const EMPTY_WAIT: Duration = Duration::from_secs(2);

/// Why a cgroup could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// The path is not a plain absolute path below the hierarchy's root.
    #[error("cgroup {0:?}: not a path below the cgroup root")]
    InvalidPath(String),
    /// Processes stayed in the cgroup after they were killed.
    #[error("cgroup {}: still has processes {EMPTY_WAIT:?} after they were killed", .0.display())]
    Busy(PathBuf),
    /// The kernel refused an operation on the cgroup's files.
    #[error("cgroup {}: {op}: {source}", path.display())]
    Io {
        /// The cgroup directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

impl Hierarchy {
    /// Kills every process in the cgroup at `path` (as given to the
    /// runtime's `linux.cgroupsPath` under the cgroupfs driver, or from
    /// [`CgroupDriver::fs_path_of`](crate::CgroupDriver::fs_path_of)) and
    /// removes it, with its children, from every hierarchy. Returns whether
    /// there was anything to remove. Blocking: it waits for killed
    /// processes to exit.
    ///
    /// ```no_run
    /// use cgroups::Hierarchy;
    ///
    /// let removed = Hierarchy::detect().remove("/cri-server/c1")?;
    /// println!("removed: {removed}");
    /// # Ok::<(), cgroups::RemoveError>(())
    /// ```
    pub fn remove(&self, path: &str) -> Result<bool, RemoveError> {
        let rel = relative(path)?;
        let mut removed = false;
        for root in self.roots() {
            let dir = root.join(&rel);
            if dir.is_dir() {
                remove_tree(&dir)?;
                removed = true;
            }
        }
        Ok(removed)
    }

    /// The root of every mounted hierarchy: the unified tree, or each v1
    /// controller's tree (a co-mounted pair such as `cpu,cpuacct` once, not
    /// again through its `cpu` and `cpuacct` symlinks) and, on a hybrid
    /// host, the v2 tree at `unified`.
    fn roots(&self) -> Vec<PathBuf> {
        match self {
            Hierarchy::V2(root) => vec![root.clone()],
            Hierarchy::V1(root) => std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect(),
        }
    }
}

/// `path` without its leading `/`, refused unless every component is a
/// plain name: a `..` would reach outside the hierarchy.
fn relative(path: &str) -> Result<PathBuf, RemoveError> {
    let rel = Path::new(path.trim_start_matches('/'));
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !path.starts_with('/') || !plain || rel.as_os_str().is_empty() {
        return Err(RemoveError::InvalidPath(path.to_owned()));
    }
    Ok(rel.to_path_buf())
}

/// Removes `dir` and its child cgroups, deepest first.
fn remove_tree(dir: &Path) -> Result<(), RemoveError> {
    let io = |op| {
        move |source| RemoveError::Io {
            path: dir.to_path_buf(),
            op,
            source,
        }
    };
    for entry in std::fs::read_dir(dir).map_err(io("list"))?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    empty(dir)?;
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io("remove")(e)),
        _ => Ok(()),
    }
}

/// Thaws `dir`, kills its processes and waits until it holds none.
fn empty(dir: &Path) -> Result<(), RemoveError> {
    // Best effort: only the files this hierarchy has exist.
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    let deadline = Instant::now() + EMPTY_WAIT;
    loop {
        let pids = procs(dir);
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RemoveError::Busy(dir.to_path_buf()));
        }
        for pid in pids {
            // SAFETY: plain syscall; a pid that exited meanwhile is ESRCH.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes in `dir` (none when the file is gone or unreadable).
fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|pid| *pid > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_absolute_paths_are_accepted() {
        assert_eq!(relative("/a/b").unwrap(), PathBuf::from("a/b"));
        for bad in ["", "/", "a/b", "/a/../b", "/.."] {
            assert!(
                matches!(relative(bad), Err(RemoveError::InvalidPath(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn a_path_in_no_hierarchy_is_nothing_to_remove() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("memory")).unwrap();
        let v1 = Hierarchy::V1(root.path().to_path_buf());
        assert!(!v1.remove("/cri-server/gone").unwrap());
    }
}
