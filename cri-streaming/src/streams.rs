//! The protocol-neutral face of a session: what exec and attach read from the
//! client and write back, whether SPDY or WebSocket carries it.

use crate::protocol::{Outcome, StreamKind, TerminalSize};
use bytes::Bytes;
use tokio::sync::mpsc;

/// What a session sends to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes on stdout or stderr.
    Data(StreamKind, Bytes),
    /// The end: reported on the error stream, then the session closes.
    Done(Outcome),
}

/// The client's side of a session, as exec and attach see it.
///
/// When the client goes away, the protocol side drops its receiver of
/// `out`, so [`mpsc::Sender::closed`] tells the command to stop.
#[derive(Debug)]
pub struct Streams {
    /// Client stdin; `None` when not requested, a closed channel is EOF.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    /// Terminal sizes from the client.
    pub resize: mpsc::Receiver<TerminalSize>,
    /// Where output and the outcome go.
    pub out: mpsc::Sender<Output>,
}

/// The protocol side's ends of a [`Streams`].
#[derive(Debug)]
pub struct ClientSide {
    /// Feeds the command's stdin; drop it for EOF.
    pub stdin: Option<mpsc::Sender<Bytes>>,
    /// Feeds resizes.
    pub resize: mpsc::Sender<TerminalSize>,
    /// What to send to the client.
    pub out: mpsc::Receiver<Output>,
}

/// A connected pair; `stdin` says whether the command gets stdin.
pub fn pair(stdin: bool) -> (Streams, ClientSide) {
    let (in_tx, in_rx) = if stdin {
        let (tx, rx) = mpsc::channel(16);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (resize_tx, resize_rx) = mpsc::channel(4);
    let (out_tx, out_rx) = mpsc::channel(16);
    (
        Streams {
            stdin: in_rx,
            resize: resize_rx,
            out: out_tx,
        },
        ClientSide {
            stdin: in_tx,
            resize: resize_tx,
            out: out_rx,
        },
    )
}
