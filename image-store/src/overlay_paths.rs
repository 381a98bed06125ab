//! Overlay options written relative to the container's directory.
//!
//! overlayfs shows its layer paths in every line of `/proc/*/mountinfo`
//! exactly as the mount was given them, and every reader of the mount table
//! pays for each byte: runc reads it four times per `create` and again at
//! `start` and `delete`, systemd re-reads it on every mount change. With
//! absolute paths a one-layer container's line is about 500 bytes, most of
//! it three 64-hex directory names under the store's root; relative to the
//! container's directory it is about half (`lowerdir=../../layers/<chain
//! id>,upperdir=upper,workdir=work`). c/storage shortens its lines the same
//! way (short `l/` links, mounted from the store's directory).
//!
//! Relative paths are resolved against the mounting thread's working
//! directory, which is process-wide; [`in_directory`] runs the mount on a
//! thread of its own that has left the process's working directory
//! (`unshare(CLONE_FS)`), so no other thread ever sees a changed one.
//! [`shortened`] keeps a path absolute unless the relative one names the
//! very same directory from where the thread stands, so a symlinked store
//! or a thread that could not move mounts exactly what it did before.

use crate::rootfs::Overlay;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Runs `f` on a thread of its own whose working directory is `dir`,
/// changing no other thread's. Fails only if no thread can be started.
/// If the thread cannot move to `dir`, `f` runs unmoved (and
/// [`shortened`] then keeps absolute paths).
pub(crate) fn in_directory<T: Send>(
    dir: &Path,
    f: impl FnOnce() -> T + Send,
) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("overlay-mount".into())
            .spawn_scoped(scope, || {
                // SAFETY: CLONE_FS only gives this thread its own copy of
                // the working directory, root and umask. Without that copy,
                // never chdir: it would move every thread of the process.
                if unsafe { libc::unshare(libc::CLONE_FS) } == 0 {
                    let _ = std::env::set_current_dir(dir);
                }
                f()
            })?;
        Ok(handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// `overlay` with every layer, upper and work path replaced by the shorter
/// relative one from the container's directory (the parent of `upper`),
/// where that relative path names the same directory from the current
/// working directory. The mount point stays as it is.
pub(crate) fn shortened(overlay: &Overlay) -> Overlay {
    let Some(base) = overlay.upper.parent() else {
        return overlay.clone();
    };
    let short = |path: &PathBuf| match relative(path, base) {
        Some(rel) if rel.as_os_str().len() < path.as_os_str().len() && same_dir(&rel, path) => rel,
        _ => path.clone(),
    };
    Overlay {
        lower: overlay.lower.iter().map(short).collect(),
        upper: short(&overlay.upper),
        work: short(&overlay.work),
        ..overlay.clone()
    }
}

/// The lexical path from `base` to `path` (both absolute), or `None`.
fn relative(path: &Path, base: &Path) -> Option<PathBuf> {
    let (to, from) = (plain_components(path)?, plain_components(base)?);
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut rel: PathBuf = std::iter::repeat_n(Component::ParentDir, from.len() - common)
        .chain(to[common..].iter().copied())
        .collect();
    if rel.as_os_str().is_empty() {
        rel.push(".");
    }
    Some(rel)
}

/// The components of an absolute path with no `.` or `..` in it.
fn plain_components(path: &Path) -> Option<Vec<Component<'_>>> {
    let parts: Vec<Component<'_>> = path.components().collect();
    let plain = parts
        .iter()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    (path.is_absolute() && plain).then_some(parts)
}

/// Whether `a` and `b` are the same directory, as this thread resolves them.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.is_dir() && a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(root: &Path) -> Overlay {
        Overlay {
            target: root.join("containers/c1/rootfs"),
            lower: vec![root.join("layers/b"), root.join("layers/a")],
            upper: root.join("containers/c1/upper"),
            work: root.join("containers/c1/work"),
            readonly: false,
            idmap: None,
        }
    }

    fn store() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for d in [
            "layers/a",
            "layers/b",
            "containers/c1/upper",
            "containers/c1/work",
        ] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        root
    }

    #[test]
    fn relative_paths_are_lexical() {
        let rel = |p: &str, b: &str| relative(Path::new(p), Path::new(b));
        assert_eq!(
            rel("/s/layers/x", "/s/containers/c"),
            Some("../../layers/x".into())
        );
        assert_eq!(
            rel("/s/containers/c/upper", "/s/containers/c"),
            Some("upper".into())
        );
        assert_eq!(rel("/s/containers/c", "/s/containers/c"), Some(".".into()));
        assert_eq!(rel("/a", "/b/c"), Some("../../a".into()));
        assert_eq!(rel("s/x", "/s"), None, "not absolute");
        assert_eq!(rel("/s/../x", "/s"), None, "not plain");
    }

    #[test]
    fn options_are_relative_from_the_containers_directory() {
        let root = store();
        let given = overlay(root.path());
        let dir = given.upper.parent().unwrap().to_path_buf();
        let short = in_directory(&dir, || shortened(&given)).unwrap();
        assert_eq!(
            short.lower,
            [Path::new("../../layers/b"), Path::new("../../layers/a")]
        );
        assert_eq!(
            (short.upper.as_path(), short.work.as_path()),
            (Path::new("upper"), Path::new("work"))
        );
        assert_eq!(short.target, given.target, "the mount point stays absolute");
    }

    #[test]
    fn paths_stay_absolute_where_the_relative_one_names_another_directory() {
        let root = store();
        let given = overlay(root.path());
        // Unmoved, relative paths would resolve against the test's own
        // working directory.
        assert_eq!(shortened(&given), given);
        // A symlinked container directory: `..` from it leads elsewhere.
        let elsewhere = tempfile::tempdir().unwrap();
        let linked = root.path().join("containers/c2");
        std::fs::create_dir_all(elsewhere.path().join("c2/upper")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("c2"), &linked).unwrap();
        let through_link = Overlay {
            upper: linked.join("upper"),
            work: linked.join("upper"),
            ..given
        };
        let short = in_directory(&linked, || shortened(&through_link)).unwrap();
        assert_eq!(
            short.lower, through_link.lower,
            "../.. from the link's target is not the store"
        );
        assert_eq!(short.upper, Path::new("upper"));
    }

    #[test]
    fn the_process_working_directory_never_moves() {
        let root = store();
        let before = std::env::current_dir().unwrap();
        let inside = in_directory(root.path(), || std::env::current_dir().unwrap()).unwrap();
        assert_eq!(inside, root.path().canonicalize().unwrap());
        assert_eq!(std::env::current_dir().unwrap(), before);
    }
}
