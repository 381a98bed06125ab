//! Small clients for the server's tests: SPDY/3.1 on the crate's own
//! framing (the end-to-end tests in `tests/` use a client written apart
//! from it), WebSocket through tokio-tungstenite, and TLS trusting one
//! certificate.

#![allow(dead_code)]

use bytes::BytesMut;
use cri_streaming::spdy::frame::{Frame, FLAG_FIN};
use cri_streaming::spdy::header_block::{Decoder, Encoder};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The connection under a session: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A self-signed certificate for `localhost`: `(certificate PEM, key PEM)`.
pub fn certificate() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    (cert.cert.pem(), cert.key_pair.serialize_pem())
}

/// Connects to `host` over TLS, trusting only `ca_pem`, as `localhost`.
pub async fn tls(host: &str, ca_pem: &str) -> std::io::Result<Box<dyn Io>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(host).await?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    Ok(Box::new(stream))
}

/// `(host:port, path)` of an `http://` or `https://` URL.
pub fn split_url(url: &str) -> (String, String) {
    let rest = url.split_once("://").unwrap().1;
    let (host, path) = rest.split_once('/').unwrap();
    (host.to_string(), format!("/{path}"))
}

/// A SPDY session, client side.
pub struct Spdy {
    io: Box<dyn Io>,
    encoder: Encoder,
    decoder: Decoder,
    buf: BytesMut,
    next_id: u32,
    /// The protocol the server chose.
    pub protocol: String,
}

/// Upgrades `io` to SPDY for `path`, offering `protocols`; `Err(status)`
/// when the server answers otherwise (0: no answer).
pub async fn spdy_on(mut io: Box<dyn Io>, path: &str, protocols: &[&str]) -> Result<Spdy, u16> {
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
    for p in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    io.write_all(request.as_bytes()).await.map_err(|_| 0u16)?;
    let head = read_head(&mut io).await.ok_or(0u16)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 101 {
        return Err(status);
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok(Spdy {
        io,
        encoder: Encoder::new(),
        decoder: Decoder::new(),
        buf: BytesMut::new(),
        next_id: 1,
        protocol,
    })
}

/// Connects to a plain `http://` URL and upgrades to SPDY.
pub async fn spdy(url: &str, protocols: &[&str]) -> Result<Spdy, u16> {
    let (host, path) = split_url(url);
    let io = TcpStream::connect(&host).await.map_err(|_| 0u16)?;
    spdy_on(Box::new(io), &path, protocols).await
}

/// The HTTP response head, read byte by byte (nothing after it is taken).
async fn read_head(io: &mut Box<dyn Io>) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if io.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

impl Spdy {
    /// Writes a frame.
    pub async fn write(&mut self, frame: Frame) {
        self.io.write_all(&frame.encode()).await.expect("write");
    }

    /// Writes raw bytes (for protocol violations).
    pub async fn raw(&mut self, bytes: &[u8]) {
        let _ = self.io.write_all(bytes).await;
    }

    /// Opens a stream with `headers`; returns its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let block = self.encoder.encode(&headers).unwrap();
        let stream_id = self.next_id;
        self.next_id += 2;
        self.write(Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: block,
        })
        .await;
        stream_id
    }

    /// Opens a remotecommand stream of each kind; returns their ids.
    pub async fn open_kinds(&mut self, kinds: &[&str]) -> HashMap<String, u32> {
        let mut ids = HashMap::new();
        for kind in kinds {
            ids.insert(kind.to_string(), self.open(&[("streamType", kind)]).await);
        }
        ids
    }

    /// Sends DATA.
    pub async fn send(&mut self, stream_id: u32, data: &[u8], fin: bool) {
        let flags = if fin { FLAG_FIN } else { 0 };
        let data = bytes::Bytes::copy_from_slice(data);
        self.write(Frame::Data {
            stream_id,
            flags,
            data,
        })
        .await;
    }

    /// The next frame; `None` when the connection ends.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Ok(Some((frame, used))) = Frame::parse(&self.buf) {
                let _ = self.buf.split_to(used);
                if let Frame::SynReply { headers, .. } = &frame {
                    self.decoder.decode(headers).expect("reply headers");
                }
                return Some(frame);
            }
            if self.io.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// Reads until every stream in `streams` sent FIN or the session ends.
    pub async fn collect(&mut self, streams: &[u32]) -> HashMap<u32, Vec<u8>> {
        let mut data: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut open = streams.to_vec();
        while !open.is_empty() {
            match self.next().await {
                Some(Frame::Data {
                    stream_id,
                    flags,
                    data: d,
                }) => {
                    data.entry(stream_id).or_default().extend_from_slice(&d);
                    if flags & FLAG_FIN != 0 {
                        open.retain(|s| *s != stream_id);
                    }
                }
                Some(Frame::GoAway { .. }) | None => break,
                Some(_) => {}
            }
        }
        data
    }

    /// Reads until `stream` delivered `needle`; returns what it read.
    pub async fn read_until(&mut self, stream: u32, needle: &str) -> String {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(needle) {
            match self.next().await {
                Some(Frame::Data {
                    stream_id, data, ..
                }) if stream_id == stream => seen.extend_from_slice(&data),
                Some(Frame::GoAway { .. }) | None => break,
                Some(_) => {}
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }
}

/// A WebSocket session, client side.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to an `http://` URL over WebSocket offering `protocols`:
/// the session and the chosen subprotocol, or the HTTP status.
pub async fn ws(url: &str, protocols: &[&str]) -> Result<(Ws, String), u16> {
    let mut request = url
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        let value = protocols.join(", ").parse().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, response)) => {
            let protocol = response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Ok((ws, protocol))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// Sends `data` on `channel` in binary framing.
pub async fn ws_send(ws: &mut Ws, channel: u8, data: &[u8]) {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(data);
    ws.send(Message::Binary(bytes.into())).await.unwrap();
}

/// The next `(channel, payload)` in binary framing; `None` at the end.
pub async fn ws_next(ws: &mut Ws) -> Option<(u8, Vec<u8>)> {
    loop {
        match ws.next().await? {
            Ok(Message::Binary(b)) if !b.is_empty() => return Some((b[0], b[1..].to_vec())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Everything until the server closes, by channel (binary framing).
pub async fn ws_collect(ws: &mut Ws) -> HashMap<u8, Vec<u8>> {
    let mut seen: HashMap<u8, Vec<u8>> = HashMap::new();
    while let Some((channel, data)) = ws_next(ws).await {
        seen.entry(channel).or_default().extend(data);
    }
    seen
}

/// A TCP server on loopback that echoes what it receives; its port.
pub async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
