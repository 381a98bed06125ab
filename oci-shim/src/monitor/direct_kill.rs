//! Signalling a runc container's init from the caller, without a round
//! trip to its monitor.
//!
//! A kill through the monitor is a connection, a handshake, a request, the
//! monitor's wake-up and a reply; on a node busy tearing pods down that
//! round trip was the largest part of a stop's tail (at 110 pods, 4 at
//! once: p50 2.4–3.4 ms, p99 26–29 ms from the kill's start to its reply,
//! against p99 5–7 ms from there to the monitor reaping the init). The
//! monitor stays the one that reaps the init and reports the exit.
//!
//! A pid alone may name a recycled process once the monitor has reaped
//! the init. So the process is held first (`pidfd_open`), then checked to
//! be the monitor's child: the monitor is the init's subreaper and, once
//! the container runs, starts no other child, so a process with that pid
//! and that parent is the init (still running, or dead and not yet
//! reaped). The signal then goes to the held process only. Anything else
//! (no pid file, a process that is not the monitor's child, as gVisor's
//! is not, a signal for every process of a container that is not its PID
//! namespace's init) is left to the monitor.

use super::protocol::{MONITOR_PID_FILE_NAME, PID_FILE_NAME};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Delivers `signal` to the init of the container whose monitor keeps its
/// state in `state_dir` (`all`: to every process of it, which only a
/// SIGKILL to a PID namespace's init does by itself). `false` when it
/// cannot be done safely here: then ask the monitor.
///
/// Reads two pid files on the state directory (a tmpfs) and one `/proc`
/// file, no disk: cheap enough for an async caller.
pub(crate) fn kill_init(state_dir: &Path, signal: i32, all: bool) -> bool {
    let pid_in = |name: &str| -> Option<libc::pid_t> {
        let text = std::fs::read_to_string(state_dir.join(name)).ok()?;
        text.trim().parse().ok().filter(|pid| *pid > 0)
    };
    let (Some(init), Some(monitor)) = (pid_in(PID_FILE_NAME), pid_in(MONITOR_PID_FILE_NAME)) else {
        return false;
    };
    // SAFETY: pidfd_open takes a pid and flags; a descriptor it returns is
    // ours to own.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, init, 0) };
    if raw < 0 {
        return false;
    }
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    // Read after the open: if this is the monitor's child, it is the
    // process the descriptor holds (see the module docs).
    let Ok(status) = std::fs::read_to_string(format!("/proc/{init}/status")) else {
        return false;
    };
    let whole_namespace = signal == libc::SIGKILL && is_namespace_init(&status);
    if parent(&status) != Some(monitor) || (all && !whole_namespace) {
        return false;
    }
    // SAFETY: a descriptor we own, no siginfo, no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    sent == 0
}

/// Whether a `/proc/<pid>/status` text is that of pid 1 of a PID namespace
/// inside the reader's (its `NSpid` line ends in 1 and has more than one
/// id): a SIGKILL to it ends every process of the namespace.
///
/// # Examples
///
/// ```
/// use oci_shim::monitor::is_namespace_init;
///
/// assert!(is_namespace_init("Name:\tsleep\nNSpid:\t4242\t1\n"));
/// assert!(!is_namespace_init("NSpid:\t1\n"), "the host's own init");
/// ```
pub fn is_namespace_init(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() >= 2 && ids.last() == Some(&"1")
        })
        .unwrap_or(false)
}

/// The `PPid` of a `/proc/<pid>/status` text.
fn parent(status: &str) -> Option<libc::pid_t> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn only_pid_1_of_an_inner_namespace_is_a_namespace_init() {
        assert!(is_namespace_init("Name:\tsleep\nNSpid:\t4242\t1\n"));
        assert!(is_namespace_init("NSpid:\t10\t5\t1\n"));
        assert!(!is_namespace_init("NSpid:\t1\n"));
        assert!(!is_namespace_init("NSpid:\t4242\t7\n"));
        assert!(!is_namespace_init("Name:\tx\n"));
        assert_eq!(parent("Name:\tx\nPPid:\t77\n"), Some(77));
    }

    /// A state directory naming `init` and `monitor`.
    fn state(init: u32, monitor: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PID_FILE_NAME), format!("{init}\n")).unwrap();
        std::fs::write(
            dir.path().join(MONITOR_PID_FILE_NAME),
            format!("{monitor}\n"),
        )
        .unwrap();
        dir
    }

    #[test]
    fn the_monitors_child_is_signalled_and_nothing_else_is() {
        // This test process stands in for the monitor: `sleep` is its child.
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let me = std::process::id();
        // Not the monitor's child: left to the monitor, still running.
        let other = state(child.id(), me + 1);
        assert!(!kill_init(other.path(), libc::SIGKILL, false));
        assert!(child.try_wait().unwrap().is_none());
        // Every process of a container whose init has no PID namespace of
        // its own: only the runtime can.
        let ours = state(child.id(), me);
        assert!(!kill_init(ours.path(), libc::SIGKILL, true));
        assert!(child.try_wait().unwrap().is_none());
        // Its init: signalled.
        assert!(kill_init(ours.path(), libc::SIGKILL, false));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Reaped: its pid names nothing (or someone else) now.
        assert!(!kill_init(ours.path(), libc::SIGKILL, false));
    }

    #[test]
    fn missing_or_bad_pid_files_leave_it_to_the_monitor() {
        let empty = tempfile::tempdir().unwrap();
        assert!(!kill_init(empty.path(), libc::SIGKILL, false));
        let bad = state(0, 1);
        assert!(!kill_init(bad.path(), libc::SIGKILL, false));
    }
}
