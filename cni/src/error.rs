//! The crate's error type.
//!
//! Every variant names the object it concerns (plugin, file, network) and the
//! cause, so a failed ADD reads like
//! `plugin bridge (ADD, container c1): error 11: failed to set bridge addr: ...`.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the pod network is not usable yet; kubelet shows it as the
/// `NetworkReady` condition's reason and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct NotReadyReason {
    /// A short CamelCase reason, e.g. `NoNetworkConfig`.
    pub reason: String,
    /// A human sentence that says what is missing and where.
    pub message: String,
}

/// Errors from loading network configurations, running plugins and caching
/// their results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A network configuration file is not a valid CNI configuration.
    #[error("network config {path}: {reason}")]
    ConfigParse {
        /// The file (or `<inline>` for text not read from disk).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No usable network configuration exists yet.
    #[error("network not ready: {0}")]
    NotReady(NotReadyReason),
    /// The plugin binary is in none of the plugin directories.
    #[error("plugin {plugin}: binary not found in {dirs:?}")]
    PluginNotFound {
        /// The plugin type (binary name).
        plugin: String,
        /// The directories searched.
        dirs: Vec<PathBuf>,
    },
    /// The plugin binary could not be started or waited for.
    #[error("plugin {plugin} ({command}): cannot run {path}: {source}")]
    PluginSpawn {
        /// The plugin type.
        plugin: String,
        /// The CNI command (`ADD`, `DEL`, `CHECK`).
        command: &'static str,
        /// The binary that was run.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The plugin did not finish in time and was killed.
    #[error("plugin {plugin} ({command}, container {container_id}): timed out after {timeout:?}, killed")]
    PluginTimeout {
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: &'static str,
        /// The container the call was about.
        container_id: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// The plugin reported a CNI error object (`{"code", "msg", "details"}`).
    #[error("plugin {plugin} ({command}, container {container_id}): error {code}: {msg}{}", details_suffix(.details))]
    PluginError {
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: &'static str,
        /// The container the call was about.
        container_id: String,
        /// The CNI error code (see the specification's well-known codes).
        code: u64,
        /// The plugin's message.
        msg: String,
        /// The plugin's optional longer explanation.
        details: String,
    },
    /// The plugin failed without a CNI error object (crash, signal, garbage).
    #[error("plugin {plugin} ({command}, container {container_id}): {status}: {detail}")]
    PluginFailed {
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: &'static str,
        /// The container the call was about.
        container_id: String,
        /// How it ended (`exit status: 1`, `signal: 9`...).
        status: String,
        /// Its stderr, or its stdout when stderr was empty.
        detail: String,
    },
    /// The plugin succeeded but printed something that is not a CNI result.
    #[error("plugin {plugin} ({command}, container {container_id}): unparsable result: {reason}")]
    PluginOutput {
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: &'static str,
        /// The container the call was about.
        container_id: String,
        /// What is wrong with the output.
        reason: String,
    },
    /// CHECK was asked for a pod that has no cached ADD result.
    #[error("network {network}: container {container_id} ({ifname}): no cached ADD result")]
    NotAttached {
        /// The network name.
        network: String,
        /// The container.
        container_id: String,
        /// The interface name.
        ifname: String,
    },
    /// The pod request cannot be passed to plugins safely.
    #[error("pod network request for container {container_id:?}: {reason}")]
    InvalidRequest {
        /// The infra container id in the request.
        container_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("{what} {path}: {op}: {source}")]
    Io {
        /// What the path is (e.g. `result cache entry`).
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operation that failed (`write`, `rename`, ...).
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A cache entry exists but cannot be understood.
    #[error("result cache entry {path}: {reason}")]
    CacheCorrupt {
        /// The entry file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

impl Error {
    /// True when the error says the thing being deleted is already gone
    /// (interface, namespace, allocation, iptables chain). DEL treats such
    /// failures as success so that teardown is idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = cni::Error::PluginError {
    ///     plugin: "bridge".into(),
    ///     command: "DEL",
    ///     container_id: "c1".into(),
    ///     code: 999,
    ///     msg: "Link not found".into(),
    ///     details: String::new(),
    /// };
    /// assert!(e.is_already_gone());
    /// ```
    pub fn is_already_gone(&self) -> bool {
        let text = match self {
            Error::PluginError { msg, details, .. } => format!("{msg} {details}"),
            Error::PluginFailed { detail, .. } => detail.clone(),
            _ => return false,
        }
        .to_ascii_lowercase();
        [
            "not found",
            "no such file or directory",
            "no such device",
            "does not exist",
            "not exist",
            "no such process",
        ]
        .iter()
        .any(|needle| text.contains(needle))
    }
}
