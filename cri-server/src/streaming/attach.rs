//! Attach: the container's main process through its monitor, which owns the
//! container's stdio. Output from the moment of attaching, stdin when the
//! container was created with stdin (the monitor closes it after the first
//! attach ends when `stdin_once` is set), terminal resizes.
//!
//! The attach connection is split into a read half (output frames) and a
//! write half (stdin) so both flow at once; resizes use a second connection.

use super::protocol::{Outcome, StreamKind};
use super::streams::{Output, Streams};
use crate::daemon::Daemon;
use crate::layout::Layout;
use bytes::Bytes;
use oci_shim::monitor::protocol::{self as monitor, FRAME_EXIT, FRAME_STDERR, FRAME_STDOUT};
use oci_shim::monitor::MonitorClient;
use sandbox_core::ContainerState;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// What to attach to.
#[derive(Debug, Clone)]
pub struct AttachSpec {
    /// The container.
    pub container_id: String,
    /// Send stdout.
    pub stdout: bool,
    /// Send stderr.
    pub stderr: bool,
}

/// Attaches until the container exits or the client leaves (the container
/// keeps running then).
pub async fn run(daemon: Arc<Daemon>, spec: AttachSpec, mut streams: Streams) {
    if let Some(outcome) = run_inner(&daemon, &spec, &mut streams).await {
        let _ = streams.out.send(Output::Done(outcome)).await;
    }
}

async fn handshake(
    id: &str,
    sock: &PathBuf,
) -> Result<
    (
        BufReader<tokio::net::unix::OwnedReadHalf>,
        tokio::net::unix::OwnedWriteHalf,
    ),
    String,
> {
    let stream = UnixStream::connect(sock)
        .await
        .map_err(|e| format!("container {id}: monitor {}: {e}", sock.display()))?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let fail = |e: std::io::Error| format!("container {id}: monitor: {e}");
    for (line, expect) in [
        (
            format!("hello {}", monitor::VERSION),
            format!("ok {}", monitor::VERSION),
        ),
        ("attach".to_string(), "ok".to_string()),
    ] {
        w.write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(fail)?;
        let mut reply = String::new();
        (&mut r)
            .take(4096)
            .read_line(&mut reply)
            .await
            .map_err(fail)?;
        if reply.trim_end() != expect {
            return Err(format!(
                "container {id}: monitor refused {line:?}: {reply:?}"
            ));
        }
    }
    Ok((r, w))
}

async fn run_inner(daemon: &Daemon, spec: &AttachSpec, streams: &mut Streams) -> Option<Outcome> {
    let container = match daemon.containers.get(&spec.container_id) {
        Ok(c) => c,
        Err(e) => return Some(Outcome::Failed(e.to_string())),
    };
    if container.state != ContainerState::Running {
        return Some(Outcome::Failed(format!(
            "container {} is not running",
            container.id
        )));
    }
    let dir = Layout::monitor(&daemon.layout.container_dir(&container.id));
    let sock = dir.join(monitor::SOCKET_NAME);
    let (mut frames, mut stdin_w) = match handshake(&container.id, &sock).await {
        Ok(halves) => halves,
        Err(e) => return Some(Outcome::Failed(e)),
    };
    let stdin_pump = streams.stdin.take().map(|mut from_client| {
        tokio::spawn(async move {
            while let Some(data) = from_client.recv().await {
                if stdin_w.write_all(&data).await.is_err() {
                    return;
                }
            }
            // The client's EOF: the monitor closes the container's stdin
            // when it was created with stdin_once.
            let _ = stdin_w.shutdown().await;
        })
    });
    let out = streams.out.clone();
    let (want_stdout, want_stderr) = (spec.stdout, spec.stderr);
    let id = container.id.clone();
    let reader = async move {
        loop {
            let mut header = [0u8; 5];
            if let Err(e) = frames.read_exact(&mut header).await {
                return Outcome::Failed(format!("container {id}: monitor: {e}"));
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if len > 1 << 20 {
                return Outcome::Failed(format!("container {id}: monitor frame of {len} bytes"));
            }
            let mut data = vec![0u8; len];
            if let Err(e) = frames.read_exact(&mut data).await {
                return Outcome::Failed(format!("container {id}: monitor: {e}"));
            }
            let kind = match header[0] {
                FRAME_STDOUT if want_stdout => StreamKind::Stdout,
                FRAME_STDERR if want_stderr => StreamKind::Stderr,
                FRAME_EXIT => return Outcome::Success,
                _ => continue,
            };
            if out
                .send(Output::Data(kind, Bytes::from(data)))
                .await
                .is_err()
            {
                return Outcome::Success;
            }
        }
    };
    tokio::pin!(reader);
    let mut resizer: Option<MonitorClient> = None;
    let outcome = loop {
        tokio::select! {
            outcome = &mut reader => break Some(outcome),
            Some(size) = streams.resize.recv() => {
                if resizer.is_none() {
                    resizer = MonitorClient::connect(&container.id, &sock).await.ok();
                }
                if let Some(m) = resizer.as_mut() {
                    if let Err(e) = m.resize(size.width, size.height).await {
                        tracing::debug!(container = %container.id, error = %e, "attach resize");
                        resizer = None;
                    }
                }
            }
            _ = streams.out.closed() => break None,
        }
    };
    if let Some(p) = stdin_pump {
        if outcome.is_some() {
            p.abort();
        } else {
            // The client left: let the pump see its channel close and shut
            // the monitor's stdin (stdin_once) rather than cutting it off.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), p).await;
        }
    }
    outcome
}
