//! The crate's error type.
//!
//! Every variant names the object it concerns (container id, runtime name,
//! path) and the cause, so a failed create reads like
//! `container c1: runc create --bundle /b c1 failed (exit status 1): <runc's log>`.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from building bundles, driving the OCI runtime and talking to monitors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime ran but reported failure; `detail` holds what it wrote to
    /// stderr and to its log file.
    #[error("container {id}: {runtime}: `{command}` failed ({status}): {detail}")]
    RuntimeFailed {
        /// Container the command was about.
        id: String,
        /// Name of the runtime handler (e.g. `runc`).
        runtime: String,
        /// The command line that was run.
        command: String,
        /// How it ended (`exit status: 1`, `signal: 9`...).
        status: String,
        /// The runtime's own explanation (stderr and log file).
        detail: String,
    },
    /// The runtime did not finish in time and was killed.
    #[error("container {id}: {runtime}: `{command}` did not finish within {after:?}; killed")]
    RuntimeTimeout {
        /// Container the command was about.
        id: String,
        /// Name of the runtime handler.
        runtime: String,
        /// The command line that was run.
        command: String,
        /// How long it was given.
        after: std::time::Duration,
    },
    /// The runtime binary could not be started at all.
    #[error("container {id}: {runtime}: cannot run `{command}`: {source}")]
    RuntimeSpawn {
        /// Container the command was about.
        id: String,
        /// Name of the runtime handler.
        runtime: String,
        /// The command line that was attempted.
        command: String,
        /// Why the process could not be started.
        source: std::io::Error,
    },
    /// The runtime printed something we could not understand.
    #[error("container {id}: {runtime}: `{command}` printed unparsable output: {reason}")]
    RuntimeOutput {
        /// Container the command was about.
        id: String,
        /// Name of the runtime handler.
        runtime: String,
        /// The command line that was run.
        command: String,
        /// What was wrong with the output.
        reason: String,
    },
    /// The container spec cannot be turned into an OCI config.
    #[error("container spec: {0}")]
    Spec(String),
    /// A file or directory operation failed.
    #[error("{what} {path}: {op}: {source}")]
    Io {
        /// What the path is (e.g. `bundle config`, `monitor socket`).
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operation that failed (`write`, `rename`, `connect`...).
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The monitor of a container failed or broke the protocol.
    #[error("container {id}: monitor: {reason}")]
    Monitor {
        /// Container the monitor watches.
        id: String,
        /// What went wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
        op: &'static str,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            what,
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn monitor(id: &str, reason: impl Into<String>) -> Self {
        Error::Monitor {
            id: id.to_owned(),
            reason: reason.into(),
        }
    }
}
