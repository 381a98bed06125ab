//! A server-side SPDY/3.1 session carrying remotecommand (exec, attach) or
//! portforward streams.
//!
//! The client opens every stream (SYN_STREAM with a `streamType` header); we
//! accept each with SYN_REPLY. Remotecommand starts once the streams the
//! request needs exist; portforward dials the pod port once a request's
//! `data` and `error` streams both exist.
//!
//! Flow control: every byte received is handed back with WINDOW_UPDATE
//! (stream and session) as it is consumed. Sending obeys the windows the
//! client grants once the client shows it does flow control (see [`flow`]:
//! kubelet's and crictl's SPDY library never does, and must not stall);
//! while data waits for credit the writer takes no more than
//! [`MAX_PENDING`] bytes, so a client that stops granting holds back the
//! command's output instead of growing the daemon's memory.

use super::flow::{self, Cleared, SendWindows, SETTINGS_INITIAL_WINDOW_SIZE};
use super::frame::{rst, Frame, FLAG_FIN};
use super::header_block::{get, Decoder, Encoder};
use crate::daemon::Daemon;
use crate::streaming::protocol::{parse_sizes, StreamKind, StreamRequest};
use crate::streaming::streams::{self, Output};
use crate::streaming::{attach, exec, port_forward};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How long a client may take to open the streams a command needs.
const STREAM_SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output held back for a flow-controlling client may wait for its
/// credit after the command ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Output bytes a session holds back for a client's windows before it stops
/// taking more (and the command's output waits in its pipe).
pub const MAX_PENDING: usize = 1024 * 1024;

/// What the session writes; header blocks are compressed by the writer so
/// that compression follows wire order.
#[derive(Debug)]
enum Outgoing {
    Reply(u32),
    Data {
        stream: u32,
        data: Bytes,
        fin: bool,
    },
    Rst(u32, u32),
    Ping(u32),
    Window(u32, u32),
    GoAway(u32),
    /// The command ended: once everything held back is out, GOAWAY (naming
    /// the last client stream) and end.
    Finish(u32),
}

/// The client's flow-control frames, for the writer's send windows.
#[derive(Debug)]
enum Credit {
    Window(u32, u32),
    InitialWindow(u32),
    Reset(u32),
}

/// GOAWAY status for a session-level protocol error (SPDY/3.1 §2.6.6).
const GOAWAY_PROTOCOL_ERROR: u32 = 1;

async fn writer<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Outgoing>,
    mut credits: mpsc::Receiver<Credit>,
) {
    let mut encoder = Encoder::new();
    let mut windows = SendWindows::new();
    let data = |c: Cleared| Frame::Data {
        stream_id: c.stream,
        flags: if c.fin { FLAG_FIN } else { 0 },
        data: c.data,
    };
    let mut finish = None;
    loop {
        if let (Some(last), 0) = (finish, windows.pending_bytes()) {
            let frame = Frame::GoAway {
                last_good_stream_id: last,
                status: 0,
            };
            let _ = w.write_all(&frame.encode()).await;
            break;
        }
        let room = windows.pending_bytes() < MAX_PENDING;
        let frames: Vec<Frame> = tokio::select! {
            // Credit first: it is what lets held-back data go.
            biased;
            Some(credit) = credits.recv() => match credit {
                Credit::Window(stream, delta) => match windows.window_update(stream, delta) {
                    Ok(cleared) => cleared.into_iter().map(data).collect(),
                    Err(flow::FlowError::Overflow(0)) => {
                        tracing::debug!("SPDY: session window overflow; ending the session");
                        let frame = Frame::GoAway { last_good_stream_id: 0, status: GOAWAY_PROTOCOL_ERROR };
                        let _ = w.write_all(&frame.encode()).await;
                        break;
                    }
                    Err(flow::FlowError::Overflow(stream_id)) => {
                        windows.reset(stream_id);
                        vec![Frame::RstStream { stream_id, status: rst::FLOW_CONTROL_ERROR }]
                    }
                },
                Credit::InitialWindow(size) => {
                    windows.initial_window(size).into_iter().map(data).collect()
                }
                Credit::Reset(stream) => {
                    windows.reset(stream);
                    Vec::new()
                }
            },
            out = rx.recv(), if room => match out {
                None => break,
                Some(Outgoing::Data { stream, data: bytes, fin }) => {
                    windows.push(stream, bytes, fin).into_iter().map(data).collect()
                }
                Some(Outgoing::Reply(stream_id)) => match encoder.encode(&[]) {
                    Ok(headers) => vec![Frame::SynReply { stream_id, flags: 0, headers }],
                    Err(_) => return,
                },
                Some(Outgoing::Rst(stream_id, status)) => {
                    windows.reset(stream_id);
                    vec![Frame::RstStream { stream_id, status }]
                }
                Some(Outgoing::Ping(id)) => vec![Frame::Ping { id }],
                Some(Outgoing::Window(stream_id, delta)) => {
                    vec![Frame::WindowUpdate { stream_id, delta }]
                }
                Some(Outgoing::Finish(last)) => {
                    finish = Some(last);
                    Vec::new()
                }
                Some(Outgoing::GoAway(last)) => vec![Frame::GoAway {
                    last_good_stream_id: last,
                    status: 0,
                }],
            },
            // The reader is gone and the backlog can never drain.
            else => break,
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

/// Where a client stream's DATA goes.
enum Sink {
    Stdin(mpsc::Sender<Bytes>),
    Resize(mpsc::Sender<crate::streaming::protocol::TerminalSize>),
    Tcp(mpsc::Sender<Bytes>),
    Discard,
}

/// A portforward request's two streams.
#[derive(Default)]
struct Forward {
    data: Option<u32>,
    error: Option<u32>,
    port: u16,
    started: bool,
}

/// Serves one upgraded connection until the command ends, the client goes
/// away, or the client breaks the protocol.
pub async fn serve<IO>(io: IO, daemon: Arc<Daemon>, request: StreamRequest, protocol: String)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut r, w) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel::<Outgoing>(64);
    let (credit_tx, credit_rx) = mpsc::channel::<Credit>(64);
    let mut writer_task = Some(tokio::spawn(writer(w, rx, credit_rx)));
    let mut finishing = false;
    let drain_deadline = tokio::time::sleep(DRAIN_TIMEOUT);
    tokio::pin!(drain_deadline);
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut last_stream = 0u32;
    let mut sinks: HashMap<u32, Sink> = HashMap::new();
    let mut kinds: HashMap<StreamKind, u32> = HashMap::new();
    let mut forwards: HashMap<String, Forward> = HashMap::new();
    let mut session_unacked = 0u32;
    let mut started: Option<tokio::task::JoinHandle<()>> = None;
    let mut forward_tasks = Vec::new();
    let setup_deadline = tokio::time::sleep(STREAM_SETUP_TIMEOUT);
    tokio::pin!(setup_deadline);
    let is_port_forward = matches!(request, StreamRequest::PortForward { .. });
    'session: loop {
        // Frames already buffered first.
        loop {
            let (frame, used) = match Frame::parse(&buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY: protocol error; ending the session");
                    let _ = tx.send(Outgoing::GoAway(last_stream)).await;
                    break 'session;
                }
            };
            let _ = buf.split_to(used);
            match frame {
                Frame::SynStream {
                    stream_id, headers, ..
                } => {
                    // Client streams are odd and increasing.
                    if stream_id % 2 == 0 || stream_id <= last_stream {
                        let _ = tx.send(Outgoing::Rst(stream_id, rst::PROTOCOL_ERROR)).await;
                        let _ = tx.send(Outgoing::GoAway(last_stream)).await;
                        break 'session;
                    }
                    last_stream = stream_id;
                    let headers = match decoder.decode(&headers) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::debug!(error = %e, "SPDY: bad header block");
                            let _ = tx.send(Outgoing::GoAway(last_stream)).await;
                            break 'session;
                        }
                    };
                    let stream_type = get(&headers, "streamtype").unwrap_or("").to_string();
                    if is_port_forward {
                        let port = get(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                        let request_id = get(&headers, "requestid").unwrap_or("").to_string();
                        let Some(port) = port.filter(|p| *p > 0) else {
                            let _ = tx.send(Outgoing::Rst(stream_id, rst::REFUSED_STREAM)).await;
                            continue;
                        };
                        let entry = forwards.entry(request_id.clone()).or_default();
                        entry.port = port;
                        match stream_type.as_str() {
                            "data" if entry.data.is_none() => entry.data = Some(stream_id),
                            "error" if entry.error.is_none() => entry.error = Some(stream_id),
                            _ => {
                                let _ =
                                    tx.send(Outgoing::Rst(stream_id, rst::PROTOCOL_ERROR)).await;
                                continue;
                            }
                        }
                        let _ = tx.send(Outgoing::Reply(stream_id)).await;
                        sinks.insert(stream_id, Sink::Discard);
                        if let (Some(data), Some(error), false) =
                            (entry.data, entry.error, entry.started)
                        {
                            entry.started = true;
                            let (to_tcp, from_client) = mpsc::channel(16);
                            sinks.insert(data, Sink::Tcp(to_tcp));
                            if let StreamRequest::PortForward { sandbox_id, .. } = &request {
                                forward_tasks.push(tokio::spawn(forward(
                                    Arc::clone(&daemon),
                                    sandbox_id.clone(),
                                    port,
                                    data,
                                    error,
                                    from_client,
                                    tx.clone(),
                                )));
                            }
                        }
                        continue;
                    }
                    let Some(kind) = StreamKind::from_header(&stream_type) else {
                        let _ = tx.send(Outgoing::Rst(stream_id, rst::PROTOCOL_ERROR)).await;
                        continue;
                    };
                    // Once the command runs, or has run, a late stream must
                    // not complete the set and start it a second time.
                    if kinds.contains_key(&kind) || started.is_some() || finishing {
                        let _ = tx.send(Outgoing::Rst(stream_id, rst::STREAM_IN_USE)).await;
                        continue;
                    }
                    kinds.insert(kind, stream_id);
                    sinks.insert(stream_id, Sink::Discard);
                    let _ = tx.send(Outgoing::Reply(stream_id)).await;
                    if let Some(handle) =
                        maybe_start(&daemon, &request, &protocol, &kinds, &mut sinks, &tx)
                    {
                        started = Some(handle);
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    let len = data.len() as u32;
                    match sinks.get(&stream_id) {
                        None => {
                            let _ = tx.send(Outgoing::Rst(stream_id, rst::INVALID_STREAM)).await;
                        }
                        Some(Sink::Stdin(s)) | Some(Sink::Tcp(s)) => {
                            if !data.is_empty() && s.send(data).await.is_err() {
                                sinks.insert(stream_id, Sink::Discard);
                            }
                        }
                        Some(Sink::Resize(s)) => {
                            for size in parse_sizes(&data) {
                                let _ = s.send(size).await;
                            }
                        }
                        Some(Sink::Discard) => {}
                    }
                    if flags & FLAG_FIN != 0 {
                        // The client's half is done: stdin EOF, TCP write shutdown.
                        if let Some(Sink::Stdin(_) | Sink::Tcp(_)) = sinks.get(&stream_id) {
                            sinks.insert(stream_id, Sink::Discard);
                        }
                    }
                    if len > 0 {
                        let _ = tx.send(Outgoing::Window(stream_id, len)).await;
                        session_unacked += len;
                        if session_unacked >= 32 * 1024 {
                            let _ = tx.send(Outgoing::Window(0, session_unacked)).await;
                            session_unacked = 0;
                        }
                    }
                }
                Frame::Ping { id } => {
                    let _ = tx.send(Outgoing::Ping(id)).await;
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(Sink::Stdin(_) | Sink::Tcp(_)) = sinks.get(&stream_id) {
                        sinks.insert(stream_id, Sink::Discard);
                    }
                    let _ = credit_tx.send(Credit::Reset(stream_id)).await;
                }
                Frame::WindowUpdate { stream_id, delta } => {
                    let _ = credit_tx.send(Credit::Window(stream_id, delta)).await;
                }
                Frame::Settings { entries, .. } => {
                    for (_, id, value) in entries {
                        if id == SETTINGS_INITIAL_WINDOW_SIZE {
                            let _ = credit_tx.send(Credit::InitialWindow(value)).await;
                        }
                    }
                }
                Frame::GoAway { .. } => break 'session,
                Frame::SynReply { stream_id, .. } => {
                    // We open no streams, so there is nothing to reply to.
                    let _ = tx.send(Outgoing::Rst(stream_id, rst::PROTOCOL_ERROR)).await;
                }
                Frame::Headers { headers, .. } => {
                    // Keep the compression context in step; the headers
                    // themselves mean nothing to these protocols.
                    if decoder.decode(&headers).is_err() {
                        break 'session;
                    }
                }
                Frame::Unknown { .. } => {}
            }
        }
        let waiting_for_streams = started.is_none() && !is_port_forward && !finishing;
        tokio::select! {
            n = r.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break 'session,
                Ok(_) => {}
            },
            _ = async {
                match started.as_mut() {
                    Some(h) => { let _ = h.await; }
                    None => std::future::pending().await,
                }
            } => {
                // The command ended and its outcome is queued. The writer
                // ends the session once the client's windows let the rest of
                // the output out; until then its credit must still be read.
                started = None;
                finishing = true;
                drain_deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                let _ = tx.send(Outgoing::Finish(last_stream)).await;
            }
            _ = async {
                match writer_task.as_mut() {
                    Some(h) => { let _ = h.await; }
                    None => std::future::pending().await,
                }
            }, if finishing => {
                writer_task = None;
                break 'session;
            }
            _ = &mut drain_deadline, if finishing => {
                tracing::debug!("SPDY: client granted no room for the rest of the output; ending");
                break 'session;
            }
            _ = &mut setup_deadline, if waiting_for_streams => {
                tracing::debug!("SPDY: streams not opened in time; ending the session");
                break 'session;
            }
        }
    }
    // The client left or the command ended: stop what still runs (an exec
    // whose output receiver is gone kills its command).
    if let Some(h) = started {
        h.abort();
        let _ = h.await;
    }
    for t in forward_tasks {
        t.abort();
    }
    drop(sinks);
    let _ = tx.send(Outgoing::GoAway(last_stream)).await;
    drop(tx);
    drop(credit_tx);
    if let Some(writer_task) = writer_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
    }
}

/// Starts the exec once every stream it needs is open; returns the task that
/// forwards its output and ends with it.
fn maybe_start(
    daemon: &Arc<Daemon>,
    request: &StreamRequest,
    protocol: &str,
    kinds: &HashMap<StreamKind, u32>,
    sinks: &mut HashMap<u32, Sink>,
    tx: &mpsc::Sender<Outgoing>,
) -> Option<tokio::task::JoinHandle<()>> {
    let (tty, stdin, stdout, stderr) = match request {
        StreamRequest::Exec {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        }
        | StreamRequest::Attach {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        } => (tty, stdin, stdout, stderr),
        StreamRequest::PortForward { .. } => return None,
    };
    let resize_supported = protocol != "channel.k8s.io" && protocol != "v2.channel.k8s.io";
    let needed = [
        (StreamKind::Error, true),
        (StreamKind::Stdin, *stdin),
        (StreamKind::Stdout, *stdout),
        (StreamKind::Stderr, *stderr),
        (StreamKind::Resize, *tty && resize_supported),
    ];
    if needed.iter().any(|(k, n)| *n && !kinds.contains_key(k)) {
        return None;
    }
    let (streams, client) = streams::pair(*stdin);
    if let (Some(id), Some(s)) = (kinds.get(&StreamKind::Stdin), client.stdin) {
        sinks.insert(*id, Sink::Stdin(s));
    }
    if let Some(id) = kinds.get(&StreamKind::Resize) {
        sinks.insert(*id, Sink::Resize(client.resize));
    }
    let exec_task = match request.clone() {
        StreamRequest::Exec {
            container_id,
            cmd,
            tty,
            stdout,
            stderr,
            ..
        } => {
            let spec = exec::ExecSpec {
                container_id,
                cmd,
                tty,
                stdout,
                stderr,
            };
            tokio::spawn(exec::run(Arc::clone(daemon), spec, streams))
        }
        StreamRequest::Attach {
            container_id,
            stdout,
            stderr,
            ..
        } => {
            let spec = attach::AttachSpec {
                container_id,
                stdout,
                stderr,
            };
            tokio::spawn(attach::run(Arc::clone(daemon), spec, streams))
        }
        StreamRequest::PortForward { .. } => return None,
    };
    let kinds = kinds.clone();
    let tx = tx.clone();
    let structured = protocol == "v4.channel.k8s.io";
    let mut out = client.out;
    Some(tokio::spawn(async move {
        // Dropping `out` (this task aborted) tells the exec its client left.
        while let Some(output) = out.recv().await {
            match output {
                Output::Data(kind, data) => {
                    if let Some(stream) = kinds.get(&kind) {
                        let _ = tx
                            .send(Outgoing::Data {
                                stream: *stream,
                                data,
                                fin: false,
                            })
                            .await;
                    }
                }
                Output::Done(outcome) => {
                    if let (Some(stream), Some(payload)) =
                        (kinds.get(&StreamKind::Error), outcome.encode(structured))
                    {
                        let _ = tx
                            .send(Outgoing::Data {
                                stream: *stream,
                                data: payload,
                                fin: false,
                            })
                            .await;
                    }
                    for kind in [StreamKind::Stdout, StreamKind::Stderr, StreamKind::Error] {
                        if let Some(stream) = kinds.get(&kind) {
                            let _ = tx
                                .send(Outgoing::Data {
                                    stream: *stream,
                                    data: Bytes::new(),
                                    fin: true,
                                })
                                .await;
                        }
                    }
                    break;
                }
            }
        }
        drop(out);
        let _ = exec_task.await;
    }))
}

/// One forwarded connection: dial, then copy both ways until either side
/// closes. A failed dial is reported on the error stream.
async fn forward(
    daemon: Arc<Daemon>,
    sandbox_id: String,
    port: u16,
    data: u32,
    error: u32,
    mut from_client: mpsc::Receiver<Bytes>,
    tx: mpsc::Sender<Outgoing>,
) {
    let stream = match port_forward::dial(&daemon, &sandbox_id, port).await {
        Ok(s) => s,
        Err(message) => {
            tracing::info!(pod = %sandbox_id, port, error = %message, "port-forward dial");
            let _ = tx
                .send(Outgoing::Data {
                    stream: error,
                    data: Bytes::from(message),
                    fin: true,
                })
                .await;
            let _ = tx
                .send(Outgoing::Data {
                    stream: data,
                    data: Bytes::new(),
                    fin: true,
                })
                .await;
            return;
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let upstream = async {
        while let Some(chunk) = from_client.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    let sent = tx
                        .send(Outgoing::Data {
                            stream: data,
                            data: chunk,
                            fin: false,
                        })
                        .await;
                    if sent.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx
            .send(Outgoing::Data {
                stream: data,
                data: Bytes::new(),
                fin: true,
            })
            .await;
        let _ = tx
            .send(Outgoing::Data {
                stream: error,
                data: Bytes::new(),
                fin: true,
            })
            .await;
    };
    tokio::join!(upstream, downstream);
}
