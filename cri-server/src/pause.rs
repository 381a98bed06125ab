//! The built-in pause program and the infra containers' root filesystem.
//!
//! `build.rs` compiles `pause/pause.rs` into a static executable of about a
//! kilobyte; it is embedded here and installed at start into a root
//! filesystem that every infra container shares read-only. No image pull, no
//! separate install step, and the same binary runs under runc and gVisor.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The pause executable.
pub const PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cri-pause"));

/// The pause program's path inside the infra root filesystem.
pub const PAUSE_PATH: &str = "/pause";

/// Writes the infra root filesystem at `rootfs` (the pause binary and the
/// empty directories runtimes mount onto), atomically replacing an older
/// binary. Returns the root's path.
pub fn install(rootfs: &Path) -> std::io::Result<PathBuf> {
    for dir in ["proc", "sys", "dev", "etc", "tmp"] {
        fs::create_dir_all(rootfs.join(dir))?;
    }
    let target = rootfs.join("pause");
    if fs::read(&target).ok().as_deref() != Some(PAUSE_BINARY) {
        let tmp = rootfs.join(".pause.tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(PAUSE_BINARY)?;
        file.sync_all()?;
        drop(file);
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, &target)?;
    }
    Ok(rootfs.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_pause_is_a_static_elf_and_installs_idempotently() {
        assert_eq!(&PAUSE_BINARY[..4], b"\x7fELF");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        install(&root).unwrap();
        install(&root).unwrap();
        let meta = fs::metadata(root.join("pause")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert!(root.join("proc").is_dir());
    }

    #[test]
    fn pause_exits_zero_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let root = install(&dir.path().join("rootfs")).unwrap();
        let mut child = std::process::Command::new(root.join("pause"))
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(child.try_wait().unwrap().is_none(), "pause exited early");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
}
