//! A small test-only client for the remotecommand WebSocket protocols
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io` and their base64 variant).

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What a finished session produced, by channel.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// Channel 1.
    pub stdout: Vec<u8>,
    /// Channel 2.
    pub stderr: Vec<u8>,
    /// Channel 3 (a `metav1.Status` JSON from v4 on).
    pub error: Vec<u8>,
}

impl Collected {
    /// The error channel as JSON (`Null` when empty or not JSON).
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&self.error).unwrap_or(serde_json::Value::Null)
    }
}

/// A connected WebSocket remotecommand session.
pub struct WsSession {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    base64: bool,
    /// The subprotocol the server chose.
    pub protocol: String,
}

/// Why connecting failed: the HTTP status when the server refused.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered with this status instead of upgrading.
    Status(u16),
    /// Anything else.
    Other(String),
}

/// Connects to a streaming URL (`http://…`) offering `protocols`.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<WsSession, ConnectError> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut request = ws_url
        .into_client_request()
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    if !protocols.is_empty() {
        let value = protocols.join(", ");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            value
                .parse()
                .map_err(|_| ConnectError::Other("protocol header".into()))?,
        );
    }
    let (ws, response) = match tokio_tungstenite::connect_async(request).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            return Err(ConnectError::Status(r.status().as_u16()))
        }
        Err(e) => return Err(ConnectError::Other(e.to_string())),
    };
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok(WsSession {
        ws,
        base64: protocol.contains("base64"),
        protocol,
    })
}

impl WsSession {
    async fn send(&mut self, channel: u8, data: &[u8]) {
        let message = if self.base64 {
            let mut text = String::from(char::from(b'0' + channel));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
            Message::Text(text.into())
        } else {
            let mut bytes = vec![channel];
            bytes.extend_from_slice(data);
            Message::Binary(bytes.into())
        };
        self.ws.send(message).await.expect("websocket send");
    }

    /// Writes to the command's stdin.
    pub async fn stdin(&mut self, data: &[u8]) {
        self.send(0, data).await;
    }

    /// Sends a terminal size.
    pub async fn resize(&mut self, width: u16, height: u16) {
        let json = format!("{{\"Width\":{width},\"Height\":{height}}}");
        self.send(4, json.as_bytes()).await;
    }

    /// Closes stdin (v5 only: channel 255 naming channel 0).
    pub async fn close_stdin(&mut self) {
        self.send(255, &[0]).await;
    }

    /// Reads one message: `(channel, data)`, `None` at the end.
    pub async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            let message = self.ws.next().await?.ok()?;
            let (channel, data) = match message {
                Message::Binary(b) if !b.is_empty() => (b[0], b[1..].to_vec()),
                Message::Text(t) if !t.is_empty() => {
                    let bytes = t.as_bytes();
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(&bytes[1..])
                        .ok()?;
                    (bytes[0] - b'0', data)
                }
                Message::Close(_) => return None,
                _ => continue,
            };
            return Some((channel, data));
        }
    }

    /// Reads stdout until it contains `needle` (or the session ends), and
    /// returns everything read.
    pub async fn read_until(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(needle) {
            match self.next().await {
                Some((1, data)) => seen.extend(data),
                Some(_) => {}
                None => break,
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// Reads until the server closes and returns what came on each channel.
    pub async fn collect(mut self) -> Collected {
        let mut c = Collected::default();
        while let Some((channel, data)) = self.next().await {
            match channel {
                1 => c.stdout.extend(data),
                2 => c.stderr.extend(data),
                3 => c.error.extend(data),
                _ => {}
            }
        }
        c
    }

    /// Drops the connection without a close handshake, as a crashed client.
    pub fn abandon(self) {
        drop(self.ws);
    }
}
