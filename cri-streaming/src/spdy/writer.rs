//! The writing half of a SPDY session: frames in the order the session
//! queues them, header blocks compressed in wire order, and DATA held to
//! the client's send windows (see [`super::flow`]).

use super::flow::{Cleared, FlowError, SendWindows};
use super::frame::{rst, Frame, FLAG_FIN};
use super::header_block::Encoder;
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Output bytes a session holds back for a client's windows before it stops
/// taking more (and the command's output waits in its pipe).
pub const MAX_PENDING: usize = 1024 * 1024;

/// GOAWAY status for a session-level protocol error (SPDY/3.1 §2.6.6).
const GOAWAY_PROTOCOL_ERROR: u32 = 1;

/// What the session writes; header blocks are compressed by the writer so
/// that compression follows wire order.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// SYN_REPLY accepting a client stream.
    Reply(u32),
    /// DATA, subject to the windows.
    Data {
        /// The stream.
        stream: u32,
        /// The payload.
        data: Bytes,
        /// Whether it ends the stream.
        fin: bool,
    },
    /// RST_STREAM with a status.
    Rst(u32, u32),
    /// A PING echoed.
    Ping(u32),
    /// WINDOW_UPDATE for what the session consumed.
    Window(u32, u32),
    /// GOAWAY naming the last client stream.
    GoAway(u32),
    /// The command ended: once everything held back is out, GOAWAY (naming
    /// the last client stream) and end.
    Finish(u32),
}

/// The client's flow-control frames, for the writer's send windows.
#[derive(Debug)]
pub(super) enum Credit {
    /// WINDOW_UPDATE (stream 0 = the session).
    Window(u32, u32),
    /// `SETTINGS_INITIAL_WINDOW_SIZE`.
    InitialWindow(u32),
    /// RST_STREAM from the client.
    Reset(u32),
}

/// What the writer does after an event.
enum Step {
    /// Writes these frames and goes on.
    Write(Vec<Frame>),
    /// Writes this frame, then flushes and ends.
    Last(Frame),
    /// Flushes and ends.
    End,
    /// Ends at once.
    Abort,
}

/// The writer's state: the compression context, the windows, and whether
/// the session is finishing (with the last client stream).
struct Writer {
    encoder: Encoder,
    windows: SendWindows,
    finish: Option<u32>,
}

/// Writes what `rx` queues to `w`, obeying the windows `credits` move,
/// until the session finishes or its channels close.
pub(super) async fn run<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Outgoing>,
    mut credits: mpsc::Receiver<Credit>,
) {
    let mut writer = Writer {
        encoder: Encoder::new(),
        windows: SendWindows::new(),
        finish: None,
    };
    loop {
        let step = match writer.finish {
            Some(last) if writer.windows.pending_bytes() == 0 => Step::Last(goaway(last, 0)),
            _ => {
                let room = writer.windows.pending_bytes() < MAX_PENDING;
                tokio::select! {
                    // Credit first: it is what lets held-back data go.
                    biased;
                    Some(credit) = credits.recv() => writer.credit(credit),
                    out = rx.recv(), if room => match out {
                        Some(out) => writer.outgoing(out),
                        None => Step::End,
                    },
                    // The reader is gone and the backlog can never drain.
                    else => Step::End,
                }
            }
        };
        let frames = match step {
            Step::Write(frames) => frames,
            Step::Last(frame) => {
                let _ = w.write_all(&frame.encode()).await;
                break;
            }
            Step::End => break,
            Step::Abort => return,
        };
        for frame in frames {
            if w.write_all(&frame.encode()).await.is_err() {
                return;
            }
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

fn goaway(last_good_stream_id: u32, status: u32) -> Frame {
    Frame::GoAway {
        last_good_stream_id,
        status,
    }
}

fn data_frames(cleared: Vec<Cleared>) -> Vec<Frame> {
    cleared
        .into_iter()
        .map(|c| Frame::Data {
            stream_id: c.stream,
            flags: if c.fin { FLAG_FIN } else { 0 },
            data: c.data,
        })
        .collect()
}

impl Writer {
    /// Applies the client's credit; returns what it releases.
    fn credit(&mut self, credit: Credit) -> Step {
        match credit {
            Credit::Window(stream, delta) => match self.windows.window_update(stream, delta) {
                Ok(cleared) => Step::Write(data_frames(cleared)),
                Err(FlowError::Overflow(0)) => {
                    tracing::debug!("SPDY: session window overflow; ending the session");
                    Step::Last(goaway(0, GOAWAY_PROTOCOL_ERROR))
                }
                Err(FlowError::Overflow(stream_id)) => {
                    self.windows.reset(stream_id);
                    Step::Write(vec![Frame::RstStream {
                        stream_id,
                        status: rst::FLOW_CONTROL_ERROR,
                    }])
                }
            },
            Credit::InitialWindow(size) => {
                Step::Write(data_frames(self.windows.initial_window(size)))
            }
            Credit::Reset(stream) => {
                self.windows.reset(stream);
                Step::Write(Vec::new())
            }
        }
    }

    /// Turns what the session queued into frames (DATA as the windows allow).
    fn outgoing(&mut self, out: Outgoing) -> Step {
        Step::Write(match out {
            Outgoing::Data { stream, data, fin } => {
                data_frames(self.windows.push(stream, data, fin))
            }
            Outgoing::Reply(stream_id) => match self.encoder.encode(&[]) {
                Ok(headers) => vec![Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers,
                }],
                Err(_) => return Step::Abort,
            },
            Outgoing::Rst(stream_id, status) => {
                self.windows.reset(stream_id);
                vec![Frame::RstStream { stream_id, status }]
            }
            Outgoing::Ping(id) => vec![Frame::Ping { id }],
            Outgoing::Window(stream_id, delta) => vec![Frame::WindowUpdate { stream_id, delta }],
            Outgoing::Finish(last) => {
                self.finish = Some(last);
                Vec::new()
            }
            Outgoing::GoAway(last) => vec![goaway(last, 0)],
        })
    }
}
