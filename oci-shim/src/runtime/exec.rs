//! `exec` for ExecSync: run a command, capture its output, enforce a timeout.

use super::cli::{blocking, read_runtime_log_async};
use super::{process_tree, CliRuntime, RuntimeKind};
use crate::bundle::Bundle;
use crate::error::{Error, Result};
use std::io::Write;
use std::process::Stdio;
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
        let args = args.to_vec();
        let bundle = state.bundle.clone();
        let prepared = blocking(move || process_file(&bundle, args, false));
        let dir = prepared.await?;
        let process_path = dir.path().join("process.json");
        let pid_path = dir.path().join("exec.pid");
        let internal_pid_path = dir.path().join("exec.internal.pid");
        let log = dir.path().join("runtime.log");

        let p = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let mut verb = vec![
            "exec".to_owned(),
            "--process".into(),
            p(&process_path),
            "--pid-file".into(),
            p(&pid_path),
        ];
        if self.config.kind == RuntimeKind::Runsc {
            verb.extend(["--internal-pid-file".into(), p(&internal_pid_path)]);
        }
        verb.push(id.to_owned());
        let verb_refs: Vec<&str> = verb.iter().map(String::as_str).collect();

        let mut child = tokio::process::Command::new(&self.config.path)
            .args(self.config.global_args(&log))
            .args(&verb)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::RuntimeSpawn {
                id: id.to_owned(),
                runtime: self.config.name.clone(),
                command: self.describe(&verb_refs),
                source,
            })?;
        let stdout = child.stdout.take().map(|o| tokio::spawn(read_capped(o)));
        let stderr = child.stderr.take().map(|e| tokio::spawn(read_capped(e)));

        let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => (status, false),
            Err(_) => {
                self.kill_exec_tree(id, &pid_path, &internal_pid_path).await;
                let _ = child.start_kill();
                (child.wait().await, true)
            }
        };
        let status = status.map_err(|source| Error::RuntimeSpawn {
            id: id.to_owned(),
            runtime: self.config.name.clone(),
            command: self.describe(&verb_refs),
            source,
        })?;
        // After a kill, a survivor holding the pipe must not hang us forever.
        let collect = |h: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
            let Some(h) = h else { return Vec::new() };
            tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default()
        };
        let (stdout, stderr) = (collect(stdout).await, collect(stderr).await);
        use std::os::unix::process::ExitStatusExt;
        let exit_code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1);
        // The runtime itself failing (not the command) is an error, not an exit code.
        if !timed_out && exit_code != 0 && tokio::fs::metadata(&pid_path).await.is_err() {
            let log = read_runtime_log_async(&log).await;
            return Err(self.failure(id, &verb_refs, &status.to_string(), &stderr, &log));
        }
        Ok(ExecSyncResult {
            stdout,
            stderr,
            exit_code,
            timed_out,
        })
    }

    async fn kill_exec_tree(
        &self,
        id: &str,
        pid_path: &std::path::Path,
        internal_pid_path: &std::path::Path,
    ) {
        match self.config.kind {
            RuntimeKind::Runc => {
                let Some(pid) = read_pid(pid_path).await else {
                    return;
                };
                let killed = tokio::task::spawn_blocking(move || {
                    process_tree::kill_tree(&process_tree::HostSyscall, pid)
                })
                .await
                .unwrap_or(0);
                tracing::debug!(
                    container = id,
                    pid,
                    killed,
                    "exec timed out; process tree killed"
                );
            }
            RuntimeKind::Runsc => {
                let Some(pid) = read_pid(internal_pid_path).await else {
                    return;
                };
                self.kill_sandbox_tree(id, pid).await;
            }
        }
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

/// Reads a pid file, waiting briefly: the runtime writes it just after starting
/// the process, which may be after a very short timeout expired.
async fn read_pid(path: &std::path::Path) -> Option<i32> {
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
