//! One forwarded connection of a SPDY portforward session: dialled through
//! the backend once a request's `data` and `error` streams both exist, then
//! copied both ways until either side closes.

use super::writer::Outgoing;
use crate::port_forward::{downstream, upstream};
use crate::Backend;
use bytes::Bytes;
use tokio::sync::mpsc;

/// A portforward request: its pod and port, and its two client streams.
pub(super) struct Connection {
    /// The pod.
    pub pod: String,
    /// The port inside it.
    pub port: u16,
    /// The stream carrying the connection's bytes.
    pub data: u32,
    /// The stream reporting a failed dial.
    pub error: u32,
}

/// An empty DATA frame ending `stream`.
fn fin(stream: u32) -> Outgoing {
    Outgoing::Data {
        stream,
        data: Bytes::new(),
        fin: true,
    }
}

impl Connection {
    /// Dials, then copies until either side closes: the client's bytes come
    /// through `from_client`, the connection's go out through `tx`. A failed
    /// dial is reported on the error stream.
    pub(super) async fn run(
        self,
        backend: Backend,
        from_client: mpsc::Receiver<Bytes>,
        tx: mpsc::Sender<Outgoing>,
    ) {
        let stream = match backend.port_forward_dial(&self.pod, self.port).await {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(pod = %self.pod, port = self.port, error = %e, "port-forward dial");
                let message = Outgoing::Data {
                    stream: self.error,
                    data: Bytes::from(e.to_string()),
                    fin: true,
                };
                let _ = tx.send(message).await;
                let _ = tx.send(fin(self.data)).await;
                return;
            }
        };
        let (rd, wr) = stream.into_split();
        let data = self.data;
        let down = async {
            let wrap = |chunk| Outgoing::Data {
                stream: data,
                data: chunk,
                fin: false,
            };
            if downstream(rd, &tx, wrap).await {
                let _ = tx.send(fin(data)).await;
                let _ = tx.send(fin(self.error)).await;
            }
        };
        tokio::join!(upstream(wr, from_client), down);
    }
}
