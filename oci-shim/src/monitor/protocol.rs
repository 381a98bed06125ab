//! The wire protocol between the daemon and a container's monitor.
//!
//! The monitor (`oci-monitor`, one per container) listens on the unix socket
//! `monitor.sock` in the container's state directory. The protocol is plain
//! text so the monitor needs no serialisation library: every message is one
//! line of space-separated words ending in `\n`.
//!
//! # Version 1
//!
//! 1. The client opens the socket and sends `hello 1`. The monitor answers
//!    `ok 1`, or `error unsupported-version` and closes.
//! 2. The client then sends requests, one per line, each answered by one
//!    line, in order:
//!
//! | request            | reply                                                   |
//! |--------------------|---------------------------------------------------------|
//! | `start`            | `ok` once the runtime's `start` succeeded, or `error <reason>` |
//! | `state`            | `running <container pid>` or `exited <code> <signal> <finished_at_unix_nanos>` |
//! | `wait`             | `exited <code> <signal> <finished_at_unix_nanos>` once the container has exited |
//! | `reopen_log`       | `ok` once the log file was reopened (after rotation; a capped log counts the reopened file alone), or `error <reason>` |
//! | `resize <w> <h>`   | `ok`, or `error <reason>` when the container has no terminal |
//! | `attach`           | `ok`, then the connection switches to attach mode (below) |
//! | `kill <sig> <all>` | `ok` once signal `<sig>` went to the container's init, `exited ...` when it had already exited, `error needs-runtime` when only the runtime can deliver it, or `error <reason>` |
//!
//! `kill` spares the daemon a runtime process per stop. The monitor is the
//! init's parent (its subreaper) and alone reaps it, so while it has not
//! answered `exited` the pid is still the container's. With `<all>` 1 the
//! signal must reach every process of the container (`runc kill --all`):
//! the monitor does that only for `SIGKILL` to an init that is pid 1 of a
//! PID namespace of its own (the kernel then kills the whole namespace);
//! otherwise, and whenever it learns the exit from the runtime rather than
//! from `waitpid` (runsc), it answers `error needs-runtime`.
//!
//! Unknown requests get `error unknown-request` and the connection stays usable.
//! `<code>` is the exit status, `128 + signal` for a killed process (137 after
//! `SIGKILL`); `<signal>` is the killing signal or 0.
//!
//! ## Attach mode
//!
//! After `ok`, the monitor sends frames: one byte stream tag ([`FRAME_STDOUT`],
//! [`FRAME_STDERR`], [`FRAME_EXIT`]), a big-endian `u32` length, and that many
//! bytes. Output from the moment of attaching on is sent; the exit frame
//! carries the `exited ...` line and ends the stream. Bytes the client writes
//! go to the container's stdin (when it was started with stdin); when the
//! client shuts down its writing half, and the container was started with
//! `stdin_once`, the container's stdin is closed.
//!
//! ## Files in the state directory
//!
//! - `monitor.sock`: the socket; removed when the monitor exits.
//! - `exit.json`: written atomically when the container exits:
//!   `{"exit_code":137,"signal":9,"finished_at_unix_nanos":1700000000000000000}`.
//!   A client that finds no live socket reads this instead.
//! - `container.pid`: the pid file the runtime wrote on create.
//! - `monitor.pid`: the monitor's pid.
//! - `runtime.log`: the runtime's own log for the create (its error on failure).
//!
//! ## Start-up
//!
//! The daemon starts `oci-monitor` with its stdin and stdout on pipes, while
//! it is still writing the bundle. The monitor forks, detaches (new session,
//! child subreaper), binds its socket and then waits for the line `go` on
//! stdin, which the daemon sends once `config.json` is in place; EOF instead
//! (the daemon gave up, or died) makes it exit without creating anything.
//! After `go` it runs the runtime's create and writes exactly one line to its
//! stdout: `ready <container pid> <monitor pid>` or `error <reason>`. The
//! first process exits at once; the daemon reaps it.

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;
/// Socket file name in the state directory.
pub const SOCKET_NAME: &str = "monitor.sock";
/// Exit record file name in the state directory.
pub const EXIT_FILE_NAME: &str = "exit.json";
/// Pid file name in the state directory.
pub const PID_FILE_NAME: &str = "container.pid";
/// The monitor's own pid, written before it reports ready.
pub const MONITOR_PID_FILE_NAME: &str = "monitor.pid";
/// Runtime log file name (create) in the state directory.
pub const RUNTIME_LOG_NAME: &str = "runtime.log";
/// Console socket name in the state directory (terminal containers).
pub const CONSOLE_SOCKET_NAME: &str = "console.sock";
/// Attach frame tag: container stdout (or terminal output).
pub const FRAME_STDOUT: u8 = 1;
/// Attach frame tag: container stderr.
pub const FRAME_STDERR: u8 = 2;
/// Attach frame tag: the container exited; payload is the `exited ...` line.
pub const FRAME_EXIT: u8 = 3;

/// How a container ended.
///
/// # Examples
///
/// ```
/// use oci_shim::monitor::protocol::ExitRecord;
///
/// let r = ExitRecord { exit_code: 137, signal: 9, finished_at_unix_nanos: 5 };
/// assert_eq!(ExitRecord::parse_line(&r.to_line()), Some(r));
/// assert_eq!(ExitRecord::from_json(&r.to_json()), Some(r));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitRecord {
    /// Exit status; `128 + signal` when killed by a signal.
    pub exit_code: i32,
    /// The signal that killed it, or 0.
    pub signal: i32,
    /// When the monitor reaped it, in nanoseconds since the Unix epoch.
    pub finished_at_unix_nanos: u64,
}

impl ExitRecord {
    /// The `exited <code> <signal> <nanos>` line, without newline.
    pub fn to_line(&self) -> String {
        format!(
            "exited {} {} {}",
            self.exit_code, self.signal, self.finished_at_unix_nanos
        )
    }

    /// Parses an `exited ...` line (trailing newline allowed).
    pub fn parse_line(line: &str) -> Option<Self> {
        let mut words = line.split_ascii_whitespace();
        if words.next()? != "exited" {
            return None;
        }
        let record = ExitRecord {
            exit_code: words.next()?.parse().ok()?,
            signal: words.next()?.parse().ok()?,
            finished_at_unix_nanos: words.next()?.parse().ok()?,
        };
        words.next().is_none().then_some(record)
    }

    /// The `exit.json` content (hand-formatted so the monitor needs no JSON library).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"exit_code\":{},\"signal\":{},\"finished_at_unix_nanos\":{}}}\n",
            self.exit_code, self.signal, self.finished_at_unix_nanos
        )
    }

    /// Parses `exit.json` content.
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// A request line from the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Run the runtime's `start` (runsc takes a joining container's stdio
    /// from the `start` process, so the monitor must run it).
    Start,
    /// Ask for the container state.
    State,
    /// Reply when the container has exited.
    Wait,
    /// Reopen the log file.
    ReopenLog,
    /// Resize the terminal.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Switch to attach mode.
    Attach,
    /// Send a signal to the container's init (see the module docs).
    Kill {
        /// The signal number.
        signal: i32,
        /// Whether every process of the container must get it.
        all: bool,
    },
}

impl Request {
    /// The request line, without newline.
    pub fn to_line(&self) -> String {
        match self {
            Request::Start => "start".into(),
            Request::State => "state".into(),
            Request::Wait => "wait".into(),
            Request::ReopenLog => "reopen_log".into(),
            Request::Resize { width, height } => format!("resize {width} {height}"),
            Request::Attach => "attach".into(),
            Request::Kill { signal, all } => format!("kill {signal} {}", u8::from(*all)),
        }
    }

    /// Parses a request line; `None` for anything unknown or malformed.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_ascii_whitespace();
        let req = match words.next()? {
            "start" => Request::Start,
            "state" => Request::State,
            "wait" => Request::Wait,
            "reopen_log" => Request::ReopenLog,
            "attach" => Request::Attach,
            "resize" => Request::Resize {
                width: words.next()?.parse().ok()?,
                height: words.next()?.parse().ok()?,
            },
            "kill" => Request::Kill {
                signal: words
                    .next()?
                    .parse()
                    .ok()
                    .filter(|s| (1..=64).contains(s))?,
                all: match words.next()? {
                    "0" => false,
                    "1" => true,
                    _ => return None,
                },
            },
            _ => return None,
        };
        words.next().is_none().then_some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn exit_lines_round_trip(code in any::<i32>(), sig in any::<i32>(), t in any::<u64>()) {
            let r = ExitRecord { exit_code: code, signal: sig, finished_at_unix_nanos: t };
            prop_assert_eq!(ExitRecord::parse_line(&r.to_line()), Some(r));
            prop_assert_eq!(ExitRecord::from_json(&r.to_json()), Some(r));
        }

        #[test]
        fn resize_round_trips(w in any::<u16>(), h in any::<u16>()) {
            let r = Request::Resize { width: w, height: h };
            prop_assert_eq!(Request::parse(&r.to_line()), Some(r));
        }

        #[test]
        fn kill_round_trips(signal in 1i32..=64, all in any::<bool>()) {
            let r = Request::Kill { signal, all };
            prop_assert_eq!(Request::parse(&r.to_line()), Some(r));
        }

        #[test]
        fn garbage_never_panics(s in ".*") {
            let _ = Request::parse(&s);
            let _ = ExitRecord::parse_line(&s);
        }
    }

    #[test]
    fn trailing_words_are_refused() {
        assert_eq!(Request::parse("state now"), None);
        assert_eq!(Request::parse("wait\n"), Some(Request::Wait));
        assert_eq!(ExitRecord::parse_line("exited 1 0"), None);
        for bad in [
            "kill 0 0",
            "kill 65 1",
            "kill -9 1",
            "kill 9 2",
            "kill 9",
            "kill 9 1 x",
        ] {
            assert_eq!(Request::parse(bad), None, "{bad}");
        }
    }
}
