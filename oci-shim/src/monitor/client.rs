//! A control connection to one monitor.

use super::protocol::{self, ExitRecord, Request, FRAME_EXIT, FRAME_STDERR, FRAME_STDOUT};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A connection to a container's monitor (see [`protocol`] for the wire format).
///
/// # Examples
///
/// ```no_run
/// use oci_shim::monitor::{Monitor, MonitorStatus};
///
/// # async fn demo() -> Result<(), oci_shim::Error> {
/// match Monitor::reconnect("c1", "/run/oci-shim/c1").await? {
///     MonitorStatus::Running(mut client) => {
///         client.reopen_log().await?;
///         let exit = client.wait().await?;
///         println!("exited with {}", exit.exit_code);
///     }
///     MonitorStatus::Exited(exit) => println!("exited while we were away: {}", exit.exit_code),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MonitorClient {
    id: String,
    state_dir: PathBuf,
    stream: BufReader<UnixStream>,
}

/// What the monitor says about its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Running (or created and not yet started) with this host pid.
    Running(i32),
    /// Exited.
    Exited(ExitRecord),
}

/// One frame of an attach stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachFrame {
    /// Output on the container's stdout (or terminal).
    Stdout(Vec<u8>),
    /// Output on the container's stderr.
    Stderr(Vec<u8>),
    /// The container exited; no more frames follow.
    Exit(ExitRecord),
}

impl MonitorClient {
    /// Connects to the socket at `sock` and performs the version handshake.
    pub async fn connect(id: &str, sock: &Path) -> Result<MonitorClient> {
        let stream = UnixStream::connect(sock)
            .await
            .map_err(|e| Error::io("monitor socket", sock, "connect", e))?;
        let mut client = MonitorClient {
            id: id.to_owned(),
            state_dir: sock.parent().map(Path::to_path_buf).unwrap_or_default(),
            stream: BufReader::new(stream),
        };
        let reply = client
            .round_trip(&format!("hello {}", protocol::VERSION))
            .await?;
        if reply != format!("ok {}", protocol::VERSION) {
            return Err(Error::monitor(id, format!("handshake refused: {reply:?}")));
        }
        Ok(client)
    }

    /// Starts the container through its monitor (see [`super::Monitor::start`]).
    pub async fn start(&mut self) -> Result<()> {
        self.expect_ok(Request::Start).await
    }

    /// Asks for the container's state.
    pub async fn state(&mut self) -> Result<ContainerStatus> {
        let reply = self.round_trip(&Request::State.to_line()).await?;
        if let Some(record) = ExitRecord::parse_line(&reply) {
            return Ok(ContainerStatus::Exited(record));
        }
        reply
            .strip_prefix("running ")
            .and_then(|p| p.parse().ok())
            .map(ContainerStatus::Running)
            .ok_or_else(|| self.bad_reply("state", &reply))
    }

    /// Waits until the container has exited and its log is complete.
    ///
    /// If the monitor goes away without answering (it exits right after the
    /// container), the exit record it wrote is read instead.
    pub async fn wait(&mut self) -> Result<ExitRecord> {
        match self.round_trip(&Request::Wait.to_line()).await {
            Ok(reply) => {
                ExitRecord::parse_line(&reply).ok_or_else(|| self.bad_reply("wait", &reply))
            }
            Err(_) => {
                let path = self.state_dir.join(protocol::EXIT_FILE_NAME);
                tokio::fs::read_to_string(&path)
                    .await
                    .ok()
                    .and_then(|t| ExitRecord::from_json(&t))
                    .ok_or_else(|| {
                        Error::monitor(&self.id, "monitor went away without an exit record")
                    })
            }
        }
    }

    /// Has the monitor send `signal` to the container's init (every
    /// process of the container with `all`); `false` when only the runtime
    /// can deliver it (see the `kill` request in [`super::protocol`]). An
    /// init that already exited counts as signalled.
    pub async fn kill(&mut self, signal: i32, all: bool) -> Result<bool> {
        let request = Request::Kill { signal, all };
        let reply = self.round_trip(&request.to_line()).await?;
        match reply.as_str() {
            "ok" => Ok(true),
            "error needs-runtime" => Ok(false),
            _ if ExitRecord::parse_line(&reply).is_some() => Ok(true),
            _ => Err(Error::monitor(
                &self.id,
                format!("{}: {reply}", request.to_line()),
            )),
        }
    }

    /// Makes the monitor reopen the log file (after the daemon rotated it).
    pub async fn reopen_log(&mut self) -> Result<()> {
        self.expect_ok(Request::ReopenLog).await
    }

    /// Resizes the container's terminal.
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        self.expect_ok(Request::Resize { width, height }).await
    }

    /// Switches this connection to attach mode: output from now on, stdin through
    /// [`MonitorClient::write_stdin`].
    pub async fn attach(&mut self) -> Result<()> {
        self.expect_ok(Request::Attach).await
    }

    /// In attach mode: the next frame of output.
    pub async fn next_frame(&mut self) -> Result<AttachFrame> {
        let io = |e| Error::monitor(&self.id, format!("attach stream: {e}"));
        let mut header = [0u8; 5];
        self.stream.read_exact(&mut header).await.map_err(io)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        // Frames are at most one read of output; anything larger is corruption.
        if len > 1 << 20 {
            return Err(Error::monitor(
                &self.id,
                format!("attach frame of {len} bytes"),
            ));
        }
        let mut data = vec![0u8; len];
        self.stream
            .read_exact(&mut data)
            .await
            .map_err(|e| Error::monitor(&self.id, format!("attach stream: {e}")))?;
        match header[0] {
            FRAME_STDOUT => Ok(AttachFrame::Stdout(data)),
            FRAME_STDERR => Ok(AttachFrame::Stderr(data)),
            FRAME_EXIT => ExitRecord::parse_line(&String::from_utf8_lossy(&data))
                .map(AttachFrame::Exit)
                .ok_or_else(|| Error::monitor(&self.id, "bad exit frame")),
            tag => Err(Error::monitor(
                &self.id,
                format!("unknown attach frame tag {tag}"),
            )),
        }
    }

    /// In attach mode: sends bytes to the container's stdin.
    pub async fn write_stdin(&mut self, data: &[u8]) -> Result<()> {
        self.stream
            .get_mut()
            .write_all(data)
            .await
            .map_err(|e| Error::monitor(&self.id, format!("attach stdin: {e}")))
    }

    /// In attach mode: ends this client's input (closes the container's stdin
    /// if it was started with `stdin_once`).
    pub async fn close_stdin(&mut self) -> Result<()> {
        self.stream
            .get_mut()
            .shutdown()
            .await
            .map_err(|e| Error::monitor(&self.id, format!("attach stdin: {e}")))
    }

    async fn expect_ok(&mut self, req: Request) -> Result<()> {
        let reply = self.round_trip(&req.to_line()).await?;
        if reply == "ok" {
            Ok(())
        } else {
            Err(Error::monitor(
                &self.id,
                format!("{}: {reply}", req.to_line()),
            ))
        }
    }

    async fn round_trip(&mut self, line: &str) -> Result<String> {
        let id = self.id.clone();
        let io = |e: std::io::Error| Error::monitor(&id, format!("socket: {e}"));
        self.stream
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(io)?;
        let mut reply = String::new();
        // A reply is one short line; a monitor never sends more than a few bytes.
        let n = (&mut self.stream)
            .take(4096)
            .read_line(&mut reply)
            .await
            .map_err(io)?;
        if n == 0 {
            return Err(Error::monitor(&self.id, "monitor closed the connection"));
        }
        Ok(reply.trim_end().to_owned())
    }

    fn bad_reply(&self, what: &str, reply: &str) -> Error {
        Error::monitor(&self.id, format!("unexpected reply to {what}: {reply:?}"))
    }
}
