//! Port forwarding over WebSocket, and what the SPDY session shares with it:
//! one TCP connection to a pod port per client request, dialled by the
//! backend ([`crate::StreamBackend::port_forward_dial`]), copied both ways
//! until either side closes.

use crate::websocket::{decode, encode, WsProtocol};
use crate::Backend;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// WebSocket subprotocols for port forwarding, most preferred first.
pub const WS_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "portforward.k8s.io",
    "v2.portforward.k8s.io",
];

/// The best of the client's offers for port forwarding over WebSocket, and
/// how its messages are framed.
pub fn negotiate_ws(offered: &str) -> Option<(&'static str, WsProtocol)> {
    let offers: Vec<&str> = offered.split(',').map(str::trim).collect();
    let name = WS_PROTOCOLS.into_iter().find(|p| offers.contains(p))?;
    let framing = if name.contains("base64") {
        WsProtocol::V4Base64
    } else {
        WsProtocol::V4
    };
    Some((name, framing))
}

/// Most ports one WebSocket port-forward session carries: two channels a
/// port, and binary framing's channel is one byte.
pub const MAX_WS_PORTS: usize = 64;

/// Most ports under base64 framing, whose channel is one ASCII digit-or-more
/// character (`'0' + channel`, at most [`crate::websocket::MAX_BASE64_CHANNEL`]).
pub const MAX_WS_BASE64_PORTS: usize = 40;

/// Why the `port` parameters of a port-forward URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortQueryError {
    /// A `port=` value that is not a port number from 1 to 65535.
    #[error("bad port {value:?} in query: expected 1-65535")]
    BadPort {
        /// The value as given (at most 16 characters of it).
        value: String,
    },
}

/// The ports named by `port=` parameters of a port-forward URL's query, in
/// order (other parameters are ignored; an empty list means none given).
///
/// # Errors
///
/// [`PortQueryError`] for a `port=` value that is not 1-65535.
///
/// # Examples
///
/// ```
/// use cri_streaming::port_forward::ports_from_query;
/// assert_eq!(ports_from_query("port=80&x=1&port=8080").unwrap(), [80, 8080]);
/// assert_eq!(ports_from_query("").unwrap(), Vec::<u16>::new());
/// assert!(ports_from_query("port=0").is_err());
/// ```
pub fn ports_from_query(query: &str) -> Result<Vec<u16>, PortQueryError> {
    let mut ports = Vec::new();
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("port=") {
            match value.parse::<u16>() {
                Ok(p) if p > 0 => ports.push(p),
                _ => {
                    return Err(PortQueryError::BadPort {
                        value: value.chars().take(16).collect(),
                    })
                }
            }
        }
    }
    Ok(ports)
}

/// Port forwarding over WebSocket: one connection per port, port `i` on
/// channels `2i` (data) and `2i+1` (error), each opened by a message holding
/// the port (little-endian u16), as kubelet's WebSocket port forwarding does.
pub(crate) async fn serve_websocket<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    ws: WebSocketStream<S>,
    framing: WsProtocol,
    backend: Backend,
    pod: String,
    ports: Vec<u16>,
) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<(u8, Bytes)>(64);
    let mut to_ports = Vec::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        for channel in [data, error] {
            let _ = tx
                .send((channel, Bytes::copy_from_slice(&port.to_le_bytes())))
                .await;
        }
        let (to_port, from_client) = mpsc::channel::<Bytes>(16);
        to_ports.push(to_port);
        let connection = WsConnection {
            pod: pod.clone(),
            port,
            data,
            error,
        };
        let (backend, tx) = (Backend::clone(&backend), tx.clone());
        tasks.push(tokio::spawn(connection.run(backend, from_client, tx)));
    }
    drop(tx);
    let reader = async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                return;
            }
            if matches!(message, Message::Ping(_) | Message::Pong(_)) {
                continue;
            }
            let Some((channel, data)) = decode(framing, message) else {
                return;
            };
            // Only data channels carry client bytes.
            let index = usize::from(channel / 2);
            if channel % 2 != 0 || index >= to_ports.len() {
                return;
            }
            let _ = to_ports[index].send(data).await;
        }
    };
    let writer = async {
        while let Some((channel, data)) = rx.recv().await {
            if sink.send(encode(framing, channel, &data)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
    for t in tasks {
        t.abort();
    }
}

/// One forwarded port of a WebSocket session and its two channels.
struct WsConnection {
    pod: String,
    port: u16,
    data: u8,
    error: u8,
}

impl WsConnection {
    /// Dials the port, then copies both ways; a failed dial is reported on
    /// the error channel.
    async fn run(
        self,
        backend: Backend,
        from_client: mpsc::Receiver<Bytes>,
        tx: mpsc::Sender<(u8, Bytes)>,
    ) {
        let conn = match backend.port_forward_dial(&self.pod, self.port).await {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send((self.error, Bytes::from(e.to_string()))).await;
                return;
            }
        };
        let (rd, wr) = conn.into_split();
        let data = self.data;
        tokio::join!(
            upstream(wr, from_client),
            downstream(rd, &tx, |chunk| (data, chunk))
        );
    }
}

/// Most ports one WebSocket session with `framing` carries.
pub fn max_ws_ports(framing: WsProtocol) -> usize {
    match framing {
        WsProtocol::V4Base64 | WsProtocol::V1Base64 => MAX_WS_BASE64_PORTS,
        _ => MAX_WS_PORTS,
    }
}

/// Copies the client's bytes to a forwarded connection; the client's end
/// shuts the connection's write side down.
pub(crate) async fn upstream(mut to: OwnedWriteHalf, mut from_client: mpsc::Receiver<Bytes>) {
    while let Some(chunk) = from_client.recv().await {
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

/// Copies a forwarded connection's bytes to the client, each chunk wrapped
/// by `wrap`: `true` when the connection ended (EOF or error), `false` when
/// the client's side was gone first.
pub(crate) async fn downstream<T>(
    mut from: OwnedReadHalf,
    to_client: &mpsc::Sender<T>,
    wrap: impl Fn(Bytes) -> T,
) -> bool {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                let chunk = Bytes::copy_from_slice(&buf[..n]);
                if to_client.send(wrap(chunk)).await.is_err() {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn query_parsing_never_panics(query in ".{0,64}") {
            let _ = ports_from_query(&query);
        }

        #[test]
        fn ports_round_trip_through_a_query(
            ports in proptest::collection::vec(1u16.., 0..8),
            noise in proptest::collection::vec("[a-oq-z]{1,5}=[a-z0-9]{0,5}", 0..4),
        ) {
            let mut pairs: Vec<String> = ports.iter().map(|p| format!("port={p}")).collect();
            pairs.extend(noise);
            prop_assert_eq!(ports_from_query(&pairs.join("&")).unwrap(), ports);
        }
    }

    #[test]
    fn every_port_channel_fits_its_framing() {
        // Exactly fits: one port more would need channel 80.
        assert_eq!(
            2 * MAX_WS_BASE64_PORTS - 1,
            usize::from(crate::websocket::MAX_BASE64_CHANNEL)
        );
        assert!(2 * MAX_WS_PORTS - 1 <= usize::from(u8::MAX));
    }
}
