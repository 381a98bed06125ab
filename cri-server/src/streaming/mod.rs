//! The streaming server behind Exec, Attach and PortForward.
//!
//! A CRI call stores its request under a single-use token and returns
//! `http://<address>/<verb>/<token>`; the client (kubelet, crictl) then
//! connects there and upgrades the HTTP connection to WebSocket or SPDY/3.1.
//! An unknown, reused or expired token gets 404.
//!
//! The server listens on loopback with a random port by default
//! (`[streaming] address`); tokens live `[streaming] token_ttl_seconds`.
//! With `tls_cert` and `tls_key` it speaks TLS and hands out `https` URLs
//! (see [`tls`]).

pub mod attach;
pub mod exec;
pub mod port_forward;
pub mod protocol;
pub mod spdy;
pub mod streams;
pub mod tls;
pub mod tokens;
pub mod websocket;

use crate::accept::Limits;
use crate::config::StreamingConfig;
use crate::daemon::Daemon;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use protocol::StreamRequest;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokens::TokenStore;
use websocket::WsProtocol;

/// Why the streaming server could not start or a URL could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// The listening socket could not be bound.
    #[error("streaming server {address}: bind: {source}")]
    Bind {
        /// The configured address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// No token could be made.
    #[error(transparent)]
    Token(#[from] tokens::TokenError),
}

/// The streaming server: its address, its tokens, and (until
/// [`StreamingServer::spawn`]) its listening socket.
///
/// # Examples
///
/// ```no_run
/// use cri_server::config::StreamingConfig;
/// use cri_server::streaming::{protocol::StreamRequest, StreamingServer};
///
/// # async fn demo() -> Result<(), cri_server::streaming::StreamingError> {
/// let server = StreamingServer::bind(&StreamingConfig::default()).await?;
/// let url = server.url(StreamRequest::PortForward { sandbox_id: "p1".into(), ports: vec![80] })?;
/// assert!(url.starts_with("http://127.0.0.1:"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamingServer {
    base_url: String,
    tokens: TokenStore<StreamRequest>,
    listener: Mutex<Option<tokio::net::TcpListener>>,
    tls: Option<Arc<tls::TlsFiles>>,
}

impl StreamingServer {
    /// Binds `config.address` (port 0 picks a free port).
    pub async fn bind(config: &StreamingConfig) -> Result<StreamingServer, StreamingError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let (cert, key) = (cert.clone(), key.clone());
                let files = tokio::task::spawn_blocking(move || tls::TlsFiles::load(cert, key))
                    .await
                    .map_err(|e| tls::TlsError {
                        path: config.tls_cert.clone().unwrap_or_default(),
                        reason: e.to_string(),
                    })??;
                Some(Arc::new(files))
            }
            _ => None,
        };
        let bind_error = |source| StreamingError::Bind {
            address: config.address.clone(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(&config.address)
            .await
            .map_err(bind_error)?;
        let local: SocketAddr = listener.local_addr().map_err(bind_error)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(StreamingServer {
            base_url: format!("{scheme}://{local}"),
            tokens: TokenStore::new(Duration::from_secs(config.token_ttl_seconds)),
            listener: Mutex::new(Some(listener)),
            tls,
        })
    }

    /// The URL a client redeems once for `request`.
    pub fn url(&self, request: StreamRequest) -> Result<String, StreamingError> {
        let verb = request.verb();
        let token = self.tokens.insert(request)?;
        Ok(format!("{}/{verb}/{token}", self.base_url))
    }

    /// Starts serving in the background. The daemon owns the server, so the
    /// server learns the daemon only now; a second call does nothing.
    pub fn spawn(&self, daemon: Arc<Daemon>) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(listener) = listener else { return };
        tracing::info!(url = %self.base_url, "streaming server listening");
        let tls = self.tls.clone();
        tokio::spawn(crate::accept::serve_forever(
            listener,
            "streaming",
            Limits::STREAMING,
            move |stream, peer| {
                let daemon = Arc::clone(&daemon);
                let tls = tls.clone();
                async move {
                    let Some(tls) = tls else {
                        serve_connection(daemon, stream, peer).await;
                        return;
                    };
                    let acceptor = tls.acceptor().await;
                    // A client that never finishes its handshake must not
                    // hold a task and a socket forever.
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(daemon, stream, peer).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "streaming TLS handshake"),
                        Err(_) => tracing::debug!(%peer, "streaming TLS handshake timed out"),
                    }
                }
            },
        ));
    }
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 (with upgrades) on one accepted connection.
async fn serve_connection<IO>(daemon: Arc<Daemon>, stream: IO, peer: SocketAddr)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let daemon = Arc::clone(&daemon);
        async move { Ok::<_, Infallible>(route(daemon, req).await) }
    });
    // Slow or idle request headers end the connection; an upgraded session
    // is no longer HTTP and lives as long as it is used.
    let conn = Limits::STREAMING
        .http1()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "streaming connection");
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Redeems the token in the path and upgrades the connection.
async fn route(daemon: Arc<Daemon>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let Some((verb, token)) = path.split_once('/') else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let Some(request) = daemon.streaming.tokens.take(token) else {
        return plain(StatusCode::NOT_FOUND, "unknown or expired token");
    };
    if request.verb() != verb {
        return plain(StatusCode::NOT_FOUND, "unknown or expired token");
    }
    let upgrade = header(&req, "upgrade").to_ascii_lowercase();
    if upgrade == "websocket" {
        return upgrade_websocket(daemon, req, request);
    }
    if upgrade.starts_with("spdy/3.1") {
        return spdy::upgrade(daemon, &mut req, request);
    }
    plain(
        StatusCode::BAD_REQUEST,
        "expected Upgrade: websocket or Upgrade: SPDY/3.1",
    )
}

fn upgrade_websocket(
    daemon: Arc<Daemon>,
    mut req: Request<Incoming>,
    request: StreamRequest,
) -> Response<Full<Bytes>> {
    let key = header(&req, "sec-websocket-key").to_string();
    if key.is_empty() || header(&req, "sec-websocket-version") != "13" {
        return plain(StatusCode::BAD_REQUEST, "bad WebSocket handshake");
    }
    let offered = header(&req, "sec-websocket-protocol").to_string();
    if let StreamRequest::PortForward { sandbox_id, ports } = request {
        return upgrade_websocket_port_forward(daemon, req, sandbox_id, ports, &key, &offered);
    }
    let Some(protocol) = WsProtocol::negotiate(&offered) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "no supported WebSocket subprotocol (v5.channel.k8s.io, v4.channel.k8s.io, …)",
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade");
                return;
            }
        };
        let ws = websocket::accept(TokioIo::new(upgraded)).await;
        run_session(daemon, request, |client| {
            websocket::serve(ws, protocol, client)
        })
        .await;
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut builder = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept);
    if !offered.is_empty() {
        builder = builder.header("sec-websocket-protocol", protocol.name());
    }
    builder
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// Port forwarding over WebSocket: the ports come from the URL's `port`
/// query parameters, else from the PortForward call.
fn upgrade_websocket_port_forward(
    daemon: Arc<Daemon>,
    mut req: Request<Incoming>,
    sandbox_id: String,
    requested: Vec<i32>,
    key: &str,
    offered: &str,
) -> Response<Full<Bytes>> {
    let Some((name, framing)) = port_forward::negotiate_ws(offered) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "no supported WebSocket subprotocol for port forwarding",
        );
    };
    let mut ports = match port_forward::ports_from_query(req.uri().query().unwrap_or("")) {
        Ok(ports) => ports,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if ports.is_empty() {
        ports = requested
            .into_iter()
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
    }
    let max = match framing {
        WsProtocol::V4Base64 => port_forward::MAX_WS_BASE64_PORTS,
        _ => port_forward::MAX_WS_PORTS,
    };
    if ports.is_empty() || ports.len() > max {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!("between 1 and {max} ports with {name}"),
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = websocket::accept(TokioIo::new(upgraded)).await;
                port_forward::serve_websocket(ws, framing, daemon, sandbox_id, ports).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade"),
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", name)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// Starts the exec or attach behind `request` and lets `carry` move its
/// streams until either ends.
async fn run_session<F, Fut>(daemon: Arc<Daemon>, request: StreamRequest, carry: F)
where
    F: FnOnce(streams::ClientSide) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    match request {
        StreamRequest::Exec {
            container_id,
            cmd,
            tty,
            stdin,
            stdout,
            stderr,
        } => {
            let (streams, client) = streams::pair(stdin);
            let spec = exec::ExecSpec {
                container_id,
                cmd,
                tty,
                stdout,
                stderr,
            };
            let task = tokio::spawn(exec::run(daemon, spec, streams));
            carry(client).await;
            // The client side is gone: the exec notices and cleans up.
            let _ = task.await;
        }
        StreamRequest::Attach {
            container_id,
            tty: _,
            stdin,
            stdout,
            stderr,
        } => {
            let (streams, client) = streams::pair(stdin);
            let spec = attach::AttachSpec {
                container_id,
                stdout,
                stderr,
            };
            let task = tokio::spawn(attach::run(daemon, spec, streams));
            carry(client).await;
            let _ = task.await;
        }
        // Served by `port_forward` (WebSocket) or the SPDY session instead.
        StreamRequest::PortForward { .. } => {}
    }
}
