//! A streaming exec: the command started through the container's runtime,
//! its stdio pumped to and from the client, its exit code reported, and the
//! command killed when the client goes away.

use super::protocol::{Outcome, StreamKind};
use super::streams::{Output, Streams};
use crate::daemon::Daemon;
use bytes::Bytes;
use oci_shim::runtime::{ExecReader, ExecStreamOptions};
use sandbox_core::ContainerState;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The container.
    pub container_id: String,
    /// The command.
    pub cmd: Vec<String>,
    /// On a terminal.
    pub tty: bool,
    /// Send stdout.
    pub stdout: bool,
    /// Send stderr.
    pub stderr: bool,
}

/// Runs `spec` until it ends or the client leaves; the outcome goes to the
/// error stream.
pub async fn run(daemon: Arc<Daemon>, spec: ExecSpec, mut streams: Streams) {
    let outcome = match run_inner(&daemon, &spec, &mut streams).await {
        Some(outcome) => outcome,
        None => return, // the client left; nobody to tell
    };
    let _ = streams.out.send(Output::Done(outcome)).await;
}

async fn run_inner(daemon: &Daemon, spec: &ExecSpec, streams: &mut Streams) -> Option<Outcome> {
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
    let runtime = match daemon.runtime(&container.runtime_handler) {
        Ok(r) => r,
        Err(e) => return Some(Outcome::Failed(e.to_string())),
    };
    let options = ExecStreamOptions {
        tty: spec.tty,
        stdin: streams.stdin.is_some(),
    };
    let mut session = match runtime.exec_stream(&container.id, &spec.cmd, options).await {
        Ok(s) => s,
        Err(e) => return Some(Outcome::Failed(e.to_string())),
    };
    let mut pumps = Vec::new();
    if let Some(stdout) = session.stdout.take() {
        let out = spec.stdout.then(|| streams.out.clone());
        pumps.push(tokio::spawn(pump_out(stdout, StreamKind::Stdout, out)));
    }
    if let Some(stderr) = session.stderr.take() {
        let out = spec.stderr.then(|| streams.out.clone());
        pumps.push(tokio::spawn(pump_out(stderr, StreamKind::Stderr, out)));
    }
    let stdin_pump = match (session.stdin.take(), streams.stdin.take()) {
        (Some(mut writer), Some(mut from_client)) => {
            let tty = spec.tty;
            Some(tokio::spawn(async move {
                while let Some(data) = from_client.recv().await {
                    if writer.write_all(&data).await.is_err() {
                        return;
                    }
                }
                // On a terminal, EOF is the EOF character, not a close.
                if tty {
                    let _ = writer.write_all(&[4]).await;
                }
                let _ = writer.shutdown().await;
            }))
        }
        _ => None,
    };
    // The runtime copies our terminal's size on SIGWINCH, but only once its
    // handler is installed: a size that arrives while it starts would be
    // lost, so the last size is applied again a few times after it changes.
    let mut last_size = None;
    let mut resends: Vec<Duration> = Vec::new();
    let result = loop {
        let next_resend = resends.last().copied();
        tokio::select! {
            r = session.wait() => break r,
            Some(size) = streams.resize.recv() => {
                last_size = Some(size);
                resends = vec![Duration::from_millis(1500), Duration::from_millis(400), Duration::from_millis(100)];
                if let Err(e) = session.resize(size.width, size.height) {
                    tracing::debug!(container = %container.id, error = %e, "resize");
                }
            }
            _ = tokio::time::sleep(next_resend.unwrap_or_default()), if next_resend.is_some() => {
                resends.pop();
                if let Some(size) = last_size {
                    let _ = session.resize(size.width, size.height);
                }
            }
            _ = streams.out.closed() => {
                tracing::info!(container = %container.id, "exec client gone; killing the command");
                session.kill().await;
                if let Some(p) = stdin_pump { p.abort(); }
                return None;
            }
        }
    };
    if let Some(p) = stdin_pump {
        p.abort();
    }
    // Output written just before the exit comes before the status; a
    // descendant still holding the pipe must not hold the session open.
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    }
    Some(match result {
        Ok(0) => Outcome::Success,
        Ok(code) => Outcome::Exited(code),
        Err(e) => Outcome::Failed(e.to_string()),
    })
}

/// Copies a command's output to the client; without a client stream for it
/// (`out` is `None`) the output is read and dropped so the command never
/// blocks on a full pipe.
async fn pump_out(mut from: ExecReader, kind: StreamKind, out: Option<mpsc::Sender<Output>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(out) = &out {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if out.send(Output::Data(kind, data)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
