//! What ExecSync and streaming execs share: the runtime's `exec` run under
//! the reaper (`oci-monitor reap`), and taking down what an exec started.
//!
//! An exec cut short (timeout, client gone) is taken down in this order:
//! its process tree is killed inside the container, then the runtime is
//! left to notice and exit by itself, and the reaper to reap whatever the
//! runtime left. Killing `runc exec` straight after the tree (as this code
//! once did) let it die before it reaped the exec'd process, its direct
//! child, which then hung as a zombie under the host's init. Inside gVisor
//! an exec'd process has no parent and the sandbox's kernel frees it when
//! it dies, whether `runsc exec` still waits for it or not; `runsc exec` is
//! still left to finish, as it returns once the process is gone.

use super::cli::blocking;
use super::{process_tree, CliRuntime, RuntimeKind};
use crate::error::Error;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;

/// The runtime's pid file for the exec'd process (runc: its host pid).
pub(super) const PID_FILE: &str = "exec.pid";
/// runsc's pid file for the exec'd process inside the sandbox.
pub(super) const INTERNAL_PID_FILE: &str = "exec.internal.pid";

/// How long the runtime gets to exit once its process tree is dead, and the
/// reaper to exit once told to kill the runtime.
const SETTLE: Duration = Duration::from_secs(5);
/// How long killed host processes get to die.
const DEATH: Duration = Duration::from_secs(2);

impl CliRuntime {
    /// The runtime's `exec` verb for container `id`, with its process file
    /// and pid files in `dir`. A terminal request travels in
    /// `process.json`: runsc has no `--tty` flag on exec, and runc takes the
    /// file's value when the flag is absent.
    pub(super) fn exec_verb(&self, id: &str, dir: &Path) -> Vec<String> {
        let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let mut verb = vec![
            "exec".to_owned(),
            "--process".into(),
            p("process.json"),
            "--pid-file".into(),
            p(PID_FILE),
        ];
        if self.config.kind == RuntimeKind::Runsc {
            verb.extend(["--internal-pid-file".into(), p(INTERNAL_PID_FILE)]);
        }
        verb.push(id.to_owned());
        verb
    }

    /// `oci-monitor reap <runtime> <global args> <verb>`: the runtime run
    /// under the reaper, with the stdio the caller sets. Never kill it on
    /// drop: a killed reaper hands its children to the host's init.
    pub(super) fn reaped(&self, log: &Path, verb: &[String]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.monitor_binary);
        command
            .arg("reap")
            .arg(&self.config.path)
            .args(self.config.global_args(log))
            .args(verb)
            .kill_on_drop(false);
        command
    }

    /// The reaper running `verb` could not be started (or waited for).
    pub(super) fn exec_spawn_error(
        &self,
        id: &str,
        verb: &[String],
        source: std::io::Error,
    ) -> Error {
        let verb: Vec<&str> = verb.iter().map(String::as_str).collect();
        Error::RuntimeSpawn {
            id: id.to_owned(),
            runtime: self.config.name.clone(),
            command: format!(
                "{} reap {}",
                self.monitor_binary.display(),
                self.describe(&verb)
            ),
            source,
        }
    }

    /// Kills every process the exec whose pid files are in `dir` started,
    /// and waits until they are dead.
    pub(super) async fn kill_exec_tree(&self, id: &str, dir: &Path) {
        match self.config.kind {
            RuntimeKind::Runc => {
                let Some(pid) = read_pid(&dir.join(PID_FILE)).await else {
                    return;
                };
                let alive = blocking(move || {
                    let sys = process_tree::HostSyscall;
                    process_tree::wait_dead(&sys, &process_tree::kill_tree(&sys, pid), DEATH)
                })
                .await;
                tracing::debug!(container = id, pid, ?alive, "exec process tree killed");
            }
            RuntimeKind::Runsc => {
                if let Some(pid) = read_pid(&dir.join(INTERNAL_PID_FILE)).await {
                    self.kill_sandbox_tree(id, pid).await;
                }
            }
        }
    }
}

impl CliRuntime {
    /// Takes down an exec cut short (pid files in `dir`, its runtime under
    /// `reaper`): kills its tree, then waits for the runtime to exit (runc
    /// reaping the exec'd process) and the reaper after it. If they are still
    /// there after [`SETTLE`], the tree is killed again (its pid file may
    /// have come after the first look) and the reaper told with SIGTERM to
    /// kill the runtime; it still reaps what that leaves. The reaper itself
    /// is never killed: one that does not exit still waits for a child, and
    /// is left to finish (tokio reaps it then). Returns its status, `None`
    /// when it was left.
    pub(super) async fn take_down(
        &self,
        id: &str,
        dir: &Path,
        reaper: &mut Child,
    ) -> Option<ExitStatus> {
        self.kill_exec_tree(id, dir).await;
        if let Ok(Ok(status)) = tokio::time::timeout(SETTLE, reaper.wait()).await {
            return Some(status);
        }
        tracing::warn!(
            container = id,
            "exec: the runtime outlived its process tree; killing both"
        );
        self.kill_exec_tree(id, dir).await;
        if let Some(pid) = reaper.id() {
            // SAFETY: kill(2) has no memory effects; the reaper is our
            // unreaped child, so the pid is still its.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let status = tokio::time::timeout(SETTLE, reaper.wait()).await;
        if !matches!(status, Ok(Ok(_))) {
            tracing::warn!(
                container = id,
                "exec: a killed process is not dead yet; its reaper waits on"
            );
        }
        status.ok().and_then(Result::ok)
    }
}

/// An exit status as a CRI exit code: `128 + signal` when killed.
pub(super) fn exit_code(status: &ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Kills an exec's process tree in the background if dropped while armed:
/// the exec's future was dropped (its caller went away) before the exec
/// ended or was killed. It reads the pid files when dropped, so it must be
/// dropped before the directory holding them.
pub(super) struct TreeGuard {
    runtime: CliRuntime,
    id: String,
    dir: PathBuf,
    armed: bool,
}

impl TreeGuard {
    /// An armed guard for the exec whose pid files are in `dir`.
    pub(super) fn new(runtime: &CliRuntime, id: &str, dir: &Path) -> TreeGuard {
        TreeGuard {
            runtime: runtime.clone(),
            id: id.to_owned(),
            dir: dir.to_owned(),
            armed: true,
        }
    }

    /// Whether the exec still needs taking down.
    pub(super) fn armed(&self) -> bool {
        self.armed
    }

    /// The exec ended or was killed: nothing left to do on drop.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match self.runtime.config.kind {
            RuntimeKind::Runc => {
                if let Some(pid) = read_pid_now(&self.dir.join(PID_FILE)) {
                    std::thread::spawn(move || {
                        process_tree::kill_tree(&process_tree::HostSyscall, pid)
                    });
                }
            }
            RuntimeKind::Runsc => {
                // Inside gVisor the tree is only reachable through `runsc ps`
                // and `runsc kill`, which need the async driver.
                let pid = read_pid_now(&self.dir.join(INTERNAL_PID_FILE));
                if let (Some(pid), Ok(handle)) = (pid, tokio::runtime::Handle::try_current()) {
                    let runtime = self.runtime.clone();
                    let id = self.id.clone();
                    handle.spawn(async move { runtime.kill_sandbox_tree(&id, pid).await });
                }
            }
        }
    }
}

/// Reads a pid file as it is now.
fn read_pid_now(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads a pid file, waiting briefly: the runtime writes it just after
/// starting the process, which may be after a very short timeout expired.
async fn read_pid(path: &Path) -> Option<i32> {
    for _ in 0..50 {
        if let Ok(text) = tokio::fs::read_to_string(path).await {
            if let Ok(pid) = text.trim().parse() {
                return Some(pid);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeHandlerConfig;

    #[test]
    fn the_runtime_runs_under_the_reaper() {
        let runsc = CliRuntime::new(RuntimeHandlerConfig::runsc("/r"))
            .with_monitor_binary("/bin/oci-monitor");
        let verb = runsc.exec_verb("c1", Path::new("/d"));
        assert_eq!(
            verb,
            [
                "exec",
                "--process",
                "/d/process.json",
                "--pid-file",
                "/d/exec.pid",
                "--internal-pid-file",
                "/d/exec.internal.pid",
                "c1"
            ]
        );
        let command = runsc.reaped(Path::new("/d/log"), &verb);
        let std = command.as_std();
        assert_eq!(std.get_program(), "/bin/oci-monitor");
        let args: Vec<_> = std.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(args[..2], ["reap", "/usr/bin/runsc"]);
        assert_eq!(args[args.len() - verb.len()..], verb);
        let runc = CliRuntime::new(RuntimeHandlerConfig::runc("/r"));
        assert!(!runc
            .exec_verb("c1", Path::new("/d"))
            .contains(&"--internal-pid-file".into()));
    }

    #[test]
    fn killed_is_128_plus_the_signal() {
        assert_eq!(exit_code(&ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(&ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
