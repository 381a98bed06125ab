//! The one start-up of an exec or attach session, whichever protocol
//! carries it: the backend starts the process, its stdio is pumped to and
//! from the client, its end is reported on the error stream, and the
//! process is told when the client goes away.

use crate::backend::{BackendError, Process, ProcessControl, ProcessReader, ProcessWriter};
use crate::protocol::{Outcome, StreamKind};
use crate::request::Command;
use crate::streams::{self, ClientSide, Output, Streams};
use crate::Backend;
use bytes::Bytes;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long output pumps may take to deliver what a process wrote just
/// before it ended (a descendant still holding a pipe must not hold the
/// session open), and how long stdin may take to close after the client
/// left.
const PUMP_GRACE: Duration = Duration::from_secs(2);

/// When a changed terminal size is applied again, last first.
const SIZE_REAPPLY: [Duration; 3] = [
    Duration::from_millis(1500),
    Duration::from_millis(400),
    Duration::from_millis(100),
];

/// Starts `command` against `backend`: returns the protocol side of its
/// streams and the task running it, which ends once the outcome is sent
/// or the client left (dropping `ClientSide::out` says so).
pub(crate) fn start(backend: Backend, command: Command) -> (ClientSide, JoinHandle<()>) {
    let (_, stdin, _, _) = command.flags();
    let (streams, client) = streams::pair(stdin);
    let task = tokio::spawn(run(backend, command, streams));
    (client, task)
}

/// Runs `command` until it ends or the client leaves; the outcome goes to
/// the error stream.
async fn run(backend: Backend, command: Command, mut streams: Streams) {
    let started = match &command {
        Command::Exec(request) => backend.exec(request).await,
        Command::Attach(request) => backend.attach(request).await,
    };
    let outcome = match started {
        Ok(process) => match drive(process, &command, &mut streams).await {
            Some(outcome) => outcome,
            None => return, // the client left; nobody to tell
        },
        Err(e) => Outcome::Failed(e.to_string()),
    };
    let _ = streams.out.send(Output::Done(outcome)).await;
}

/// Pumps `process`'s stdio until it ends (its outcome) or the client
/// leaves (`None`).
async fn drive(mut process: Process, command: &Command, streams: &mut Streams) -> Option<Outcome> {
    let (_, _, want_stdout, want_stderr) = command.flags();
    let mut pumps = Vec::new();
    for (pipe, kind, wanted) in [
        (process.stdout.take(), StreamKind::Stdout, want_stdout),
        (process.stderr.take(), StreamKind::Stderr, want_stderr),
    ] {
        if let Some(pipe) = pipe {
            let out = wanted.then(|| streams.out.clone());
            pumps.push(tokio::spawn(pump_out(pipe, kind, out)));
        }
    }
    let stdin = match (process.stdin.take(), streams.stdin.take()) {
        (Some(to_process), Some(from_client)) => Some(tokio::spawn(pump_in(
            from_client,
            to_process,
            command.eof_byte(),
        ))),
        _ => None,
    };
    let control = process.control.as_mut();
    let Some(result) = supervise(control, command.reapplies_sizes(), streams).await else {
        tracing::info!(container = %command.container_id(), "streaming client gone");
        control.client_gone().await;
        // The client's side is gone, so the pump sees its channel close
        // and shuts stdin down (an attach's stdin_once relies on it).
        if let Some(pump) = stdin {
            let _ = tokio::time::timeout(PUMP_GRACE, pump).await;
        }
        return None;
    };
    if let Some(pump) = stdin {
        pump.abort();
    }
    // Output written just before the end comes before the status.
    for pump in pumps {
        let _ = tokio::time::timeout(PUMP_GRACE, pump).await;
    }
    Some(match result {
        Ok(0) => Outcome::Success,
        Ok(code) => Outcome::Exited(code),
        Err(e) => Outcome::Failed(e.to_string()),
    })
}

/// Waits for the process while applying the client's terminal sizes:
/// `None` when the client left first.
async fn supervise(
    control: &mut dyn ProcessControl,
    reapply_sizes: bool,
    streams: &mut Streams,
) -> Option<Result<i32, BackendError>> {
    let mut last_size = None;
    let mut reapply: Vec<Duration> = Vec::new();
    loop {
        let next = reapply.last().copied();
        tokio::select! {
            result = control.wait() => return Some(result),
            Some(size) = streams.resize.recv() => {
                last_size = Some(size);
                if reapply_sizes {
                    reapply = SIZE_REAPPLY.to_vec();
                }
                if let Err(e) = control.resize(size).await {
                    tracing::debug!(error = %e, "resize");
                }
            }
            _ = tokio::time::sleep(next.unwrap_or_default()), if next.is_some() => {
                reapply.pop();
                if let Some(size) = last_size {
                    let _ = control.resize(size).await;
                }
            }
            _ = streams.out.closed() => return None,
        }
    }
}

/// Copies the client's stdin to the process; at the client's EOF writes
/// `eof` (if any) and shuts the process's stdin down.
async fn pump_in(mut from_client: mpsc::Receiver<Bytes>, mut to: ProcessWriter, eof: Option<u8>) {
    while let Some(data) = from_client.recv().await {
        if to.write_all(&data).await.is_err() {
            return;
        }
    }
    if let Some(byte) = eof {
        let _ = to.write_all(&[byte]).await;
    }
    let _ = to.shutdown().await;
}

/// Copies a process's output to the client; without a client stream for it
/// (`out` is `None`) the output is read and dropped so the process never
/// blocks on a full pipe.
async fn pump_out(mut from: ProcessReader, kind: StreamKind, out: Option<mpsc::Sender<Output>>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{AttachRequest, ExecRequest};
    use crate::testing::EchoBackend;
    use std::sync::Arc;

    async fn outputs(mut client: ClientSide) -> Vec<Output> {
        let mut seen = Vec::new();
        while let Some(output) = client.out.recv().await {
            seen.push(output);
        }
        seen
    }

    #[tokio::test]
    async fn an_exec_reports_output_then_its_outcome() {
        let backend: Backend = Arc::new(EchoBackend::default());
        let exec = ExecRequest {
            container_id: "c1".into(),
            cmd: vec!["exit".into(), "3".into()],
            stdout: true,
            stderr: true,
            ..ExecRequest::default()
        };
        let (client, task) = start(backend, Command::Exec(exec));
        let seen = outputs(client).await;
        task.await.unwrap();
        assert_eq!(
            seen,
            [
                Output::Data(StreamKind::Stderr, Bytes::from("exiting with 3\n")),
                Output::Done(Outcome::Exited(3))
            ]
        );
    }

    #[tokio::test]
    async fn output_nobody_asked_for_is_dropped_and_failures_are_reported() {
        let backend: Backend = Arc::new(EchoBackend::default());
        let exec = ExecRequest {
            container_id: "c1".into(),
            cmd: vec!["echo".into(), "unseen".into()],
            ..ExecRequest::default()
        };
        let (client, _) = start(Arc::clone(&backend), Command::Exec(exec));
        assert_eq!(outputs(client).await, [Output::Done(Outcome::Success)]);
        let attach = AttachRequest {
            container_id: "missing".into(),
            ..AttachRequest::default()
        };
        let (client, _) = start(backend, Command::Attach(attach));
        let seen = outputs(client).await;
        assert!(
            matches!(&seen[..], [Output::Done(Outcome::Failed(m))] if m.contains("missing")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_client_that_leaves_stops_an_exec_but_not_an_attach() {
        let echo = Arc::new(EchoBackend::default());
        let backend: Backend = echo.clone();
        for (command, kills) in [
            (
                Command::Exec(ExecRequest {
                    container_id: "c1".into(),
                    cmd: vec!["sleep".into()],
                    stdout: true,
                    ..ExecRequest::default()
                }),
                1,
            ),
            (
                Command::Attach(AttachRequest {
                    container_id: "c1".into(),
                    stdin: true,
                    stdout: true,
                    ..AttachRequest::default()
                }),
                1,
            ),
        ] {
            let (client, task) = start(Arc::clone(&backend), command);
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(client);
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("the session ends with its client")
                .unwrap();
            assert_eq!(echo.kills(), kills);
        }
    }
}
