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
//! client grants once the client shows it does flow control (see
//! [`super::flow`]: kubelet's and crictl's SPDY library never does, and must
//! not stall); while data waits for credit the writer takes no more than
//! [`super::MAX_PENDING`] bytes, so a client that stops granting holds back
//! the command's output instead of growing the server's memory.

use super::flow::SETTINGS_INITIAL_WINDOW_SIZE;
use super::forward::Connection;
use super::frame::{rst, Frame, FLAG_FIN};
use super::header_block::{get, Decoder, Headers};
use super::writer::{self, Credit, Outgoing};
use crate::command;
use crate::protocol::{parse_sizes, StreamKind, TerminalSize};
use crate::request::Command;
use crate::streams::Output;
use crate::Backend;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a client may take to open the streams a command needs.
const STREAM_SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output held back for a flow-controlling client may wait for its
/// credit after the command ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the writer may take to flush after the session ended.
const WRITER_GRACE: Duration = Duration::from_secs(5);
/// Received bytes acknowledged on the session at once.
const SESSION_ACK_STEP: u32 = 32 * 1024;

/// What a session carries.
#[derive(Debug)]
pub(crate) enum Mode {
    /// An exec or attach.
    Command(Command),
    /// Connections to a pod's ports.
    PortForward {
        /// The pod.
        pod: String,
    },
}

/// Where a client stream's DATA goes.
enum Sink {
    Stdin(mpsc::Sender<Bytes>),
    Resize(mpsc::Sender<TerminalSize>),
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

/// One session, as its read loop sees it.
struct Session {
    backend: Backend,
    mode: Mode,
    protocol: &'static str,
    tx: mpsc::Sender<Outgoing>,
    credit_tx: mpsc::Sender<Credit>,
    decoder: Decoder,
    buf: BytesMut,
    last_stream: u32,
    sinks: HashMap<u32, Sink>,
    session_unacked: u32,
    /// Remotecommand: the stream of each kind.
    kinds: HashMap<StreamKind, u32>,
    /// Remotecommand: the task carrying the command's output while it runs.
    started: Option<JoinHandle<()>>,
    /// Remotecommand: the command ended; what it wrote is draining.
    finishing: bool,
    /// Portforward: requests by id.
    forwards: HashMap<String, Forward>,
    /// Portforward: the connections' tasks.
    forward_tasks: Vec<JoinHandle<()>>,
}

/// Serves one upgraded connection until the command ends, the client goes
/// away, or the client breaks the protocol.
pub(crate) async fn serve<IO>(io: IO, backend: Backend, mode: Mode, protocol: &'static str)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut r, w) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel::<Outgoing>(64);
    let (credit_tx, credit_rx) = mpsc::channel::<Credit>(64);
    let writer = tokio::spawn(writer::run(w, rx, credit_rx));
    let mut session = Session {
        backend,
        mode,
        protocol,
        tx,
        credit_tx,
        decoder: Decoder::new(),
        buf: BytesMut::with_capacity(64 * 1024),
        last_stream: 0,
        sinks: HashMap::new(),
        session_unacked: 0,
        kinds: HashMap::new(),
        started: None,
        finishing: false,
        forwards: HashMap::new(),
        forward_tasks: Vec::new(),
    };
    let writer = session.run(&mut r, writer).await;
    session.close(writer).await;
}

/// Waits for `task` to end; forever without one.
async fn finished(task: Option<&mut JoinHandle<()>>) {
    match task {
        Some(task) => {
            let _ = task.await;
        }
        None => std::future::pending().await,
    }
}

impl Session {
    async fn send(&self, out: Outgoing) {
        let _ = self.tx.send(out).await;
    }

    /// Reads and handles frames until the session is over; returns the
    /// writer's task unless it has ended already.
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        writer: JoinHandle<()>,
    ) -> Option<JoinHandle<()>> {
        let mut writer = Some(writer);
        let drain_deadline = tokio::time::sleep(DRAIN_TIMEOUT);
        tokio::pin!(drain_deadline);
        let setup_deadline = tokio::time::sleep(STREAM_SETUP_TIMEOUT);
        tokio::pin!(setup_deadline);
        loop {
            if self.handle_buffered().await.is_break() {
                return writer;
            }
            let waiting_for_streams =
                matches!(self.mode, Mode::Command(_)) && self.started.is_none() && !self.finishing;
            tokio::select! {
                n = r.read_buf(&mut self.buf) => if matches!(n, Ok(0) | Err(_)) {
                    return writer;
                },
                _ = finished(self.started.as_mut()) => {
                    // The command ended and its outcome is queued. The writer
                    // ends the session once the client's windows let the rest
                    // of the output out; until then its credit must be read.
                    self.started = None;
                    self.finishing = true;
                    drain_deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                    self.send(Outgoing::Finish(self.last_stream)).await;
                }
                _ = finished(writer.as_mut()), if self.finishing => return None,
                _ = &mut drain_deadline, if self.finishing => {
                    tracing::debug!("SPDY: client granted no room for the rest of the output; ending");
                    return writer;
                }
                _ = &mut setup_deadline, if waiting_for_streams => {
                    tracing::debug!("SPDY: streams not opened in time; ending the session");
                    return writer;
                }
            }
        }
    }

    /// Handles every whole frame already read.
    async fn handle_buffered(&mut self) -> ControlFlow<()> {
        loop {
            let (frame, used) = match Frame::parse(&self.buf) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return ControlFlow::Continue(()),
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY: protocol error; ending the session");
                    self.send(Outgoing::GoAway(self.last_stream)).await;
                    return ControlFlow::Break(());
                }
            };
            let _ = self.buf.split_to(used);
            self.handle(frame).await?;
        }
    }

    /// Handles one frame from the client.
    async fn handle(&mut self, frame: Frame) -> ControlFlow<()> {
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => return self.on_syn_stream(stream_id, &headers).await,
            Frame::Data {
                stream_id,
                flags,
                data,
            } => self.on_data(stream_id, flags, data).await,
            Frame::Ping { id } => self.send(Outgoing::Ping(id)).await,
            Frame::RstStream { stream_id, .. } => {
                self.close_client_half(stream_id);
                let _ = self.credit_tx.send(Credit::Reset(stream_id)).await;
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let _ = self.credit_tx.send(Credit::Window(stream_id, delta)).await;
            }
            Frame::Settings { entries, .. } => {
                for (_, id, value) in entries {
                    if id == SETTINGS_INITIAL_WINDOW_SIZE {
                        let _ = self.credit_tx.send(Credit::InitialWindow(value)).await;
                    }
                }
            }
            Frame::GoAway { .. } => return ControlFlow::Break(()),
            // We open no streams, so there is nothing to reply to.
            Frame::SynReply { stream_id, .. } => {
                self.send(Outgoing::Rst(stream_id, rst::PROTOCOL_ERROR))
                    .await
            }
            // Keep the compression context in step; the headers themselves
            // mean nothing to these protocols.
            Frame::Headers { headers, .. } => {
                if self.decoder.decode(&headers).is_err() {
                    return ControlFlow::Break(());
                }
            }
            Frame::Unknown { .. } => {}
        }
        ControlFlow::Continue(())
    }

    /// The client's half of `stream` is done (FIN or reset): stdin EOF, TCP
    /// write shutdown.
    fn close_client_half(&mut self, stream: u32) {
        if let Some(Sink::Stdin(_) | Sink::Tcp(_)) = self.sinks.get(&stream) {
            self.sinks.insert(stream, Sink::Discard);
        }
    }

    /// A new client stream: checked, its headers read, then opened for the
    /// command or a port.
    async fn on_syn_stream(&mut self, stream_id: u32, block: &[u8]) -> ControlFlow<()> {
        // Client streams are odd and increasing.
        if stream_id % 2 == 0 || stream_id <= self.last_stream {
            self.send(Outgoing::Rst(stream_id, rst::PROTOCOL_ERROR))
                .await;
            self.send(Outgoing::GoAway(self.last_stream)).await;
            return ControlFlow::Break(());
        }
        self.last_stream = stream_id;
        let headers = match self.decoder.decode(block) {
            Ok(headers) => headers,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY: bad header block");
                self.send(Outgoing::GoAway(self.last_stream)).await;
                return ControlFlow::Break(());
            }
        };
        match &self.mode {
            Mode::PortForward { pod } => {
                let pod = pod.clone();
                self.open_forward_stream(stream_id, &headers, pod).await;
            }
            Mode::Command(_) => self.open_command_stream(stream_id, &headers).await,
        }
        ControlFlow::Continue(())
    }

    /// A portforward stream; the connection is dialled once its request has
    /// both streams.
    async fn open_forward_stream(&mut self, stream_id: u32, headers: &Headers, pod: String) {
        let stream_type = get(headers, "streamtype").unwrap_or("");
        let port = get(headers, "port").and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port.filter(|p| *p > 0) else {
            self.send(Outgoing::Rst(stream_id, rst::REFUSED_STREAM))
                .await;
            return;
        };
        let request_id = get(headers, "requestid").unwrap_or("").to_string();
        let entry = self.forwards.entry(request_id).or_default();
        entry.port = port;
        match stream_type {
            "data" if entry.data.is_none() => entry.data = Some(stream_id),
            "error" if entry.error.is_none() => entry.error = Some(stream_id),
            _ => {
                let _ = self
                    .tx
                    .send(Outgoing::Rst(stream_id, rst::PROTOCOL_ERROR))
                    .await;
                return;
            }
        }
        let _ = self.tx.send(Outgoing::Reply(stream_id)).await;
        self.sinks.insert(stream_id, Sink::Discard);
        let (Some(data), Some(error), false) = (entry.data, entry.error, entry.started) else {
            return;
        };
        entry.started = true;
        let (to_tcp, from_client) = mpsc::channel(16);
        self.sinks.insert(data, Sink::Tcp(to_tcp));
        let connection = Connection {
            pod,
            port,
            data,
            error,
        };
        let run = connection.run(Backend::clone(&self.backend), from_client, self.tx.clone());
        self.forward_tasks.push(tokio::spawn(run));
    }

    /// A remotecommand stream; the command starts once every stream it
    /// needs is open.
    async fn open_command_stream(&mut self, stream_id: u32, headers: &Headers) {
        let stream_type = get(headers, "streamtype").unwrap_or("");
        let Some(kind) = StreamKind::from_header(stream_type) else {
            self.send(Outgoing::Rst(stream_id, rst::PROTOCOL_ERROR))
                .await;
            return;
        };
        // Once the command runs, or has run, a late stream must not
        // complete the set and start it a second time.
        if self.kinds.contains_key(&kind) || self.started.is_some() || self.finishing {
            self.send(Outgoing::Rst(stream_id, rst::STREAM_IN_USE))
                .await;
            return;
        }
        self.kinds.insert(kind, stream_id);
        self.sinks.insert(stream_id, Sink::Discard);
        self.send(Outgoing::Reply(stream_id)).await;
        self.start_when_ready();
    }

    /// Starts the command if every stream it needs is open, its stdin and
    /// resize streams feeding it and its output carried to the client.
    fn start_when_ready(&mut self) {
        let Mode::Command(command) = &self.mode else {
            return;
        };
        if !streams_ready(command, self.protocol, &self.kinds) {
            return;
        }
        let (client, task) = command::start(Backend::clone(&self.backend), command.clone());
        if let (Some(id), Some(stdin)) = (self.kinds.get(&StreamKind::Stdin), client.stdin) {
            self.sinks.insert(*id, Sink::Stdin(stdin));
        }
        if let Some(id) = self.kinds.get(&StreamKind::Resize) {
            self.sinks.insert(*id, Sink::Resize(client.resize));
        }
        let structured = self.protocol == "v4.channel.k8s.io";
        let carry = carry_output(client.out, self.kinds.clone(), self.tx.clone(), structured);
        self.started = Some(tokio::spawn(async move {
            carry.await;
            let _ = task.await;
        }));
    }

    /// DATA from the client: to its stream's sink, and acknowledged.
    async fn on_data(&mut self, stream_id: u32, flags: u8, data: Bytes) {
        let len = data.len() as u32;
        match self.sinks.get(&stream_id) {
            None => {
                self.send(Outgoing::Rst(stream_id, rst::INVALID_STREAM))
                    .await
            }
            Some(Sink::Stdin(s)) | Some(Sink::Tcp(s)) => {
                if !data.is_empty() && s.send(data).await.is_err() {
                    self.sinks.insert(stream_id, Sink::Discard);
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
            self.close_client_half(stream_id);
        }
        if len > 0 {
            self.send(Outgoing::Window(stream_id, len)).await;
            self.session_unacked += len;
            if self.session_unacked >= SESSION_ACK_STEP {
                self.send(Outgoing::Window(0, self.session_unacked)).await;
                self.session_unacked = 0;
            }
        }
    }

    /// Stops what still runs (an exec whose output receiver is gone kills
    /// its command), says GOAWAY and lets the writer finish.
    async fn close(mut self, writer: Option<JoinHandle<()>>) {
        if let Some(started) = self.started.take() {
            started.abort();
            let _ = started.await;
        }
        for task in self.forward_tasks.drain(..) {
            task.abort();
        }
        self.sinks.clear();
        self.send(Outgoing::GoAway(self.last_stream)).await;
        // The writer sees its channels close.
        drop(self);
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(WRITER_GRACE, writer).await;
        }
    }
}

/// Whether every stream `command` needs under `protocol` is open.
fn streams_ready(command: &Command, protocol: &str, kinds: &HashMap<StreamKind, u32>) -> bool {
    let (tty, stdin, stdout, stderr) = command.flags();
    let resize_supported = protocol != "channel.k8s.io" && protocol != "v2.channel.k8s.io";
    let needed = [
        (StreamKind::Error, true),
        (StreamKind::Stdin, stdin),
        (StreamKind::Stdout, stdout),
        (StreamKind::Stderr, stderr),
        (StreamKind::Resize, tty && resize_supported),
    ];
    needed
        .iter()
        .all(|(kind, n)| !n || kinds.contains_key(kind))
}

/// Sends the command's output on its streams, then its outcome on the error
/// stream and FIN on every output stream. Dropping `out` (this future
/// dropped with its task) tells the command its client left.
async fn carry_output(
    mut out: mpsc::Receiver<Output>,
    kinds: HashMap<StreamKind, u32>,
    tx: mpsc::Sender<Outgoing>,
    structured: bool,
) {
    let data = |stream: u32, data: Bytes, fin: bool| Outgoing::Data { stream, data, fin };
    while let Some(output) = out.recv().await {
        let outcome = match output {
            Output::Data(kind, bytes) => {
                if let Some(stream) = kinds.get(&kind) {
                    let _ = tx.send(data(*stream, bytes, false)).await;
                }
                continue;
            }
            Output::Done(outcome) => outcome,
        };
        let error = kinds.get(&StreamKind::Error);
        if let (Some(stream), Some(payload)) = (error, outcome.encode(structured)) {
            let _ = tx.send(data(*stream, payload, false)).await;
        }
        for kind in [StreamKind::Stdout, StreamKind::Stderr, StreamKind::Error] {
            if let Some(stream) = kinds.get(&kind) {
                let _ = tx.send(data(*stream, Bytes::new(), true)).await;
            }
        }
        break;
    }
}
