//! What a streaming URL stands for: the Exec, Attach or PortForward request
//! a runtime's CRI call stored under a single-use token.
//!
//! These are the crate's own small types, not the CRI messages: a runtime
//! fills them from its CRI requests once it has checked them (the container
//! or pod exists, the ports are in range).

/// A command to run in a container (CRI `ExecRequest`).
///
/// # Examples
///
/// ```
/// use cri_streaming::{ExecRequest, StreamRequest};
///
/// let exec = ExecRequest {
///     container_id: "c1".into(),
///     cmd: vec!["echo".into(), "hi".into()],
///     stdout: true,
///     ..ExecRequest::default()
/// };
/// assert_eq!(StreamRequest::from(exec).verb(), "exec");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// The container.
    pub container_id: String,
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Run it on a terminal (stdout and stderr merged).
    pub tty: bool,
    /// Give it the client's stdin.
    pub stdin: bool,
    /// Send its stdout.
    pub stdout: bool,
    /// Send its stderr (kubelet never asks for it with a terminal).
    pub stderr: bool,
}

/// The container's main process (CRI `AttachRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// The container.
    pub container_id: String,
    /// The container runs on a terminal.
    pub tty: bool,
    /// Forward the client's stdin.
    pub stdin: bool,
    /// Send stdout.
    pub stdout: bool,
    /// Send stderr.
    pub stderr: bool,
}

/// TCP ports inside a pod's network (CRI `PortForwardRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortForwardRequest {
    /// The pod.
    pub pod_sandbox_id: String,
    /// The ports the caller named. SPDY clients name the port again on
    /// every stream; WebSocket clients may name them in the URL's query,
    /// else these are used.
    pub ports: Vec<u16>,
}

/// What a streaming token was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    /// A command to run in a container.
    Exec(ExecRequest),
    /// The container's main process.
    Attach(AttachRequest),
    /// TCP ports inside a pod's network namespace.
    PortForward(PortForwardRequest),
}

impl StreamRequest {
    /// The URL path segment (`exec`, `attach`, `portforward`).
    pub fn verb(&self) -> &'static str {
        match self {
            StreamRequest::Exec(_) => "exec",
            StreamRequest::Attach(_) => "attach",
            StreamRequest::PortForward(_) => "portforward",
        }
    }
}

impl From<ExecRequest> for StreamRequest {
    fn from(request: ExecRequest) -> Self {
        StreamRequest::Exec(request)
    }
}

impl From<AttachRequest> for StreamRequest {
    fn from(request: AttachRequest) -> Self {
        StreamRequest::Attach(request)
    }
}

impl From<PortForwardRequest> for StreamRequest {
    fn from(request: PortForwardRequest) -> Self {
        StreamRequest::PortForward(request)
    }
}

/// An exec or an attach: a process whose stdio the session carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Exec(ExecRequest),
    Attach(AttachRequest),
}

impl Command {
    /// The container.
    pub(crate) fn container_id(&self) -> &str {
        match self {
            Command::Exec(r) => &r.container_id,
            Command::Attach(r) => &r.container_id,
        }
    }

    /// `(tty, stdin, stdout, stderr)` as requested.
    pub(crate) fn flags(&self) -> (bool, bool, bool, bool) {
        match self {
            Command::Exec(r) => (r.tty, r.stdin, r.stdout, r.stderr),
            Command::Attach(r) => (r.tty, r.stdin, r.stdout, r.stderr),
        }
    }

    /// What the client's stdin EOF becomes before the close: on an exec's
    /// terminal, EOF is the EOF character (^D); an attach passes the close
    /// on (the container decides with `stdin_once`).
    pub(crate) fn eof_byte(&self) -> Option<u8> {
        match self {
            Command::Exec(r) if r.tty => Some(0x04),
            _ => None,
        }
    }

    /// Whether sizes are applied again after they change: a runtime's exec
    /// copies our terminal's size on SIGWINCH only once its handler is
    /// installed, and a size that arrives while it starts would be lost.
    pub(crate) fn reapplies_sizes(&self) -> bool {
        matches!(self, Command::Exec(_))
    }
}
