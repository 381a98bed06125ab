//! `Hierarchy::remove` against the kernel: a cgroup with a live process
//! and a child cgroup, in several hierarchies, is emptied and removed.
//! Needs root (CI runs as root).

use cgroups::Hierarchy;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

/// The directories `path` is made in: two v1 controllers, or the unified
/// tree, whichever this host has (and both on a hybrid host).
fn trees() -> Vec<PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup");
    let candidates = ["memory", "pids", "unified", ""];
    let mut trees: Vec<PathBuf> = candidates
        .iter()
        .map(|c| root.join(c))
        .filter(|d| d.join("cgroup.procs").exists())
        .collect();
    if root.join("cgroup.controllers").exists() {
        trees = vec![root];
    }
    trees
}

#[test]
fn a_leftover_cgroup_with_a_process_and_a_child_is_killed_and_removed() {
    let path = format!("/cgroups-removal-test-{}", std::process::id());
    let trees = trees();
    assert!(!trees.is_empty(), "no cgroup hierarchy mounted");
    let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
    for tree in &trees {
        let dir = tree.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(dir.join("child")).unwrap();
        // A process may only sit in a leaf on v2: put it in the child.
        std::fs::write(dir.join("child/cgroup.procs"), sleeper.id().to_string()).unwrap();
    }

    let removed = Hierarchy::detect().remove(&path).unwrap();

    assert!(removed);
    let status = sleeper.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    for tree in &trees {
        let dir = tree.join(path.trim_start_matches('/'));
        assert!(!dir.exists(), "{} left", dir.display());
    }
    assert!(
        !Hierarchy::detect().remove(&path).unwrap(),
        "second removal"
    );
}

#[test]
fn a_path_outside_the_hierarchy_is_refused() {
    let err = Hierarchy::detect().remove("/../etc").unwrap_err();
    assert!(matches!(err, cgroups::RemoveError::InvalidPath(_)), "{err}");
}
