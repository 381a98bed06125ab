//! The daemon behind the streaming server: [`DaemonBackend`] implements
//! [`cri_streaming::StreamBackend`] with the daemon's containers and pods.
//!
//! - Exec: the command through the container's runtime
//!   (`oci_shim` `exec_stream`, under the `oci-monitor reap` subreaper),
//!   killed tree first when the client leaves.
//! - Attach: the container's main process through its monitor, which owns
//!   the container's stdio. The monitor's frames are split into stdout and
//!   stderr; stdin goes to the monitor (which closes the container's stdin
//!   after the first attach ends when `stdin_once` is set); resizes use a
//!   second connection.
//! - PortForward: dialled inside the pod's network namespace on a
//!   dedicated thread (`netns::NetNs::run_in`), never on a tokio worker;
//!   the connected socket then moves to tokio, since a socket stays in the
//!   namespace it was made in.

use crate::daemon::Daemon;
use crate::layout::Layout;
use async_trait::async_trait;
use cri_streaming::{
    AttachRequest, BackendError, ExecRequest, Process, ProcessControl, StreamBackend, TerminalSize,
};
use oci_shim::monitor::protocol::{self as monitor, FRAME_EXIT, FRAME_STDERR, FRAME_STDOUT};
use oci_shim::monitor::MonitorClient;
use oci_shim::runtime::{ExecSession, ExecStreamOptions};
use sandbox_core::{Container, ContainerState};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{
    AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, SimplexStream, WriteHalf,
};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;

/// How long dialling a pod port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest output frame a monitor may send.
const MAX_MONITOR_FRAME: usize = 1 << 20;
/// Room in each attach output pipe.
const PIPE: usize = 64 * 1024;

/// The daemon as the streaming server sees it.
pub struct DaemonBackend {
    daemon: Arc<Daemon>,
}

impl DaemonBackend {
    /// A backend over `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> DaemonBackend {
        DaemonBackend { daemon }
    }

    /// Container `id`, which must be running.
    fn running(&self, id: &str) -> Result<Arc<Container>, BackendError> {
        let container = self.daemon.containers.get(id).map_err(|e| match e {
            sandbox_core::Error::NotFound { .. } => {
                BackendError::ContainerNotFound { id: id.into() }
            }
            e => BackendError::failed(format!("container {id}"), e),
        })?;
        if container.state != ContainerState::Running {
            return Err(BackendError::NotRunning {
                id: container.id.clone(),
            });
        }
        Ok(container)
    }
}

#[async_trait]
impl StreamBackend for DaemonBackend {
    async fn exec(&self, request: &ExecRequest) -> Result<Process, BackendError> {
        let container = self.running(&request.container_id)?;
        let runtime = self
            .daemon
            .runtime(&container.runtime_handler)
            .map_err(|e| BackendError::failed(format!("container {}", container.id), e))?;
        let options = ExecStreamOptions {
            tty: request.tty,
            stdin: request.stdin,
        };
        let mut session = runtime
            .exec_stream(&container.id, &request.cmd, options)
            .await
            .map_err(|e| BackendError::Runtime(e.into()))?;
        Ok(Process {
            stdin: session.stdin.take(),
            stdout: session.stdout.take(),
            stderr: session.stderr.take(),
            control: Box::new(ExecControl {
                container: container.id.clone(),
                session,
            }),
        })
    }

    async fn attach(&self, request: &AttachRequest) -> Result<Process, BackendError> {
        let container = self.running(&request.container_id)?;
        let dir = Layout::monitor(&self.daemon.layout.container_dir(&container.id));
        let sock = dir.join(monitor::SOCKET_NAME);
        let (frames, stdin) = handshake(&container.id, &sock).await?;
        let (stdout_r, stdout_w) = tokio::io::simplex(PIPE);
        let (stderr_r, stderr_w) = tokio::io::simplex(PIPE);
        let demux = tokio::spawn(demux(container.id.clone(), frames, stdout_w, stderr_w));
        // Without the client's stdin the write half stays open until the
        // attach ends: closing it is the client's EOF to the monitor.
        let (stdin, held) = match request.stdin {
            true => (Some(Box::pin(stdin) as _), None),
            false => (None, Some(stdin)),
        };
        Ok(Process {
            stdin,
            stdout: Some(Box::pin(stdout_r)),
            stderr: Some(Box::pin(stderr_r)),
            control: Box::new(AttachControl {
                container: container.id.clone(),
                sock,
                demux: Some(demux),
                resizer: None,
                _stdin: held,
            }),
        })
    }

    async fn port_forward_dial(&self, pod: &str, port: u16) -> Result<TcpStream, BackendError> {
        let sandbox = self.daemon.sandboxes.get(pod).map_err(|e| match e {
            sandbox_core::Error::NotFound { .. } => BackendError::PodNotFound { id: pod.into() },
            e => BackendError::failed(format!("pod {pod}"), e),
        })?;
        let fail = |e: std::io::Error| BackendError::failed(format!("pod {pod}: port {port}"), e);
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let Some(path) = sandbox.netns_path.clone() else {
            // Host network: no namespace to enter.
            let connect = TcpStream::connect(address);
            return match tokio::time::timeout(DIAL_TIMEOUT, connect).await {
                Ok(connected) => connected.map_err(fail),
                Err(_) => Err(fail(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))),
            };
        };
        // `run_in` blocks while its own thread works inside the namespace.
        let dialled = tokio::task::spawn_blocking(move || {
            let ns = netns::NetNs::open(&path).map_err(std::io::Error::other)?;
            ns.run_in(|| std::net::TcpStream::connect_timeout(&address, DIAL_TIMEOUT))
                .map_err(std::io::Error::other)?
        })
        .await
        .map_err(|e| fail(std::io::Error::other(e)))?
        .map_err(fail)?;
        dialled.set_nonblocking(true).map_err(fail)?;
        TcpStream::from_std(dialled).map_err(fail)
    }
}

/// A streaming exec's command.
struct ExecControl {
    container: String,
    session: ExecSession,
}

#[async_trait]
impl ProcessControl for ExecControl {
    async fn wait(&mut self) -> Result<i32, BackendError> {
        self.session
            .wait()
            .await
            .map_err(|e| BackendError::Runtime(e.into()))
    }

    async fn resize(&mut self, size: TerminalSize) -> Result<(), BackendError> {
        self.session
            .resize(size.width, size.height)
            .map_err(|e| BackendError::Runtime(e.into()))
    }

    async fn client_gone(&mut self) {
        tracing::info!(container = %self.container, "exec client gone; killing the command");
        self.session.kill().await;
    }
}

/// An attach: the task splitting the monitor's frames, and a connection
/// for resizes once one is asked for.
struct AttachControl {
    container: String,
    sock: PathBuf,
    demux: Option<JoinHandle<Result<i32, BackendError>>>,
    resizer: Option<MonitorClient>,
    _stdin: Option<OwnedWriteHalf>,
}

impl Drop for AttachControl {
    fn drop(&mut self) {
        if let Some(demux) = &self.demux {
            demux.abort();
        }
    }
}

#[async_trait]
impl ProcessControl for AttachControl {
    async fn wait(&mut self) -> Result<i32, BackendError> {
        let Some(demux) = self.demux.as_mut() else {
            return Ok(0);
        };
        let ended = demux.await;
        self.demux = None;
        ended
            .map_err(|e| BackendError::failed(format!("container {}: attach", self.container), e))?
    }

    async fn resize(&mut self, size: TerminalSize) -> Result<(), BackendError> {
        if self.resizer.is_none() {
            let client = MonitorClient::connect(&self.container, &self.sock).await;
            self.resizer = Some(client.map_err(|e| BackendError::Runtime(e.into()))?);
        }
        let Some(monitor) = self.resizer.as_mut() else {
            return Ok(());
        };
        let resized = monitor.resize(size.width, size.height).await;
        if resized.is_err() {
            self.resizer = None;
        }
        resized.map_err(|e| BackendError::Runtime(e.into()))
    }

    async fn client_gone(&mut self) {
        // The container keeps running; only the monitor connection ends.
        if let Some(demux) = self.demux.take() {
            demux.abort();
        }
    }
}

/// Opens an attach connection to the monitor at `sock`.
async fn handshake(
    id: &str,
    sock: &Path,
) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf), BackendError> {
    let stream = UnixStream::connect(sock).await.map_err(|e| {
        BackendError::failed(format!("container {id}: monitor {}", sock.display()), e)
    })?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let fail = |e| BackendError::failed(format!("container {id}: monitor"), e);
    for (line, expect) in [
        (
            format!("hello {}", monitor::VERSION),
            format!("ok {}", monitor::VERSION),
        ),
        ("attach".to_string(), "ok".to_string()),
    ] {
        w.write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(fail)?;
        let mut reply = String::new();
        (&mut r)
            .take(4096)
            .read_line(&mut reply)
            .await
            .map_err(fail)?;
        if reply.trim_end() != expect {
            let refused = format!("refused {line:?}: {reply:?}");
            return Err(BackendError::failed(
                format!("container {id}: monitor"),
                refused,
            ));
        }
    }
    Ok((r, w))
}

/// Splits the monitor's output frames into the two pipes until the exit
/// frame (the container exited: 0) or a broken connection, then closes
/// the pipes.
async fn demux(
    id: String,
    mut frames: BufReader<OwnedReadHalf>,
    mut stdout: WriteHalf<SimplexStream>,
    mut stderr: WriteHalf<SimplexStream>,
) -> Result<i32, BackendError> {
    let ended = split_frames(&id, &mut frames, &mut stdout, &mut stderr).await;
    let _ = stdout.shutdown().await;
    let _ = stderr.shutdown().await;
    ended
}

async fn split_frames(
    id: &str,
    frames: &mut BufReader<OwnedReadHalf>,
    stdout: &mut WriteHalf<SimplexStream>,
    stderr: &mut WriteHalf<SimplexStream>,
) -> Result<i32, BackendError> {
    let fail = |e| BackendError::failed(format!("container {id}: monitor"), e);
    loop {
        let mut header = [0u8; 5];
        frames.read_exact(&mut header).await.map_err(fail)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_MONITOR_FRAME {
            let refused = format!("monitor frame of {len} bytes");
            return Err(BackendError::failed(format!("container {id}"), refused));
        }
        let mut data = vec![0u8; len];
        frames.read_exact(&mut data).await.map_err(fail)?;
        // A pipe nobody reads any more (the client left) drops its output.
        let _ = match header[0] {
            FRAME_STDOUT => stdout.write_all(&data).await,
            FRAME_STDERR => stderr.write_all(&data).await,
            FRAME_EXIT => return Ok(0),
            _ => Ok(()),
        };
    }
}
