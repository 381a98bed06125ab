//! Ending a monitor whose container is being removed.
//!
//! A monitor exits by itself once its container's init has exited and its
//! exit is recorded. On gVisor a stop can give up ("still running after
//! SIGKILL") while the sandbox takes its time to die, and the removal that
//! follows deletes the monitor's directory: a monitor left waiting then
//! has no record to write and nobody to answer, forever (issue #22). So
//! removal retires the monitor first.

use crate::monitor::protocol::MONITOR_PID_FILE_NAME;
use std::path::Path;
use std::time::Duration;

/// The pid of container `id`'s monitor if it still runs: the pid its state
/// directory records, checked to be an `oci-monitor` for `id` (a pid file
/// is on disk, and a recycled pid must never be killed).
pub fn running_monitor(id: &str, state_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(state_dir.join(MONITOR_PID_FILE_NAME))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_monitor = args.first().is_some_and(|a| a.ends_with(b"oci-monitor"));
    let is_ours = args
        .windows(2)
        .any(|w| w[0] == b"--id" && w[1] == id.as_bytes());
    (pid > 0 && is_monitor && is_ours).then_some(pid)
}

/// How long a killed monitor may take to go.
const GONE_WITHIN: Duration = Duration::from_secs(2);

/// Kills container `id`'s monitor if it still runs and waits (briefly)
/// until it is gone; `true` if one was killed.
pub async fn retire(id: &str, state_dir: &Path) -> bool {
    let Some(pid) = running_monitor(id, state_dir) else {
        return false;
    };
    tracing::warn!(container = %id, pid, "its monitor outlived the container: killing it");
    // SAFETY: a plain syscall on a pid just checked to be this id's monitor.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = tokio::time::Instant::now() + GONE_WITHIN;
    while running_monitor(id, state_dir).is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pid_file_naming_another_process_is_never_killed() {
        let dir = tempfile::tempdir().unwrap();
        // Our own pid: a live process, but not a monitor of "c1".
        std::fs::write(
            dir.path().join(MONITOR_PID_FILE_NAME),
            std::process::id().to_string(),
        )
        .unwrap();
        assert_eq!(running_monitor("c1", dir.path()), None);
        assert!(!retire("c1", dir.path()).await);
        std::fs::write(dir.path().join(MONITOR_PID_FILE_NAME), "garbage").unwrap();
        assert_eq!(running_monitor("c1", dir.path()), None);
        assert_eq!(running_monitor("c1", &dir.path().join("gone")), None);
    }

    #[tokio::test]
    async fn a_live_monitor_of_the_container_is_killed_and_gone() {
        let dir = tempfile::tempdir().unwrap();
        // A process that looks like `oci-monitor --id c1`.
        let mut fake = std::process::Command::new("bash")
            .arg("-c")
            .arg("exec -a /opt/x/oci-monitor perl -e 'sleep 60' -- --id c1")
            .spawn()
            .unwrap();
        let pid = fake.id() as i32;
        std::fs::write(dir.path().join(MONITOR_PID_FILE_NAME), pid.to_string()).unwrap();
        for _ in 0..100 {
            if running_monitor("c1", dir.path()).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(running_monitor("c1", dir.path()), Some(pid));
        assert_eq!(running_monitor("c2", dir.path()), None, "another id's");
        assert!(retire("c1", dir.path()).await);
        assert_eq!(running_monitor("c1", dir.path()), None);
        let status = fake.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
