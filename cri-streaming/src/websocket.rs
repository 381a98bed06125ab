//! Remotecommand over WebSocket: one byte of channel number before every
//! message (`v5`, `v4` and the legacy `channel.k8s.io`), or the same as base64
//! text with an ASCII digit (`v4.base64`, `base64.channel.k8s.io`).

use crate::protocol::{parse_sizes, StreamKind, TerminalSize};
use crate::streams::{ClientSide, Output};
use base64::Engine;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A remotecommand WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsProtocol {
    /// `v5.channel.k8s.io`: v4 plus closing a single channel (stdin EOF).
    V5,
    /// `v4.channel.k8s.io`: binary, `metav1.Status` on the error channel.
    V4,
    /// `v4.base64.channel.k8s.io`.
    V4Base64,
    /// `channel.k8s.io`: binary, plain-text errors.
    V1,
    /// `base64.channel.k8s.io`.
    V1Base64,
}

impl WsProtocol {
    /// Every protocol, most preferred first.
    pub const ALL: [WsProtocol; 5] = [
        WsProtocol::V5,
        WsProtocol::V4,
        WsProtocol::V4Base64,
        WsProtocol::V1,
        WsProtocol::V1Base64,
    ];

    /// The subprotocol name.
    pub fn name(self) -> &'static str {
        match self {
            WsProtocol::V5 => "v5.channel.k8s.io",
            WsProtocol::V4 => "v4.channel.k8s.io",
            WsProtocol::V4Base64 => "v4.base64.channel.k8s.io",
            WsProtocol::V1 => "channel.k8s.io",
            WsProtocol::V1Base64 => "base64.channel.k8s.io",
        }
    }

    /// The best protocol among the client's `Sec-WebSocket-Protocol` offers;
    /// a client that offers none gets the legacy binary protocol.
    pub fn negotiate(offered: &str) -> Option<WsProtocol> {
        let offers: Vec<&str> = offered
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if offers.is_empty() {
            return Some(WsProtocol::V1);
        }
        WsProtocol::ALL
            .into_iter()
            .find(|p| offers.contains(&p.name()))
    }

    /// Whether messages are text: a channel character, then base64.
    pub fn base64(self) -> bool {
        matches!(self, WsProtocol::V4Base64 | WsProtocol::V1Base64)
    }

    /// Whether the error channel carries a `metav1.Status`.
    pub fn structured_errors(self) -> bool {
        !matches!(self, WsProtocol::V1 | WsProtocol::V1Base64)
    }
}

/// The largest message a client may send: stdin chunks are small.
const MAX_MESSAGE: usize = 1 << 20;

/// Wraps an upgraded connection as a server-side WebSocket.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> WebSocketStream<S> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_MESSAGE);
    config.max_frame_size = Some(MAX_MESSAGE);
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

/// Decodes one client message into `(channel, payload)`; `None` for a
/// message of the wrong kind, without a channel byte or with bad base64.
/// Never panics (fuzzed from `cri-streaming/fuzz/`).
pub fn decode(protocol: WsProtocol, message: Message) -> Option<(u8, Bytes)> {
    if protocol.base64() {
        let text = match message {
            Message::Text(t) => t,
            _ => return None,
        };
        let bytes = text.as_bytes();
        let channel = bytes.first()?.checked_sub(b'0')?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(&bytes[1..])
            .ok()?;
        Some((channel, Bytes::from(data)))
    } else {
        let data = match message {
            Message::Binary(b) => b,
            _ => return None,
        };
        let channel = *data.first()?;
        Some((channel, data.slice(1..)))
    }
}

/// The highest channel the base64 framing can carry: its channel is one
/// ASCII character, `'0' + channel`.
pub const MAX_BASE64_CHANNEL: u8 = 0x7f - b'0';

/// Encodes `data` for `channel`. With base64 framing a channel above
/// [`MAX_BASE64_CHANNEL`] cannot be written; callers never open one
/// (port forwarding caps its ports to fit), and it is clamped rather than
/// allowed to overflow.
pub fn encode(protocol: WsProtocol, channel: u8, data: &[u8]) -> Message {
    if protocol.base64() {
        let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        text.push(char::from(b'0' + channel.min(MAX_BASE64_CHANNEL)));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
        Message::Text(text.into())
    } else {
        let mut bytes = Vec::with_capacity(1 + data.len());
        bytes.push(channel);
        bytes.extend_from_slice(data);
        Message::Binary(bytes.into())
    }
}

/// Carries a remotecommand session over `ws` until the command ends (the
/// outcome is sent, then a close) or the client leaves (the session's output
/// receiver is dropped, which stops the command).
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    protocol: WsProtocol,
    client: ClientSide,
) {
    let (sink, stream) = ws.split();
    let ClientSide { stdin, resize, out } = client;
    // Whichever side ends first ends the session: the command finished, or
    // the client went away (dropping `out`'s receiver tells the command).
    tokio::select! {
        _ = read_client(stream, protocol, stdin, resize) => {}
        _ = write_client(sink, protocol, out) => {}
    }
}

/// Hands the client's stdin and resizes to the command until the client
/// closes or breaks the protocol.
async fn read_client<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: SplitStream<WebSocketStream<S>>,
    protocol: WsProtocol,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    resize: mpsc::Sender<TerminalSize>,
) {
    while let Some(Ok(message)) = stream.next().await {
        if matches!(message, Message::Close(_)) {
            return;
        }
        if matches!(message, Message::Ping(_) | Message::Pong(_)) {
            continue;
        }
        let Some((channel, data)) = decode(protocol, message) else {
            tracing::debug!("websocket: malformed message; ending the session");
            return;
        };
        if channel == 255 && protocol == WsProtocol::V5 {
            // v5 close signal: the payload names the channel to close.
            if data.first() == Some(&StreamKind::Stdin.channel()) {
                stdin = None;
            }
            continue;
        }
        match StreamKind::from_channel(channel) {
            Some(StreamKind::Stdin) => {
                if let Some(tx) = &stdin {
                    if tx.send(data).await.is_err() {
                        stdin = None;
                    }
                }
            }
            Some(StreamKind::Resize) => {
                for size in parse_sizes(&data) {
                    let _ = resize.send(size).await;
                }
            }
            _ => {
                tracing::debug!(channel, "websocket: message on a server channel; ending");
                return;
            }
        }
    }
}

/// Sends the command's output, then its outcome on the error channel and a
/// close.
async fn write_client<S: AsyncRead + AsyncWrite + Unpin>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    protocol: WsProtocol,
    mut out: mpsc::Receiver<Output>,
) {
    while let Some(output) = out.recv().await {
        match output {
            Output::Data(kind, data) => {
                let message = encode(protocol, kind.channel(), &data);
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            Output::Done(outcome) => {
                if let Some(payload) = outcome.encode(protocol.structured_errors()) {
                    let message = encode(protocol, StreamKind::Error.channel(), &payload);
                    let _ = sink.send(message).await;
                }
                break;
            }
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.flush().await;
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoding_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            for protocol in WsProtocol::ALL {
                let text = String::from_utf8_lossy(&raw).into_owned();
                let _ = decode(protocol, Message::Binary(raw.clone().into()));
                let _ = decode(protocol, Message::Text(text.into()));
            }
        }

        #[test]
        fn frames_round_trip(
            channel in any::<u8>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            for protocol in WsProtocol::ALL {
                let message = encode(protocol, channel, &data);
                let fits = !protocol.base64() || channel <= MAX_BASE64_CHANNEL;
                if fits {
                    let back = decode(protocol, message);
                    prop_assert_eq!(back, Some((channel, Bytes::from(data.clone()))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_newest_and_refuses_unknown() {
        assert_eq!(
            WsProtocol::negotiate("v4.channel.k8s.io, v5.channel.k8s.io"),
            Some(WsProtocol::V5)
        );
        assert_eq!(
            WsProtocol::negotiate("v4.base64.channel.k8s.io"),
            Some(WsProtocol::V4Base64)
        );
        assert_eq!(WsProtocol::negotiate(""), Some(WsProtocol::V1));
        assert_eq!(WsProtocol::negotiate("chat"), None);
    }

    #[test]
    fn messages_round_trip_in_both_encodings() {
        for p in WsProtocol::ALL {
            let m = encode(p, 0, b"hello\x00\xff");
            let (c, d) = decode(p, m).unwrap();
            assert_eq!((c, &d[..]), (0, &b"hello\x00\xff"[..]));
        }
        assert_eq!(decode(WsProtocol::V4, Message::Binary(Bytes::new())), None);
        assert_eq!(
            decode(WsProtocol::V4Base64, Message::Text("0!!!".into())),
            None
        );
    }
}
