//! `exec` for ExecSync: run a command, capture its output, enforce a timeout.

use super::cli::{blocking, read_runtime_log_async};
use super::exec_tree::{exit_code, TreeGuard, PID_FILE};
use super::CliRuntime;
use crate::bundle::Bundle;
use crate::error::{Error, Result};
use std::io::Write;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Output kept per stream, like kubelet: beyond it, output is read and dropped
/// so the process never blocks on a full pipe.
pub const EXEC_OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// What an ExecSync produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSyncResult {
    /// Captured stdout (at most [`EXEC_OUTPUT_CAP`] bytes).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most [`EXEC_OUTPUT_CAP`] bytes).
    pub stderr: Vec<u8>,
    /// Exit status; `128 + signal` when killed.
    pub exit_code: i32,
    /// The timeout expired and the process tree was killed.
    pub timed_out: bool,
}

async fn read_capped(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = r.read(&mut buf).await {
        let room = EXEC_OUTPUT_CAP.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// Waits for an output reader. After a kill, a survivor holding the pipe
/// must not hang us forever.
async fn collect(reader: Option<tokio::task::JoinHandle<Vec<u8>>>) -> Vec<u8> {
    let Some(reader) = reader else {
        return Vec::new();
    };
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default()
}

impl CliRuntime {
    /// Runs `args` in container `id` with the container's own process
    /// settings (user, env, cwd, capabilities).
    pub(super) async fn exec_in_container(
        &self,
        id: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult> {
        if args.is_empty() {
            return Err(Error::Spec(format!("exec in {id}: empty command")));
        }
        let state = self.container_state(id).await?;
        let (bundle, args) = (state.bundle.clone(), args.to_vec());
        let dir = blocking(move || process_file(&bundle, args, false)).await?;
        let verb = self.exec_verb(id, dir.path());
        let mut reaper = self
            .reaped(&dir.path().join("runtime.log"), &verb)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| self.exec_spawn_error(id, &verb, source))?;
        // Declared after `dir`, so dropped before it: it reads the pid files.
        let mut guard = TreeGuard::new(self, id, dir.path());
        let stdout = reaper.stdout.take().map(|o| tokio::spawn(read_capped(o)));
        let stderr = reaper.stderr.take().map(|e| tokio::spawn(read_capped(e)));
        let (status, timed_out) = self
            .wait_or_kill(id, dir.path(), &mut reaper, timeout)
            .await;
        guard.disarm();
        let status = status
            .transpose()
            .map_err(|source| self.exec_spawn_error(id, &verb, source))?;
        let (stdout, stderr) = (collect(stdout).await, collect(stderr).await);
        if let (Some(status), false) = (&status, timed_out) {
            self.check_started(id, dir.path(), &verb, status, &stderr)
                .await?;
        }
        Ok(ExecSyncResult {
            stdout,
            stderr,
            exit_code: status.as_ref().map_or(-1, exit_code),
            timed_out,
        })
    }

    /// Waits for the exec (pid files in `dir`) to end or `timeout` to pass,
    /// then takes it down ([`CliRuntime::take_down`]). Returns the reaper's
    /// status (`None`: left to finish) and whether the timeout passed.
    async fn wait_or_kill(
        &self,
        id: &str,
        dir: &std::path::Path,
        reaper: &mut tokio::process::Child,
        timeout: Duration,
    ) -> (Option<std::io::Result<ExitStatus>>, bool) {
        match tokio::time::timeout(timeout, reaper.wait()).await {
            Ok(status) => (Some(status), false),
            Err(_) => (self.take_down(id, dir, reaper).await.map(Ok), true),
        }
    }

    /// A failure of the runtime itself (not the command: the runtime never
    /// wrote the pid file) is an error carrying its explanation, not an exit
    /// code.
    async fn check_started(
        &self,
        id: &str,
        dir: &std::path::Path,
        verb: &[String],
        status: &ExitStatus,
        stderr: &[u8],
    ) -> Result<()> {
        let started = tokio::fs::metadata(dir.join(PID_FILE)).await.is_ok();
        if status.success() || started {
            return Ok(());
        }
        let log = read_runtime_log_async(&dir.join("runtime.log")).await;
        let verb: Vec<&str> = verb.iter().map(String::as_str).collect();
        Err(self.failure(id, &verb, &status.to_string(), stderr, &log))
    }

    /// Kills a process inside a gVisor sandbox and its descendants, found with
    /// `runsc ps` (sandbox processes are invisible in the host's /proc).
    pub(crate) async fn kill_sandbox_tree(&self, id: &str, root: i32) {
        // Every pid ever seen in the tree stays in it: once a parent dies its
        // children are re-parented to the container's init, and only this
        // memory still ties them to the exec.
        let mut tree = vec![root];
        // Repeat: a process may fork between listing and killing, and a
        // signal lands inside gVisor a little after `runsc kill` returns.
        for _ in 0..10 {
            // The table format, because runsc's JSON format lists pids only.
            let Ok(out) = self.run(id, &["ps", id]).await else {
                return;
            };
            let procs = parse_ps_table(&String::from_utf8_lossy(&out.stdout));
            extend_tree(&mut tree, &procs);
            let alive: Vec<i32> = tree
                .iter()
                .copied()
                .filter(|p| procs.iter().any(|x| x.0 == *p))
                .collect();
            if alive.is_empty() {
                return;
            }
            // Children first: a parent still alive reaps its killed child
            // (a shell waiting for its command does) instead of leaving it to
            // the container's init, which in gVisor is the container's own
            // process and may never reap.
            for pid in alive.iter().rev() {
                let pid = pid.to_string();
                let _ = self.run(id, &["kill", "--pid", &pid, id, "9"]).await;
            }
        }
    }
}

/// Adds to `tree` every descendant `procs` (`(pid, ppid)` pairs) shows of a
/// pid already in it, parents before children.
fn extend_tree(tree: &mut Vec<i32>, procs: &[(i32, i32)]) {
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for (child, _) in procs.iter().filter(|x| x.1 == parent) {
            if !tree.contains(child) {
                tree.push(*child);
            }
        }
        i += 1;
    }
}

/// `(pid, ppid)` pairs from `runsc ps` table output
/// (`UID PID PPID C TTY STIME TIME CMD`).
fn parse_ps_table(text: &str) -> Vec<(i32, i32)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace().skip(1);
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

/// Writes the `process.json` for an exec of `args` into a fresh temporary
/// directory: the container's own process (user, env, capabilities, cwd)
/// with the new argv and terminal setting. The directory goes when dropped.
pub(crate) fn process_file(
    bundle: &std::path::Path,
    args: Vec<String>,
    terminal: bool,
) -> Result<tempfile::TempDir> {
    let spec = Bundle::open(bundle).read_spec()?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::Spec(format!("bundle {} has no process", bundle.display())))?;
    process.set_args(Some(args));
    process.set_terminal(Some(terminal));
    let dir = tempfile::Builder::new()
        .prefix("oci-shim-exec")
        .tempdir()
        .map_err(|e| Error::io("exec dir", std::env::temp_dir(), "create", e))?;
    let path = dir.path().join("process.json");
    let json = serde_json::to_vec(&process).map_err(|e| Error::Spec(e.to_string()))?;
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&json))
        .map_err(|e| Error::io("exec process", &path, "write", e))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tree_keeps_orphans_it_saw_before() {
        // sh (6) runs sleep (8); sleep's own child (9).
        let mut tree = vec![6];
        super::extend_tree(&mut tree, &[(2, 0), (6, 2), (8, 6), (9, 8), (7, 2)]);
        assert_eq!(tree, vec![6, 8, 9]);
        // 6 died: 8 now hangs off init (2) but is still the exec's.
        super::extend_tree(&mut tree, &[(2, 0), (8, 2), (9, 8), (10, 9), (7, 2)]);
        assert_eq!(tree, vec![6, 8, 9, 10]);
    }

    #[test]
    fn parses_runsc_ps_table() {
        let t = "UID       PID       PPID      C         TTY       STIME     TIME      CMD\n\
                 0         1         0         0         ?         14:50     10ms      sh\n\
                 0         4         3         0         ?         14:50     0s        sleep\n";
        assert_eq!(super::parse_ps_table(t), [(1, 0), (4, 3)]);
        assert!(super::parse_ps_table("").is_empty());
    }
}
