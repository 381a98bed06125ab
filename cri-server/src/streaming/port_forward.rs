//! Port forwarding: a TCP connection to a port inside the pod's network
//! namespace per client request.
//!
//! The connection is dialled on a dedicated thread that entered the pod's
//! namespace (through `netns`), never on a tokio worker; the connected socket
//! then moves to tokio, since a socket stays in the namespace it was made in.

use super::websocket::{decode, encode, WsProtocol};
use crate::daemon::Daemon;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long dialling a pod port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `127.0.0.1:port` in pod `sandbox_id`'s network (the host's
/// for a host-network pod).
pub async fn dial(
    daemon: &Daemon,
    sandbox_id: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, String> {
    let sandbox = daemon
        .sandboxes
        .get(sandbox_id)
        .map_err(|e| e.to_string())?;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let std_stream = match sandbox.netns_path.clone() {
        None => {
            // Host network: no namespace to enter.
            return tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(address))
                .await
                .map_err(|_| format!("pod {sandbox_id}: port {port}: connect timed out"))?
                .map_err(|e| format!("pod {sandbox_id}: port {port}: {e}"));
        }
        Some(path) => {
            // `run_in` blocks while its own thread works inside the namespace.
            let joined = tokio::task::spawn_blocking(move || {
                let ns = netns::NetNs::open(&path).map_err(|e| e.to_string())?;
                ns.run_in(|| std::net::TcpStream::connect_timeout(&address, DIAL_TIMEOUT))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?;
            joined.map_err(|e| format!("pod {sandbox_id}: port {port}: {e}"))?
        }
    };
    let fail = |e: std::io::Error| format!("pod {sandbox_id}: port {port}: {e}");
    std_stream.set_nonblocking(true).map_err(fail)?;
    tokio::net::TcpStream::from_std(std_stream).map_err(fail)
}

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
/// character (`'0' + channel`, at most [`super::websocket::MAX_BASE64_CHANNEL`]).
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
/// use cri_server::streaming::port_forward::ports_from_query;
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
pub async fn serve_websocket<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    ws: WebSocketStream<S>,
    framing: WsProtocol,
    daemon: Arc<Daemon>,
    sandbox_id: String,
    ports: Vec<u16>,
) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<(u8, Bytes)>(64);
    let mut to_ports = Vec::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data_ch, error_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, error_ch] {
            let _ = tx
                .send((ch, Bytes::copy_from_slice(&port.to_le_bytes())))
                .await;
        }
        let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(16);
        to_ports.push(in_tx);
        let (daemon, sandbox_id, tx) = (Arc::clone(&daemon), sandbox_id.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let conn = match dial(&daemon, &sandbox_id, port).await {
                Ok(c) => c,
                Err(message) => {
                    let _ = tx.send((error_ch, Bytes::from(message))).await;
                    return;
                }
            };
            let (mut rd, mut wr) = conn.into_split();
            let up = async {
                while let Some(chunk) = in_rx.recv().await {
                    if wr.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                let _ = wr.shutdown().await;
            };
            let down = async {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n @ 1..) = rd.read(&mut buf).await {
                    if tx
                        .send((data_ch, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            };
            tokio::join!(up, down);
        }));
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
            let index = usize::from(channel / 2);
            // Only data channels carry client bytes.
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
            usize::from(super::super::websocket::MAX_BASE64_CHANNEL)
        );
        assert!(2 * MAX_WS_PORTS - 1 <= usize::from(u8::MAX));
    }
}
