//! What the server asks of a container runtime: [`StreamBackend`].
//!
//! The server speaks the protocols (tokens, SPDY, WebSocket, TLS) and moves
//! bytes; the backend only starts things. For Exec and Attach it hands back
//! a [`Process`]: pipes for stdio and a [`ProcessControl`] to wait for the
//! end, resize the terminal and learn that the client left. The server then
//! pumps the pipes to and from the client, reports the exit code and, when
//! the client goes away, tells the process. For PortForward it dials one
//! port of a pod and hands back the connected socket.

use crate::protocol::TerminalSize;
use crate::request::{AttachRequest, ExecRequest};
use async_trait::async_trait;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A readable end of a process's output.
pub type ProcessReader = Pin<Box<dyn AsyncRead + Send>>;
/// The writable end of a process's stdin.
pub type ProcessWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A boxed error a backend wraps (the runtime's own error type).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a backend could not do what the client asked.
///
/// The server reports it to the client: on the error stream for Exec and
/// Attach (a `metav1.Status` with the message), on the port's error stream
/// for PortForward.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No container with this id.
    #[error("container {id}: not found")]
    ContainerNotFound {
        /// The id asked for.
        id: String,
    },
    /// No pod with this id.
    #[error("pod {id}: not found")]
    PodNotFound {
        /// The id asked for.
        id: String,
    },
    /// The container exists but is not running.
    #[error("container {id} is not running")]
    NotRunning {
        /// The container.
        id: String,
    },
    /// The runtime's own error, which already names what failed.
    #[error(transparent)]
    Runtime(BoxError),
    /// Anything else: the object concerned and the error.
    #[error("{object}: {source}")]
    Failed {
        /// What failed, e.g. `container 3f2a…` or `pod 9c1e…: port 8080`.
        object: String,
        /// Why.
        source: BoxError,
    },
}

impl BackendError {
    /// A [`BackendError::Failed`] for `object`.
    ///
    /// # Examples
    ///
    /// ```
    /// use cri_streaming::BackendError;
    ///
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let e = BackendError::failed("pod p1: port 8080", refused);
    /// assert_eq!(e.to_string(), "pod p1: port 8080: connection refused");
    /// ```
    pub fn failed(object: impl std::fmt::Display, source: impl Into<BoxError>) -> BackendError {
        BackendError::Failed {
            object: object.to_string(),
            source: source.into(),
        }
    }
}

/// A started exec, or an attached container process, as the server drives
/// it: the client's stdin goes to `stdin`, `stdout` and `stderr` go to the
/// client, and `control` says when it ended.
///
/// A pipe the request did not ask for may be `None`; one the backend gives
/// anyway is read and dropped (the process never blocks on a full pipe).
pub struct Process {
    /// Where the client's stdin goes; shut down at the client's EOF.
    pub stdin: Option<ProcessWriter>,
    /// The process's stdout (a terminal's output with a TTY).
    pub stdout: Option<ProcessReader>,
    /// The process's stderr; `None` on a terminal.
    pub stderr: Option<ProcessReader>,
    /// Waiting, resizing, and what to do when the client leaves.
    pub control: Box<dyn ProcessControl>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish_non_exhaustive()
    }
}

/// The running side of a [`Process`].
#[async_trait]
pub trait ProcessControl: Send {
    /// Waits for the end: the exit code of an exec's command (0 is
    /// success), 0 for an attach whose container exited, or why the
    /// process failed. The server races it against resizes and the
    /// client's departure and calls it again, so it must be cancel-safe.
    async fn wait(&mut self) -> Result<i32, BackendError>;

    /// Applies a terminal size from the client. The default ignores it.
    async fn resize(&mut self, size: TerminalSize) -> Result<(), BackendError> {
        let _ = size;
        Ok(())
    }

    /// The client left before the end. An exec stops its command and
    /// everything it started; an attach leaves the container running (the
    /// default does nothing). The server then lets the stdin pump shut
    /// `stdin` down.
    async fn client_gone(&mut self) {}
}

/// The runtime behind the streaming server.
///
/// The server calls it only for requests a runtime stored under a token
/// ([`crate::StreamingServer::url`]), once the client redeemed the token.
/// Dropping what it returns must release what it holds.
///
/// # Examples
///
/// [`crate::testing::EchoBackend`] is a complete backend without
/// containers; a runtime's adapter has the same shape:
///
/// ```
/// use async_trait::async_trait;
/// use cri_streaming::{AttachRequest, BackendError, ExecRequest, Process, StreamBackend};
///
/// struct NoContainers;
///
/// #[async_trait]
/// impl StreamBackend for NoContainers {
///     async fn exec(&self, request: &ExecRequest) -> Result<Process, BackendError> {
///         Err(BackendError::ContainerNotFound { id: request.container_id.clone() })
///     }
///     async fn attach(&self, request: &AttachRequest) -> Result<Process, BackendError> {
///         Err(BackendError::ContainerNotFound { id: request.container_id.clone() })
///     }
///     async fn port_forward_dial(
///         &self,
///         pod_sandbox_id: &str,
///         _port: u16,
///     ) -> Result<tokio::net::TcpStream, BackendError> {
///         Err(BackendError::PodNotFound { id: pod_sandbox_id.to_owned() })
///     }
/// }
/// ```
#[async_trait]
pub trait StreamBackend: Send + Sync + 'static {
    /// Starts `request.cmd` in the container, with stdin when
    /// `request.stdin` and on a terminal when `request.tty`.
    async fn exec(&self, request: &ExecRequest) -> Result<Process, BackendError>;

    /// Attaches to the container's main process: its output from now on,
    /// its stdin when `request.stdin`.
    async fn attach(&self, request: &AttachRequest) -> Result<Process, BackendError>;

    /// Connects to `port` on the pod's loopback, inside the pod's network.
    /// Called once per forwarded connection.
    async fn port_forward_dial(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> Result<TcpStream, BackendError>;
}
