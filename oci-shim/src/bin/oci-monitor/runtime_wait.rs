//! Learning the exit of a container whose init is not our child.
//!
//! gVisor runs every container of a pod inside the first container's sandbox
//! process; a joining container has no host process of its own (its pid file
//! names the sandbox), so waitpid cannot see its exit. For those, the monitor
//! runs `<runtime> wait <id>` and reads the JSON it prints
//! (`{"id":"c1","exitStatus":3}`).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct RuntimeWait {
    pub runtime: PathBuf,
    pub args: Vec<String>,
    pub id: String,
    pub out: PathBuf,
}

impl RuntimeWait {
    /// Starts the waiter; returns its pid.
    pub fn spawn(&self) -> std::io::Result<libc::pid_t> {
        let out = File::create(&self.out)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&self.runtime);
        cmd.args(&self.args)
            .arg("wait")
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: only sigprocmask between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, crate::sys::unblock_signals);
        }
        Ok(cmd.spawn()?.id() as libc::pid_t)
    }

    /// What the waiter found out.
    pub fn result(&self) -> WaitResult {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        match parse_exit_status(&text) {
            Some(code) => WaitResult::Exited(code),
            // runsc: "loading container: file does not exist".
            None if text.contains("does not exist") || text.contains("not found") => {
                WaitResult::Gone
            }
            // Typically "not started" yet.
            None => WaitResult::Retry,
        }
    }
}

/// Outcome of one `runtime wait`.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// The container exited with this status.
    Exited(i32),
    /// The runtime no longer knows the container (deleted unseen).
    Gone,
    /// Ask again later.
    Retry,
}

/// Extracts `exitStatus` from runsc's wait output without a JSON library.
pub fn parse_exit_status(text: &str) -> Option<i32> {
    let rest = &text[text.find("\"exitStatus\"")? + "\"exitStatus\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Whether `pid` is our child (its parent in /proc is us).
pub fn is_our_child(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    stat[close + 1..]
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runsc_wait_output() {
        assert_eq!(
            parse_exit_status("{\"id\":\"c\",\"exitStatus\":137}\n"),
            Some(137)
        );
        assert_eq!(parse_exit_status("{\"exitStatus\": 0}"), Some(0));
        assert_eq!(parse_exit_status("error: container not running"), None);
    }

    #[test]
    fn our_child_and_not() {
        let mut c = Command::new("sleep").arg("5").spawn().unwrap();
        assert!(is_our_child(c.id() as i32));
        assert!(!is_our_child(1));
        c.kill().unwrap();
        c.wait().unwrap();
    }
}
