//! Why the monitor could not do its job, as one line for the daemon (the
//! monitor's first report line) or for `monitor.log`.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A failure of the monitor, naming what it was doing and why.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong.
    Usage(String),
    /// A system call on one of our own resources failed.
    Sys {
        /// What we were doing, e.g. `pipe`, `console socket`, `waitpid`.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A file could not be opened, read or written.
    File {
        /// What it is, e.g. `pid file`, `log`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The runtime could not be started.
    Spawn {
        /// The runtime binary.
        runtime: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The runtime ran and failed; `stderr` is what it said.
    Runtime {
        /// The verb, `create` or `start`.
        verb: &'static str,
        /// `exit status N` or `killed by signal N`.
        how: String,
        /// The start of its stderr.
        stderr: String,
    },
    /// A terminal was asked for and the runtime never sent one.
    NoTerminal,
    /// The daemon withdrew before the bundle was ready.
    Aborted(String),
}

impl Failure {
    /// A failed system call on one of our own resources.
    pub fn sys(what: &'static str) -> impl FnOnce(io::Error) -> Failure {
        move |source| Failure::Sys { what, source }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(why) => write!(f, "{why}"),
            Failure::Sys { what, source } => write!(f, "{what}: {source}"),
            Failure::File { what, path, reason } => {
                write!(f, "{what} {}: {reason}", path.display())
            }
            Failure::Spawn { runtime, source } => {
                write!(f, "cannot run {}: {source}", runtime.display())
            }
            Failure::Runtime { verb, how, stderr } => {
                write!(f, "{verb} failed ({how}): {stderr}")
            }
            Failure::NoTerminal => write!(f, "runtime never sent the terminal"),
            Failure::Aborted(why) => write!(f, "aborted: {why}"),
        }
    }
}
