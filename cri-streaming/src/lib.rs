//! The Kubernetes streaming server behind CRI Exec, Attach and PortForward.
//!
//! A CRI runtime answers `Exec`, `Attach` and `PortForward` with a URL; the
//! client (kubelet, crictl, kubectl through the API server) connects there
//! and upgrades the HTTP connection to one of the streaming protocols. This
//! crate is that server, for any runtime:
//!
//! - **SPDY/3.1** ([`spdy`]: framing, zlib header blocks, flow control),
//!   carrying `v4`/`v3`/`v2`/legacy `channel.k8s.io` remotecommand and
//!   `portforward.k8s.io`;
//! - **WebSocket** ([`websocket`]) with `v5.channel.k8s.io`,
//!   `v4.channel.k8s.io`, their base64 variants and the legacy channel
//!   protocols, for remotecommand and port forwarding ([`port_forward`]);
//! - **single-use tokens** that expire ([`tokens`]): an unknown, reused or
//!   expired token gets 404;
//! - optional **TLS**, reloaded when the certificate files change ([`tls`]);
//! - **connection limits** and request-header timeouts on the listener
//!   ([`accept`]), so whatever reaches the port cannot exhaust the process.
//!
//! The runtime supplies a [`StreamBackend`]: start an exec, attach to a
//! container, dial a pod's port. Everything else (which streams a protocol
//! needs, pumping stdio, terminal sizes, exit codes as `metav1.Status`,
//! stopping an exec whose client left) is done here, the same way for every
//! protocol. [`testing::EchoBackend`] is a backend without containers for
//! tests.
//!
//! # Examples
//!
//! Serve the echo backend, hand out a URL for an exec, and redeem it with a
//! WebSocket client offering no subprotocol (the legacy binary
//! `channel.k8s.io`: one channel byte before each message, 1 is stdout):
//!
//! ```
//! use cri_streaming::testing::EchoBackend;
//! use cri_streaming::{ExecRequest, ServerConfig, StreamingServer};
//! use futures_util::StreamExt;
//! use std::sync::Arc;
//! use tokio_tungstenite::tungstenite::Message;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = StreamingServer::bind(&ServerConfig::default()).await?;
//! server.spawn(Arc::new(EchoBackend::default()));
//!
//! let url = server.url(ExecRequest {
//!     container_id: "c1".into(),
//!     cmd: vec!["echo".into(), "hello".into()],
//!     stdout: true,
//!     ..ExecRequest::default()
//! })?;
//! let ws_url = url.replacen("http://", "ws://", 1);
//! let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await?;
//! let mut stdout = Vec::new();
//! while let Some(Ok(Message::Binary(frame))) = ws.next().await {
//!     if frame.first() == Some(&1) {
//!         stdout.extend_from_slice(&frame[1..]);
//!     }
//! }
//! assert_eq!(stdout, b"hello\n");
//!
//! // The token was single-use.
//! assert!(tokio_tungstenite::connect_async(ws_url.as_str()).await.is_err());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod accept;
mod backend;
mod command;
pub mod port_forward;
pub mod protocol;
mod request;
mod server;
pub mod spdy;
mod streams;
pub mod testing;
pub mod tls;
pub mod tokens;
pub mod websocket;

pub use accept::Limits;
pub use backend::{
    BackendError, BoxError, Process, ProcessControl, ProcessReader, ProcessWriter, StreamBackend,
};
pub use protocol::TerminalSize;
pub use request::{AttachRequest, ExecRequest, PortForwardRequest, StreamRequest};
pub use server::{ServerConfig, StreamingError, StreamingServer, TlsPaths};

/// The backend as the server's tasks share it.
type Backend = std::sync::Arc<dyn StreamBackend>;
