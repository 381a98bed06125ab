//! A container's `maskedPaths` and `readonlyPaths` on gVisor, as mounts.
//!
//! runsc (2022-12) accepts both lists and applies neither (issue #22), so
//! a pod asking to hide `/etc/group` or to freeze `/etc` got neither. Its
//! mounts it does apply; so for gVisor each path of the container's root
//! filesystem becomes one:
//!
//! - a masked file: `/dev/null` bound over it read-only; a masked
//!   directory: an empty read-only tmpfs (what runc does);
//! - a read-only path: the path bound onto itself read-only, its source
//!   found *inside* the root filesystem (the image's symlinks resolve in the
//!   image, never on the host: see [`crate::rootfs_file::resolve_in_root`]),
//!   placed before the mounts below it (the pod's `/etc/hosts` stays
//!   visible under a read-only `/etc`); a mount at the path itself (a
//!   volume) is made read-only instead.
//!
//! Paths under `/proc` and `/sys` stay in the lists: they name files of
//! gVisor's own synthetic file systems, which hide the host's anyway.
//! Missing paths are skipped, as runc skips them.

use crate::rootfs_file::{resolve_in_root, FileError};
use oci_shim::spec::{ContainerSpec, MountSpec};
use std::path::Path;

/// Whether `path` names a file of gVisor's own `/proc` or `/sys`.
fn synthetic(path: &str) -> bool {
    ["/proc", "/sys"]
        .iter()
        .any(|fs| path == *fs || path.starts_with(&format!("{fs}/")))
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> MountSpec {
    MountSpec {
        destination: destination.to_string(),
        kind: kind.to_string(),
        source: source.to_string(),
        options: options.iter().map(|o| o.to_string()).collect(),
        propagation: None,
    }
}

/// Turns `spec`'s masked and read-only paths of the root filesystem at
/// `rootfs` into mounts (see the module docs). Blocking: it looks into
/// the root filesystem.
///
/// # Errors
///
/// [`FileError`] when the root filesystem cannot be opened or a path in it
/// cannot be looked up.
pub fn as_mounts(spec: &mut ContainerSpec, rootfs: &Path) -> Result<(), FileError> {
    // Read-only binds first, masks over them, as runc applies them: a
    // masked file inside a read-only directory stays masked.
    let readonly = std::mem::take(&mut spec.readonly_paths);
    for path in readonly {
        if synthetic(&path) {
            spec.readonly_paths.push(path);
            continue;
        }
        // A mount made at the path already (a volume) is made read-only
        // itself, as runc's remount would make it.
        if let Some(existing) = spec.mounts.iter_mut().find(|m| m.destination == path) {
            existing.options.retain(|o| o != "rw");
            existing.options.push("ro".into());
            continue;
        }
        if let Some((host, _)) = resolve_in_root(rootfs, Path::new(&path))? {
            let source = host.display().to_string();
            // Before any mount below it (the pod's /etc/hosts below a
            // read-only /etc), which would be hidden otherwise.
            let below = format!("{}/", path.trim_end_matches('/'));
            let at = spec
                .mounts
                .iter()
                .position(|m| m.destination.starts_with(&below))
                .unwrap_or(spec.mounts.len());
            spec.mounts
                .insert(at, mount(&path, "bind", &source, &["rbind", "ro"]));
        }
    }
    let masked = std::mem::take(&mut spec.masked_paths);
    for path in masked {
        if synthetic(&path) {
            spec.masked_paths.push(path);
            continue;
        }
        match resolve_in_root(rootfs, Path::new(&path))? {
            Some((_, true)) => spec.mounts.push(mount(
                &path,
                "tmpfs",
                "tmpfs",
                &["ro", "nosuid", "nodev", "noexec"],
            )),
            Some((_, false)) => {
                spec.mounts
                    .push(mount(&path, "bind", "/dev/null", &["bind", "ro"]))
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_filesystem_paths_become_mounts_and_proc_paths_stay() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/conf.d")).unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
        // A hostile link: resolved inside the image, never on the host.
        std::os::unix::fs::symlink("/etc/conf.d", root.path().join("etc/alias")).unwrap();
        std::os::unix::fs::symlink("/../../../../etc", root.path().join("escape")).unwrap();
        let mut spec = ContainerSpec::new(root.path(), ["/app"]);
        spec.mounts.clear();
        spec.mounts
            .push(mount("/etc/alias/hosts", "bind", "/pod/hosts", &["bind"]));
        spec.mounts
            .push(mount("/escape", "bind", "/volume", &["rbind", "rw"]));
        spec.masked_paths = vec![
            "/proc/kcore".into(),
            "/etc/group".into(),
            "/etc/conf.d".into(),
            "/nope".into(),
        ];
        spec.readonly_paths = vec!["/proc/sys".into(), "/etc/alias".into(), "/escape".into()];
        as_mounts(&mut spec, root.path()).unwrap();
        assert_eq!(spec.masked_paths, ["/proc/kcore"]);
        assert_eq!(spec.readonly_paths, ["/proc/sys"]);
        let rootfs = std::fs::canonicalize(root.path()).unwrap();
        let got: Vec<(String, String, String)> = spec
            .mounts
            .iter()
            .map(|m| (m.destination.clone(), m.kind.clone(), m.source.clone()))
            .collect();
        let inside = |p: &str| rootfs.join(p).display().to_string();
        assert_eq!(
            got,
            [
                // Before the pod file below it.
                ("/etc/alias".into(), "bind".into(), inside("etc/conf.d")),
                (
                    "/etc/alias/hosts".into(),
                    "bind".into(),
                    "/pod/hosts".into()
                ),
                // A volume at the path: made read-only, not hidden.
                ("/escape".into(), "bind".into(), "/volume".into()),
                ("/etc/group".into(), "bind".into(), "/dev/null".into()),
                ("/etc/conf.d".into(), "tmpfs".into(), "tmpfs".into()),
            ]
        );
        assert_eq!(spec.mounts[2].options, ["rbind", "ro"]);
    }

    #[test]
    fn a_hostile_symlink_loop_is_an_error_not_a_hang() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/loop", root.path().join("loop")).unwrap();
        let mut spec = ContainerSpec::new(root.path(), ["/app"]);
        spec.readonly_paths = vec!["/loop".into()];
        assert!(as_mounts(&mut spec, root.path()).is_err());
    }
}
