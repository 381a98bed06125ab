//! The mount namespace the runtime's `create` runs in when the daemon asks
//! for a smaller view (`--hide-mounts`, `--keep-mount`; why, in
//! `oci_shim::monitor::RuntimeView`).
//!
//! Made in the forked child just before it execs the runtime, so the
//! monitor itself stays in the host's namespace, and the view dies with the
//! runtime (the container's namespace is a copy made from it).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The most paths a view puts back: a root filesystem and four pins, with
/// room to spare. Fixed, because entering the view may not allocate.
const MAX_KEEP: usize = 16;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// A view ready to enter: every path already a C string.
#[derive(Debug)]
pub struct MountView {
    hide: Vec<CString>,
    keep: Vec<CString>,
}

impl MountView {
    /// The view `hide`/`keep` describe; `None` when nothing is hidden or
    /// the view cannot be made (a path with a NUL, too many to keep): then
    /// `create` sees the host's table, as without a view.
    pub fn new(hide: &[PathBuf], keep: &[PathBuf]) -> Option<MountView> {
        if hide.is_empty() || keep.len() > MAX_KEEP {
            return None;
        }
        let c = |p: &PathBuf| CString::new(p.as_os_str().as_bytes()).ok();
        Some(MountView {
            hide: hide.iter().map(c).collect::<Option<_>>()?,
            keep: keep.iter().map(c).collect::<Option<_>>()?,
        })
    }

    /// Enters the view: a new mount namespace, made a slave of the host's
    /// (so nothing below propagates back), each kept path cloned, each
    /// hidden tree detached, the clones attached where they were.
    ///
    /// Only for the child between fork and exec: it makes system calls and
    /// nothing else (no allocation, no locks).
    pub fn enter(&self) -> io::Result<()> {
        let check = |ret: libc::c_long| {
            if ret < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(ret)
            }
        };
        // SAFETY (every call below): plain system calls on NUL-terminated
        // strings this view owns and on descriptors they return.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) }.into())?;
        check(
            unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_SLAVE | libc::MS_REC,
                    std::ptr::null(),
                )
            }
            .into(),
        )?;
        let mut clones = [-1 as libc::c_int; MAX_KEEP];
        for (slot, path) in clones.iter_mut().zip(&self.keep) {
            let flags = OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint;
            *slot = check(unsafe {
                libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags)
            })? as libc::c_int;
        }
        for tree in &self.hide {
            check(unsafe { libc::umount2(tree.as_ptr(), libc::MNT_DETACH) }.into())?;
        }
        for (fd, path) in clones.iter().zip(&self.keep) {
            check(unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    *fd,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                )
            })?;
            unsafe { libc::close(*fd) };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::Command;

    /// A private bind mount of `dir` holding `n` tmpfs mounts.
    struct Tree(PathBuf);

    impl Tree {
        fn new(dir: &Path, n: usize) -> Tree {
            std::fs::create_dir_all(dir).unwrap();
            let mount = |args: &[&str]| {
                assert!(Command::new("mount").args(args).status().unwrap().success())
            };
            let d = dir.to_str().unwrap();
            mount(&["--bind", d, d]);
            mount(&["--make-private", d]);
            for i in 0..n {
                let m = dir.join(format!("m{i}"));
                std::fs::create_dir_all(&m).unwrap();
                std::fs::write(dir.join(format!("f{i}")), "").unwrap();
                mount(&["-t", "tmpfs", "tmpfs", m.to_str().unwrap()]);
                std::fs::write(m.join("mark"), format!("{i}\n")).unwrap();
            }
            Tree(dir.to_path_buf())
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = Command::new("umount")
                .arg("-R")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }

    /// `sh -c script` run in `view`; its stdout.
    fn in_view(view: MountView, script: &str) -> String {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        // SAFETY: enter() only makes system calls.
        unsafe { cmd.pre_exec(move || view.enter()) };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn hidden_trees_are_gone_and_kept_paths_are_back_in_place() {
        let root = tempfile::tempdir().unwrap();
        let tree = Tree::new(&root.path().join("t"), 5);
        // A pin: a namespace bind-mounted on a file.
        let pin = tree.0.join("f1");
        let status = Command::new("mount")
            .args(["--bind", "/proc/self/ns/uts"])
            .arg(&pin)
            .status()
            .unwrap();
        assert!(status.success());
        let view =
            MountView::new(std::slice::from_ref(&tree.0), &[tree.0.join("m3"), pin]).unwrap();
        let t = tree.0.to_str().unwrap();
        let seen = in_view(
            view,
            &format!(
                "grep -c ' {t}' /proc/self/mountinfo; cat {t}/m3/mark; ls {t}/m1 | wc -l; \
                 stat -f -c %T {t}/f1"
            ),
        );
        assert_eq!(
            seen, "2\n3\n0\nnsfs\n",
            "only m3 and f1 mounted, with their content"
        );
        // The host's view is untouched.
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let lines = table.lines().filter(|l| l.contains(&format!(" {t}")));
        assert_eq!(lines.count(), 7);
    }

    #[test]
    fn a_failed_view_fails_the_spawn_and_leaves_the_host_alone() {
        let root = tempfile::tempdir().unwrap();
        let not_a_mount = root.path().join("plain");
        std::fs::create_dir_all(&not_a_mount).unwrap();
        let view = MountView::new(&[not_a_mount], &[]).unwrap();
        let mut cmd = Command::new("true");
        unsafe { cmd.pre_exec(move || view.enter()) };
        let err = cmd.status().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    }

    #[test]
    fn nothing_hidden_or_too_much_kept_is_no_view() {
        assert!(MountView::new(&[], &[]).is_none());
        let many: Vec<PathBuf> = (0..=MAX_KEEP).map(|i| format!("/k{i}").into()).collect();
        assert!(MountView::new(&["/t".into()], &many).is_none());
        assert!(MountView::new(&["/t\0x".into()], &[]).is_none());
    }
}
