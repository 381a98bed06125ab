//! A server-side SPDY/3.1 session carrying remotecommand (exec, attach) or
//! portforward streams.
//!
//! The client opens every stream (SYN_STREAM with a `streamType` header); we
//! accept each with SYN_REPLY. Remotecommand starts once the streams the
//! request needs exist; portforward dials the pod port once a request's
//! `data` and `error` streams both exist.
//!
//! Flow control: every byte received is handed back with WINDOW_UPDATE
//! (stream and session) as it is consumed. Windows the client grants are
//! recorded but sending does not wait on them: kubelet's and crictl's SPDY
//! library never sends WINDOW_UPDATE, so honouring them would stall every
//! session after 64 KiB.

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

/// What the session writes; header blocks are compressed by the writer so
/// that compression follows wire order.
#[derive(Debug)]
enum Outgoing {
    Reply(u32),
    Data { stream: u32, data: Bytes, fin: bool },
    Rst(u32, u32),
    Ping(u32),
    Window(u32, u32),
    GoAway(u32),
}

async fn writer<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Outgoing>) {
    let mut encoder = Encoder::new();
    while let Some(out) = rx.recv().await {
        let frame = match out {
            Outgoing::Reply(stream_id) => match encoder.encode(&[]) {
                Ok(headers) => Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers,
                },
                Err(_) => return,
            },
            Outgoing::Data { stream, data, fin } => Frame::Data {
                stream_id: stream,
                flags: if fin { FLAG_FIN } else { 0 },
                data,
            },
            Outgoing::Rst(stream_id, status) => Frame::RstStream { stream_id, status },
            Outgoing::Ping(id) => Frame::Ping { id },
            Outgoing::Window(stream_id, delta) => Frame::WindowUpdate { stream_id, delta },
            Outgoing::GoAway(last) => Frame::GoAway {
                last_good_stream_id: last,
                status: 0,
            },
        };
        if w.write_all(&frame.encode()).await.is_err() {
            return;
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
    let writer_task = tokio::spawn(writer(w, rx));
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
                    if kinds.contains_key(&kind) || started.is_some() {
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
                Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
            }
        }
        let waiting_for_streams = started.is_none() && !is_port_forward;
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
                // The command ended and its outcome is queued: the session is done.
                started = None;
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
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
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
