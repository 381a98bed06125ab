//! `exec` for streaming sessions (kubectl exec): the command's stdio handed to
//! the caller as async pipes, or a pseudo-terminal with resize.
//!
//! With a TTY the runtime runs in the foreground with a pseudo-terminal of
//! ours as its stdio: runc (and runsc) then allocate the container's console,
//! copy between the two and, on SIGWINCH, copy our terminal's size to the
//! container's. That keeps the runtime as our child, so its exit status is the
//! command's, without making the daemon a subreaper.

use super::cli::{blocking, read_runtime_log_async};
use super::{process_tree, CliRuntime, RuntimeKind};
use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// How a streaming exec is set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStreamOptions {
    /// Run the command on a pseudo-terminal (stdout and stderr merged).
    pub tty: bool,
    /// Keep the command's stdin open for the caller.
    pub stdin: bool,
}

/// A readable end of the command's output.
pub type ExecReader = Pin<Box<dyn AsyncRead + Send>>;
/// The writable end of the command's stdin.
pub type ExecWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A command running in a container with its stdio handed out.
///
/// Dropping it kills the command and every process it started.
///
/// # Examples
///
/// ```no_run
/// use oci_shim::runtime::{CliRuntime, ExecStreamOptions, RuntimeHandlerConfig};
/// use tokio::io::AsyncReadExt;
///
/// # async fn demo() -> Result<(), oci_shim::Error> {
/// let runc = CliRuntime::new(RuntimeHandlerConfig::runc("/run/oci-shim/runc"));
/// let mut exec = runc
///     .exec_stream("c1", &["echo".into(), "hi".into()], ExecStreamOptions::default())
///     .await?;
/// let mut out = String::new();
/// if let Some(mut stdout) = exec.stdout.take() {
///     let _ = stdout.read_to_string(&mut out).await;
/// }
/// let status = exec.wait().await?;
/// assert_eq!(status, 0);
/// # Ok(()) }
/// ```
pub struct ExecSession {
    /// The command's stdin, when asked for.
    pub stdin: Option<ExecWriter>,
    /// The command's stdout (the terminal's output with a TTY).
    pub stdout: Option<ExecReader>,
    /// The command's stderr; `None` with a TTY.
    pub stderr: Option<ExecReader>,
    runtime: CliRuntime,
    id: String,
    child: tokio::process::Child,
    terminal: Option<OwnedFd>,
    dir: tempfile::TempDir,
    finished: bool,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("id", &self.id)
            .field("tty", &self.terminal.is_some())
            .finish_non_exhaustive()
    }
}

impl CliRuntime {
    /// Starts `args` in container `id` with the container's own process
    /// settings and returns its stdio.
    pub async fn exec_stream(
        &self,
        id: &str,
        args: &[String],
        options: ExecStreamOptions,
    ) -> Result<ExecSession> {
        if args.is_empty() {
            return Err(Error::Spec(format!("exec in {id}: empty command")));
        }
        let state = self.container_state(id).await?;
        let bundle = state.bundle.clone();
        let argv = args.to_vec();
        let tty = options.tty;
        let dir = blocking(move || super::exec::process_file(&bundle, argv, tty)).await?;
        let p = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut verb = vec![
            "exec".to_owned(),
            "--process".into(),
            p(dir.path().join("process.json")),
            "--pid-file".into(),
            p(dir.path().join("exec.pid")),
        ];
        if self.config.kind == RuntimeKind::Runsc {
            verb.extend([
                "--internal-pid-file".into(),
                p(dir.path().join("exec.internal.pid")),
            ]);
        }
        // The terminal request travels in process.json: runsc has no `--tty`
        // flag on exec, and runc takes the file's value when the flag is absent.
        verb.push(id.to_owned());
        let log = dir.path().join("runtime.log");
        let mut command = tokio::process::Command::new(&self.config.path);
        command
            .args(self.config.global_args(&log))
            .args(&verb)
            .kill_on_drop(true);
        let spawn_error = |source| Error::RuntimeSpawn {
            id: id.to_owned(),
            runtime: self.config.name.clone(),
            command: self.describe(&verb.iter().map(String::as_str).collect::<Vec<_>>()),
            source,
        };
        let mut terminal = None;
        if tty {
            let pty =
                nix::pty::openpty(None, None).map_err(|e| spawn_error(std::io::Error::from(e)))?;
            let slave = std::fs::File::from(pty.slave);
            let dup = |f: &std::fs::File| f.try_clone().map_err(spawn_error);
            command
                .stdin(Stdio::from(dup(&slave)?))
                .stdout(Stdio::from(dup(&slave)?))
                .stderr(Stdio::from(slave));
            terminal = Some(pty.master);
        } else {
            command
                .stdin(if options.stdin {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        let mut child = command.spawn().map_err(spawn_error)?;
        let (stdin, stdout, stderr): (Option<ExecWriter>, Option<ExecReader>, Option<ExecReader>) =
            match &terminal {
                Some(master) => {
                    let stdin = if options.stdin {
                        Some(Box::pin(pty_stream(master).map_err(spawn_error)?) as ExecWriter)
                    } else {
                        None
                    };
                    let stdout = Box::pin(pty_stream(master).map_err(spawn_error)?) as ExecReader;
                    (stdin, Some(stdout), None)
                }
                None => (
                    child.stdin.take().map(|w| Box::pin(w) as ExecWriter),
                    child.stdout.take().map(|r| Box::pin(r) as ExecReader),
                    child.stderr.take().map(|r| Box::pin(r) as ExecReader),
                ),
            };
        Ok(ExecSession {
            stdin,
            stdout,
            stderr,
            runtime: self.clone(),
            id: id.to_owned(),
            child,
            terminal,
            dir,
            finished: false,
        })
    }
}

/// An async stream over a duplicate of the terminal's master side.
fn pty_stream(master: &OwnedFd) -> std::io::Result<tokio::fs::File> {
    let fd = master.try_clone()?;
    Ok(tokio::fs::File::from_std(std::fs::File::from(fd)))
}

impl ExecSession {
    /// Sets the terminal's size (a no-op without a TTY) and tells the runtime,
    /// which copies it to the container's console.
    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        let Some(master) = &self.terminal else {
            return Ok(());
        };
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer on an open fd.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc != 0 {
            return Err(Error::io(
                "exec terminal",
                self.dir.path(),
                "resize",
                std::io::Error::last_os_error(),
            ));
        }
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGWINCH,
            );
        }
        Ok(())
    }

    /// Waits for the command to end and returns its exit code (`128 + signal`
    /// when killed). A runtime that could not start the command at all (no
    /// such executable…) is an error carrying the runtime's message.
    pub async fn wait(&mut self) -> Result<i32> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::io("exec", self.dir.path(), "wait", e))?;
        self.finished = true;
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1);
        let started = tokio::fs::metadata(self.dir.path().join("exec.pid"))
            .await
            .is_ok();
        if code != 0 && !started {
            let log = read_runtime_log_async(&self.dir.path().join("runtime.log")).await;
            return Err(Error::RuntimeFailed {
                id: self.id.clone(),
                runtime: self.runtime.config.name.clone(),
                command: "exec".into(),
                status: status.to_string(),
                detail: log,
            });
        }
        Ok(code)
    }

    /// Kills the command and every process it started, then reaps the runtime.
    pub async fn kill(&mut self) {
        if self.finished {
            return;
        }
        match self.runtime.config.kind {
            RuntimeKind::Runc => {
                if let Some(pid) = read_pid(&self.dir.path().join("exec.pid")).await {
                    let _ =
                        blocking(move || process_tree::kill_tree(&process_tree::HostSyscall, pid))
                            .await;
                }
            }
            RuntimeKind::Runsc => {
                if let Some(pid) = read_pid(&self.dir.path().join("exec.internal.pid")).await {
                    self.runtime.kill_sandbox_tree(&self.id, pid).await;
                }
            }
        }
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.finished = true;
    }
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // A session dropped without `kill` (its client vanished): kill the
        // tree in the background if a runtime is still there to do it.
        match self.runtime.config.kind {
            RuntimeKind::Runc => {
                if let Some(pid) = read_pid_now(&self.dir.path().join("exec.pid")) {
                    std::thread::spawn(move || {
                        process_tree::kill_tree(&process_tree::HostSyscall, pid)
                    });
                }
            }
            RuntimeKind::Runsc => {
                // Inside gVisor the tree is only reachable through `runsc ps`
                // and `runsc kill`, which need the async driver.
                let pid = read_pid_now(&self.dir.path().join("exec.internal.pid"));
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
fn read_pid_now(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads a pid file, waiting briefly: the runtime writes it just after
/// starting the process.
async fn read_pid(path: &std::path::Path) -> Option<i32> {
    for _ in 0..25 {
        if let Ok(text) = tokio::fs::read_to_string(path).await {
            if let Ok(pid) = text.trim().parse() {
                return Some(pid);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
