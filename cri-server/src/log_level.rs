//! The daemon's log filter, changeable while it runs: `log_level` in the
//! configuration is reloadable (CRI-O's is too), so a node under
//! investigation says more without a restart that would hide the problem.
//!
//! At start the filter is `--log-level` when given, else the
//! configuration's `log_level`, else `info`. A reload that changes
//! `log_level` puts the new filter in force; emptied, the start-up one.

use tracing_subscriber::reload::Handle;
use tracing_subscriber::{EnvFilter, Registry};

/// Why a log filter was not put in force.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    /// The text is no filter.
    #[error("log_level {level:?}: {source}")]
    Parse {
        /// What was given.
        level: String,
        /// Why it does not parse.
        source: tracing_subscriber::filter::ParseError,
    },
    /// The subscriber is gone (the process is exiting).
    #[error("log_level {level:?}: the log subscriber is gone")]
    Gone {
        /// What was given.
        level: String,
    },
}

/// A handle on the installed filter.
#[derive(Clone)]
pub struct LogLevel {
    handle: Handle<EnvFilter, Registry>,
    start_up: String,
}

impl LogLevel {
    /// Over the filter installed by the subscriber behind `handle`, which
    /// started at `start_up`.
    pub fn new(handle: Handle<EnvFilter, Registry>, start_up: &str) -> Self {
        LogLevel {
            handle,
            start_up: start_up.to_owned(),
        }
    }

    /// Puts `level` in force; empty means the start-up level.
    pub fn set(&self, level: &str) -> Result<(), LogLevelError> {
        let level = if level.is_empty() {
            &self.start_up
        } else {
            level
        };
        let filter = EnvFilter::try_new(level).map_err(|source| LogLevelError::Parse {
            level: level.to_owned(),
            source,
        })?;
        self.handle.reload(filter).map_err(|_| LogLevelError::Gone {
            level: level.to_owned(),
        })
    }
}
