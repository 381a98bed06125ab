//! The daemon's `state` on a tmpfs of its own when the machine keeps it on
//! disk (`cri_server::state_dir`): mounted over an empty or stale
//! directory, kept across restarts, never over live state, off when asked.
//! `/tmp` is a disk filesystem on the machines these tests run on.

use std::io::BufRead;
use std::path::Path;

/// Starts the daemon with its directories under `dir` and the keys of
/// `extra`, waits until it serves, stops it with SIGTERM; its log.
fn serve_once(dir: &Path, extra: &str) -> String {
    let config = dir.join("cri.toml");
    std::fs::write(&config, tests::daemon::test_config(dir, extra)).unwrap();
    let mut child = std::process::Command::new(tests::daemon::binary("cri-server"))
        .args(["--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("serving CRI v1") {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    assert!(child.wait().unwrap().success(), "{log}");
    assert!(log.contains("serving CRI v1"), "never served:\n{log}");
    log
}

/// A temporary directory for a daemon's files whose mounts go with it,
/// even when an assertion fails first.
struct DaemonDir(tempfile::TempDir);

impl DaemonDir {
    fn new() -> DaemonDir {
        DaemonDir(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for DaemonDir {
    fn drop(&mut self) {
        tests::daemon::unmount_pin_dir(self.0.path());
    }
}

fn on_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).unwrap().filesystem_type() == nix::sys::statfs::TMPFS_MAGIC
}

/// How many mounts sit exactly on `path`.
fn mounts_on(path: &Path) -> usize {
    let path = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(path.as_str()))
        .count()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_fresh_state_goes_on_a_tmpfs_that_a_restart_keeps() {
    let dir = DaemonDir::new();
    let state = dir.path().join("state");
    assert!(!on_tmpfs(dir.path()), "the test needs /tmp on disk");
    serve_once(dir.path(), "");
    assert!(on_tmpfs(&state), "state is not on a tmpfs");
    // The directory's mode, not a stricter one: a user-namespaced pod's
    // root passes through `state` to its root filesystem.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "{mode:o}");
    let marker = std::fs::read_to_string(state.join("boot-id")).unwrap();
    assert_eq!(marker.trim(), boot_id());
    // The pin directory and the default files live in it.
    assert!(state.join("netns").is_dir());
    serve_once(dir.path(), "");
    assert_eq!(mounts_on(&state), 1, "a restart mounts no second tmpfs");
    tests::daemon::unmount_pin_dir(dir.path());
    assert!(!on_tmpfs(&state), "the tmpfs was left after its unmount");
}

#[test]
fn a_state_of_this_boot_already_on_disk_stays_there() {
    let dir = DaemonDir::new();
    let state = dir.path().join("state");
    // State of a daemon from before the upgrade, its containers perhaps
    // still running: never hidden. (A file the start-up sweep leaves be.)
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("from-before"), "").unwrap();
    let log = serve_once(dir.path(), "");
    assert!(!on_tmpfs(&state));
    assert!(state.join("from-before").is_file(), "live state was hidden");
    assert!(log.contains("state stays on disk"), "{log}");
    // Not marked: a directory that merely exists is never taken as the
    // daemon's own, so no later boot covers it.
    assert!(!state.join("boot-id").exists());
    tests::daemon::unmount_pin_dir(dir.path());
}

#[test]
fn a_state_left_by_an_earlier_boot_is_covered_not_deleted() {
    let dir = DaemonDir::new();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("dead"), "").unwrap();
    std::fs::write(state.join("boot-id"), "an-earlier-boot\n").unwrap();
    serve_once(dir.path(), "");
    assert!(on_tmpfs(&state));
    assert!(!state.join("dead").exists(), "the dead state shows through");
    tests::daemon::unmount_pin_dir(dir.path());
    assert!(
        state.join("dead").is_file(),
        "what was under the mount is gone"
    );
}

#[test]
fn state_tmpfs_off_keeps_state_on_disk() {
    let dir = DaemonDir::new();
    let state = dir.path().join("state");
    let log = serve_once(dir.path(), "state_tmpfs = false");
    assert!(!on_tmpfs(&state));
    assert_eq!(mounts_on(&state), 0);
    assert!(log.contains("state_tmpfs is off"), "{log}");
    tests::daemon::unmount_pin_dir(dir.path());
}

#[tokio::test]
async fn a_start_that_fails_leaves_no_tmpfs_behind() {
    let dir = DaemonDir::new();
    let state = dir.path().join("state");
    // Refused in the middle of the start, after `state` was prepared.
    let auth = dir.path().join("auth.json");
    std::fs::write(
        &auth,
        "{\"auths\": {\"r.example\": {\"auth\": \"not base64\"}}}",
    )
    .unwrap();
    let config = dir.path().join("cri.toml");
    let extra = format!("[image]\nauth_file = {:?}\n", auth.display().to_string());
    std::fs::write(&config, tests::daemon::test_config(dir.path(), &extra)).unwrap();
    let (status, stderr) = tests::daemon::refused_start(&config, "a malformed auth file").await;
    assert!(!status.success());
    assert!(stderr.contains("image.auth_file"), "{stderr}");
    assert_eq!(mounts_on(&state), 0, "the failed start left its tmpfs");
    assert!(!on_tmpfs(&state));
}
