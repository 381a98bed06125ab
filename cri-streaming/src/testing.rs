//! [`EchoBackend`]: a [`StreamBackend`] without containers, for tests and
//! examples of the server (and of streaming clients) that need no root, no
//! runtime and no daemon.

use crate::backend::{BackendError, Process, ProcessControl, StreamBackend};
use crate::protocol::TerminalSize;
use crate::request::{AttachRequest, ExecRequest};
use async_trait::async_trait;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// A backend whose "containers" run a few built-in commands:
///
/// - `echo ARG…` writes its arguments and a newline on stdout;
/// - `cat` copies stdin to stdout until EOF;
/// - `exit CODE` writes `exiting with CODE` on stderr and exits with it;
/// - `zeros COUNT` writes COUNT zero bytes on stdout;
/// - `sleep` runs until the client leaves;
/// - anything else fails to start, as a missing executable would.
///
/// Attach behaves like `cat` and never ends by itself. Every container and
/// pod exists except those whose id starts with `missing`; port forwarding
/// dials the port on the host's loopback. Execs stopped because their
/// client left are counted ([`EchoBackend::kills`]), and terminal sizes are
/// recorded ([`EchoBackend::sizes`]).
///
/// # Examples
///
/// ```
/// use cri_streaming::testing::EchoBackend;
/// use cri_streaming::{ExecRequest, StreamBackend};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let echo = EchoBackend::default();
/// let request = ExecRequest {
///     container_id: "c1".into(),
///     cmd: vec!["echo".into(), "hello".into()],
///     ..ExecRequest::default()
/// };
/// let mut process = echo.exec(&request).await?;
/// let mut out = String::new();
/// process.stdout.take().unwrap().read_to_string(&mut out).await?;
/// assert_eq!(out, "hello\n");
/// assert_eq!(process.control.wait().await?, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct EchoBackend {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    kills: AtomicUsize,
    sizes: Mutex<Vec<TerminalSize>>,
}

/// The process side of the pipes a fake process gets.
struct Stdio {
    stdin: Option<DuplexStream>,
    stdout: DuplexStream,
    stderr: DuplexStream,
}

const PIPE: usize = 64 * 1024;

impl EchoBackend {
    /// How many execs were stopped because their client left.
    pub fn kills(&self) -> usize {
        self.state.kills.load(Ordering::SeqCst)
    }

    /// Every terminal size clients sent, in order.
    pub fn sizes(&self) -> Vec<TerminalSize> {
        self.state
            .sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `body` as a process with pipes of its own.
    fn spawn<F, Fut>(&self, stdin: bool, is_exec: bool, body: F) -> Process
    where
        F: FnOnce(Stdio) -> Fut,
        Fut: Future<Output = i32> + Send + 'static,
    {
        let (stdin_ours, stdin_theirs) = if stdin {
            let (a, b) = tokio::io::duplex(PIPE);
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        let (stdout_ours, stdout_theirs) = tokio::io::duplex(PIPE);
        let (stderr_ours, stderr_theirs) = tokio::io::duplex(PIPE);
        let task = tokio::spawn(body(Stdio {
            stdin: stdin_theirs,
            stdout: stdout_theirs,
            stderr: stderr_theirs,
        }));
        Process {
            stdin: stdin_ours.map(|s| Box::pin(s) as _),
            stdout: Some(Box::pin(stdout_ours)),
            stderr: Some(Box::pin(stderr_ours)),
            control: Box::new(EchoControl {
                task,
                code: None,
                is_exec,
                state: Arc::clone(&self.state),
            }),
        }
    }
}

/// Copies `stdio.stdin` to `stdio.stdout` until EOF.
async fn cat(mut stdio: Stdio) -> i32 {
    if let Some(mut stdin) = stdio.stdin.take() {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdin.read(&mut buf).await {
            if stdio.stdout.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    }
    0
}

#[async_trait]
impl StreamBackend for EchoBackend {
    async fn exec(&self, request: &ExecRequest) -> Result<Process, BackendError> {
        let id = &request.container_id;
        if id.starts_with("missing") {
            return Err(BackendError::ContainerNotFound { id: id.clone() });
        }
        let args: Vec<String> = request.cmd.iter().skip(1).cloned().collect();
        let stdin = request.stdin;
        Ok(match request.cmd.first().map(String::as_str) {
            Some("echo") => self.spawn(stdin, true, |mut io| async move {
                let line = format!("{}\n", args.join(" "));
                let _ = io.stdout.write_all(line.as_bytes()).await;
                0
            }),
            Some("cat") => self.spawn(stdin, true, cat),
            Some("exit") => self.spawn(stdin, true, |mut io| async move {
                let code = args.first().and_then(|c| c.parse().ok()).unwrap_or(1);
                let line = format!("exiting with {code}\n");
                let _ = io.stderr.write_all(line.as_bytes()).await;
                code
            }),
            Some("zeros") => self.spawn(stdin, true, |mut io| async move {
                let count = args.first().and_then(|c| c.parse().ok()).unwrap_or(0);
                let _ = io.stdout.write_all(&vec![0u8; count]).await;
                0
            }),
            Some("sleep") => self.spawn(stdin, true, |_io| std::future::pending()),
            other => {
                let missing = std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("executable file {:?} not found", other.unwrap_or("")),
                );
                return Err(BackendError::failed(
                    format!("container {id}: exec"),
                    missing,
                ));
            }
        })
    }

    async fn attach(&self, request: &AttachRequest) -> Result<Process, BackendError> {
        let id = &request.container_id;
        if id.starts_with("missing") {
            return Err(BackendError::ContainerNotFound { id: id.clone() });
        }
        Ok(self.spawn(request.stdin, false, |io| async move {
            cat(io).await;
            // The container runs on after its stdin closed.
            std::future::pending().await
        }))
    }

    async fn port_forward_dial(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> Result<TcpStream, BackendError> {
        if pod_sandbox_id.starts_with("missing") {
            return Err(BackendError::PodNotFound {
                id: pod_sandbox_id.to_owned(),
            });
        }
        let fail = |e| BackendError::failed(format!("pod {pod_sandbox_id}: port {port}"), e);
        let connect = TcpStream::connect(("127.0.0.1", port));
        match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(connected) => connected.map_err(fail),
            Err(_) => Err(fail(std::io::ErrorKind::TimedOut.into())),
        }
    }
}

/// A fake process: its task, and its exit code once known.
struct EchoControl {
    task: JoinHandle<i32>,
    code: Option<i32>,
    is_exec: bool,
    state: Arc<State>,
}

impl Drop for EchoControl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl ProcessControl for EchoControl {
    async fn wait(&mut self) -> Result<i32, BackendError> {
        if let Some(code) = self.code {
            return Ok(code);
        }
        // Awaiting a JoinHandle by reference is cancel-safe.
        let code = (&mut self.task)
            .await
            .map_err(|e| BackendError::failed("echo process", e))?;
        self.code = Some(code);
        Ok(code)
    }

    async fn resize(&mut self, size: TerminalSize) -> Result<(), BackendError> {
        self.state
            .sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(size);
        Ok(())
    }

    async fn client_gone(&mut self) {
        self.task.abort();
        if self.is_exec {
            self.state.kills.fetch_add(1, Ordering::SeqCst);
        }
    }
}
