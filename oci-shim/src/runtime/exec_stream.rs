//! `exec` for streaming sessions (kubectl exec): the command's stdio handed to
//! the caller as async pipes, or a pseudo-terminal with resize.
//!
//! With a TTY the runtime runs in the foreground with a pseudo-terminal of
//! ours as its stdio: runc (and runsc) then allocate the container's console,
//! copy between the two and, on SIGWINCH, copy our terminal's size to the
//! container's. The runtime runs under the reaper (`oci-monitor reap`), our
//! child, which passes SIGWINCH on and exits with the runtime's status, so
//! that status is the command's without making the daemon a subreaper.

use super::cli::{blocking, read_runtime_log_async};
use super::exec_tree::{exit_code, TreeGuard, PID_FILE};
use super::CliRuntime;
use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::process::Stdio;
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
/// use oci_shim::runtime::{CliRuntime, ExecStreamOptions, OciRuntime, RuntimeHandlerConfig};
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
    /// The reaper the runtime runs under.
    child: tokio::process::Child,
    terminal: Option<OwnedFd>,
    /// Armed until the command ended or was killed. Declared before `dir`,
    /// so dropped before it: it reads the pid files.
    guard: TreeGuard,
    dir: tempfile::TempDir,
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
    pub(super) async fn exec_session(
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
        let verb = self.exec_verb(id, dir.path());
        let mut command = self.reaped(&dir.path().join("runtime.log"), &verb);
        let spawn_error = |source| self.exec_spawn_error(id, &verb, source);
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
        // From here on, a failure kills what was started (dropped before `dir`).
        let guard = TreeGuard::new(self, id, dir.path());
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
            guard,
            dir,
        })
    }
}

/// An async stream over a duplicate of the terminal's master side.
fn pty_stream(master: &OwnedFd) -> std::io::Result<tokio::fs::File> {
    let fd = master.try_clone()?;
    Ok(tokio::fs::File::from_std(std::fs::File::from(fd)))
}

impl ExecSession {
    /// Sets the terminal's size (a no-op without a TTY) and tells the runtime
    /// (through its reaper), which copies it to the container's console.
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
        self.guard.disarm();
        let code = exit_code(&status);
        let started = tokio::fs::metadata(self.dir.path().join(PID_FILE))
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

    /// Kills the command and every process it started, then waits (a
    /// bounded time) for the runtime and its reaper to reap them and exit.
    pub async fn kill(&mut self) {
        if !self.guard.armed() {
            return;
        }
        let _ = self
            .runtime
            .take_down(&self.id, self.dir.path(), &mut self.child)
            .await;
        self.guard.disarm();
    }
}
