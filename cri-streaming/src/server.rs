//! The streaming server: its configuration, its tokens, its listener, and
//! the HTTP front that redeems a token and upgrades the connection to
//! WebSocket or SPDY/3.1.

use crate::accept::Limits;
use crate::backend::StreamBackend;
use crate::request::{Command, PortForwardRequest, StreamRequest};
use crate::tls::{TlsError, TlsFiles};
use crate::tokens::{TokenError, TokenStore};
use crate::websocket::{self, WsProtocol};
use crate::{command, port_forward, spdy, Backend};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how the server listens.
///
/// # Examples
///
/// ```
/// use cri_streaming::ServerConfig;
/// use std::time::Duration;
///
/// let config = ServerConfig::default();
/// assert_eq!(config.address, "127.0.0.1:0");
/// assert_eq!(config.token_ttl, Duration::from_secs(60));
/// assert!(config.tls.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `ip:port` to listen on; port 0 picks a free port. The default stays
    /// on loopback: only the local kubelet should reach it.
    pub address: String,
    /// How long a URL handed out by [`StreamingServer::url`] stays valid.
    pub token_ttl: Duration,
    /// Serve TLS (and hand out `https` URLs) with these files.
    pub tls: Option<TlsPaths>,
    /// Connection and request-header limits.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            address: "127.0.0.1:0".into(),
            token_ttl: Duration::from_secs(60),
            tls: None,
            limits: Limits::STREAMING,
        }
    }
}

/// The PEM files of the server's certificate; both are read again when they
/// change (see [`crate::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

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
    Tls(#[from] TlsError),
    /// No token could be made.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The streaming server: its address, its tokens, and (until
/// [`StreamingServer::spawn`]) its listening socket.
///
/// A runtime binds it at start, stores each Exec, Attach or PortForward
/// request it accepted with [`StreamingServer::url`] (the URL goes back in
/// the CRI response) and serves with [`StreamingServer::spawn`] once its
/// [`StreamBackend`] exists. An unknown, reused or expired token gets 404.
///
/// # Examples
///
/// ```
/// use cri_streaming::{PortForwardRequest, ServerConfig, StreamingServer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cri_streaming::StreamingError> {
/// let server = StreamingServer::bind(&ServerConfig::default()).await?;
/// let url = server.url(PortForwardRequest { pod_sandbox_id: "p1".into(), ports: vec![80] })?;
/// assert!(url.starts_with("http://127.0.0.1:"));
/// assert!(url.contains("/portforward/"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamingServer {
    base_url: String,
    local_addr: SocketAddr,
    tokens: Arc<TokenStore<StreamRequest>>,
    listener: Mutex<Option<tokio::net::TcpListener>>,
    tls: Option<Arc<TlsFiles>>,
    limits: Limits,
}

impl StreamingServer {
    /// Binds `config.address` and reads the TLS files, if any; a pair that
    /// cannot be used is an error naming the file.
    pub async fn bind(config: &ServerConfig) -> Result<StreamingServer, StreamingError> {
        let tls = match &config.tls {
            Some(paths) => Some(Arc::new(load_tls(paths).await?)),
            None => None,
        };
        let bind_error = |source| StreamingError::Bind {
            address: config.address.clone(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(&config.address)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(StreamingServer {
            base_url: format!("{scheme}://{local_addr}"),
            local_addr,
            tokens: Arc::new(TokenStore::new(config.token_ttl)),
            listener: Mutex::new(Some(listener)),
            tls,
            limits: config.limits,
        })
    }

    /// `http://ip:port` or `https://ip:port`: what every URL starts with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stores `request` under a fresh single-use token and returns the URL
    /// a client redeems once (`<base>/<verb>/<token>`), until the token's
    /// time to live has passed.
    pub fn url(&self, request: impl Into<StreamRequest>) -> Result<String, StreamingError> {
        let request = request.into();
        let verb = request.verb();
        let token = self.tokens.insert(request)?;
        Ok(format!("{}/{verb}/{token}", self.base_url))
    }

    /// Starts serving on a task of its own, each redeemed request served by
    /// `backend`. The runtime usually owns the server, so the server learns
    /// its backend only now. Returns the accept task; a second call does
    /// nothing and returns `None`.
    pub fn spawn<B: StreamBackend>(&self, backend: Arc<B>) -> Option<tokio::task::JoinHandle<()>> {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        tracing::info!(url = %self.base_url, "streaming server listening");
        let front = Arc::new(Front {
            backend,
            tokens: Arc::clone(&self.tokens),
            limits: self.limits,
        });
        let tls = self.tls.clone();
        Some(tokio::spawn(crate::accept::serve_forever(
            listener,
            "streaming",
            self.limits,
            move |stream, peer| accept(Arc::clone(&front), tls.clone(), stream, peer),
        )))
    }
}

/// Reads the TLS pair off the async workers.
async fn load_tls(paths: &TlsPaths) -> Result<TlsFiles, TlsError> {
    let (cert, key) = (paths.cert.clone(), paths.key.clone());
    tokio::task::spawn_blocking(move || TlsFiles::load(cert, key))
        .await
        .map_err(|e| TlsError {
            path: paths.cert.clone(),
            reason: e.to_string(),
        })?
}

/// What every connection needs: the backend, the tokens, the limits.
struct Front {
    backend: Backend,
    tokens: Arc<TokenStore<StreamRequest>>,
    limits: Limits,
}

/// Serves one accepted connection, after a TLS handshake when configured.
async fn accept<IO>(front: Arc<Front>, tls: Option<Arc<TlsFiles>>, stream: IO, peer: SocketAddr)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Some(tls) = tls else {
        serve_connection(front, stream, peer).await;
        return;
    };
    let acceptor = tls.acceptor().await;
    // A client that never finishes its handshake must not hold a task and
    // a socket forever.
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_connection(front, stream, peer).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "streaming TLS handshake"),
        Err(_) => tracing::debug!(%peer, "streaming TLS handshake timed out"),
    }
}

/// Serves HTTP/1.1 (with upgrades) on one connection.
async fn serve_connection<IO>(front: Arc<Front>, stream: IO, peer: SocketAddr)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = front.limits;
    let service = hyper::service::service_fn(move |req| {
        let front = Arc::clone(&front);
        async move { Ok::<_, Infallible>(route(&front, req)) }
    });
    // Slow or idle request headers end the connection; an upgraded session
    // is no longer HTTP and lives as long as it is used.
    let conn = limits
        .http1()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "streaming connection");
    }
}

/// A plain-text answer.
pub(crate) fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response
}

/// The first value of header `name`, or "".
pub(crate) fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Redeems the token in the path and upgrades the connection.
fn route(front: &Front, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let Some((verb, token)) = path.split_once('/') else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let Some(request) = front.tokens.take(token) else {
        return plain(StatusCode::NOT_FOUND, "unknown or expired token");
    };
    if request.verb() != verb {
        return plain(StatusCode::NOT_FOUND, "unknown or expired token");
    }
    let backend = Arc::clone(&front.backend);
    let upgrade = header(&req, "upgrade").to_ascii_lowercase();
    if upgrade == "websocket" {
        return upgrade_websocket(backend, req, request);
    }
    if upgrade.starts_with("spdy/3.1") {
        return spdy::upgrade(backend, &mut req, request);
    }
    plain(
        StatusCode::BAD_REQUEST,
        "expected Upgrade: websocket or Upgrade: SPDY/3.1",
    )
}

/// Answers a WebSocket upgrade: 101 with the negotiated subprotocol, then
/// the session runs on the upgraded connection.
fn upgrade_websocket(
    backend: Backend,
    mut req: Request<Incoming>,
    request: StreamRequest,
) -> Response<Full<Bytes>> {
    let key = header(&req, "sec-websocket-key").to_string();
    if key.is_empty() || header(&req, "sec-websocket-version") != "13" {
        return plain(StatusCode::BAD_REQUEST, "bad WebSocket handshake");
    }
    let offered = header(&req, "sec-websocket-protocol").to_string();
    let command = match request {
        StreamRequest::PortForward(forward) => {
            return upgrade_websocket_port_forward(backend, req, forward, &key, &offered)
        }
        StreamRequest::Exec(exec) => Command::Exec(exec),
        StreamRequest::Attach(attach) => Command::Attach(attach),
    };
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
        let (client, task) = command::start(backend, command);
        websocket::serve(ws, protocol, client).await;
        // The client side is gone: the command notices and cleans up.
        let _ = task.await;
    });
    let subprotocol = (!offered.is_empty()).then(|| protocol.name());
    switching_to_websocket(&key, subprotocol)
}

/// Port forwarding over WebSocket: the ports come from the URL's `port`
/// query parameters, else from the PortForward call.
fn upgrade_websocket_port_forward(
    backend: Backend,
    mut req: Request<Incoming>,
    request: PortForwardRequest,
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
        ports = request.ports;
    }
    let max = port_forward::max_ws_ports(framing);
    if ports.is_empty() || ports.len() > max {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!("between 1 and {max} ports with {name}"),
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let pod = request.pod_sandbox_id;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = websocket::accept(TokioIo::new(upgraded)).await;
                port_forward::serve_websocket(ws, framing, backend, pod, ports).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade"),
        }
    });
    switching_to_websocket(key, Some(name))
}

/// The 101 answer to a WebSocket handshake with `key`.
fn switching_to_websocket(key: &str, subprotocol: Option<&str>) -> Response<Full<Bytes>> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut builder = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept);
    if let Some(name) = subprotocol {
        builder = builder.header("sec-websocket-protocol", name);
    }
    builder
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}
