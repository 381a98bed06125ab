//! Live reload: SIGHUP (or `cri-server reload`, which sends it through the
//! pid file) reads the configuration's files again, checks the result
//! whole, and only then puts the reloadable part in force. Pods and
//! containers keep running whatever happens.
//!
//! Reloadable: the trust settings (`[runtime]` default and untrusted
//! handlers, default trust, `privileged_untrusted`, `trusted_images`), the
//! runtime handlers (added or changed; one pods run on cannot be removed
//! nor its `runtime_root` moved), the signature policy (its path and its
//! file), the registries and mirrors (`[image] registries`, their TLS
//! files read again), the stored credentials (`[image] auth_file`, its
//! path and its file) and the metrics endpoint (`[metrics] address`: opened, moved or closed) and the
//! log filter (`log_level`). Any other
//! changed key (`[tracing]` among them: the exporter starts with the
//! daemon) is logged as needing a restart and keeps its running value.
//! A reload that fails (a file that does not parse, an unknown key, a
//! policy, auth file or registry certificate that does not load, trust
//! settings naming a handler that is not
//! configured, a handler in use removed) changes nothing and says why.

use crate::config::{Config, ConfigError, ConfigSources};
use crate::daemon::Daemon;
use crate::log_level::LogLevel;
use crate::metrics::endpoint::MetricsEndpoint;
use crate::signatures::{ReloadError as PolicyReloadError, Signatures};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use trust_policy::TrustPolicy;

/// The pid file's name in the state directory.
pub const PID_FILE: &str = "cri-server.pid";

/// Keys a reload puts in force; every other key needs a restart.
const RELOADABLE: &[&str] = &[
    "runtime.default_handler",
    "runtime.untrusted_handler",
    "runtime.default_workload_trust",
    "runtime.privileged_untrusted",
    "runtime.trusted_images",
    "image.signature_policy",
    "image.auth_file",
    "image.registries",
    "runtime.handlers",
    "metrics.address",
    "log_level",
];

/// Why a reload (or `cri-server reload`) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration's files do not make a valid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The trust settings do not fit the running handlers.
    #[error("runtime trust settings: {0}")]
    Trust(#[from] trust_policy::ConfigError),
    /// A handler running pods would be removed, or its state moved.
    #[error("runtime.handlers.{handler}: {why}, and pods run on it: {pods}")]
    HandlerInUse {
        /// The handler.
        handler: String,
        /// What the new configuration does to it.
        why: &'static str,
        /// Some of its pods.
        pods: String,
    },
    /// The new metrics address cannot be served on.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::server::MetricsError),
    /// The signature policy does not load.
    #[error("image.signature_policy: {0}")]
    SignaturePolicy(#[from] PolicyReloadError),
    /// The registries' TLS files or the auth file do not load.
    #[error(transparent)]
    Registries(#[from] crate::registries::RegistriesError),
    /// Reading the configuration on a blocking thread failed.
    #[error("reading the configuration: background task failed")]
    Task,
    /// No running daemon could be found to signal.
    #[error("pid file {path}: {reason}")]
    NotRunning {
        /// The pid file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Reloadable keys whose value changed, now in force.
    pub applied: Vec<String>,
    /// Changed keys that keep their running value until a restart.
    pub needs_restart: Vec<String>,
}

/// Holds what a reload swaps: the configuration in force, the daemon's
/// policy, the signature check.
pub struct Reloader {
    sources: ConfigSources,
    /// The configuration as started; keys that need a restart are compared
    /// with it, so they are reported until the restart.
    started: Config,
    /// The reloadable keys' values in force.
    current: Config,
    daemon: Arc<Daemon>,
    signatures: Signatures,
    metrics: MetricsEndpoint,
    log_level: LogLevel,
}

impl Reloader {
    /// A reloader for a daemon started from `config`, read from `sources`,
    /// owning what it swaps besides the daemon's state: the signature check,
    /// the metrics endpoint and the log filter.
    pub fn new(
        sources: ConfigSources,
        config: Config,
        daemon: Arc<Daemon>,
        (signatures, metrics, log_level): (Signatures, MetricsEndpoint, LogLevel),
    ) -> Self {
        Reloader {
            sources,
            started: config.clone(),
            current: config,
            daemon,
            signatures,
            metrics,
            log_level,
        }
    }

    /// Reads the files again and puts the reloadable part in force; on any
    /// error nothing changes.
    pub async fn reload(&mut self) -> Result<Reloaded, ReloadError> {
        let sources = self.sources.clone();
        let new = tokio::task::spawn_blocking(move || Config::load(&sources))
            .await
            .map_err(|_| ReloadError::Task)??;
        let policy = TrustPolicy::new(
            new.runtime.trust_config(),
            new.runtime.handlers.keys().cloned(),
        )?;
        let changed = changed_keys(&self.current, &new);
        let handlers = if changed.iter().any(|k| k.starts_with("runtime.handlers.")) {
            self.check_handlers_in_use(&new)?;
            Some(self.handler_set(&new).await)
        } else {
            None
        };
        let (applied, _): (Vec<String>, Vec<String>) =
            changed.into_iter().partition(|k| reloadable(k));
        let needs_restart: Vec<String> = changed_keys(&self.started, &new)
            .into_iter()
            .filter(|k| !reloadable(k))
            .collect();
        let registries = crate::registries::load_blocking(&new.image).await?;
        // Bound before anything is swapped: a taken port changes nothing.
        let metrics = self.metrics.prepare(new.metrics.socket_addr()).await?;
        // The only step that can still fail comes first.
        self.signatures.reconfigure(&new.image, registries).await?;
        if let Some(metrics) = metrics {
            self.metrics.switch(metrics, &self.daemon);
        }
        if new.log_level != self.current.log_level {
            // Checked when the configuration loaded: it parses.
            if let Err(error) = self.log_level.set(&new.log_level) {
                tracing::warn!(%error, "log level unchanged");
            }
        }
        if let Some(handlers) = handlers {
            self.daemon.set_handlers(handlers);
        }
        self.daemon.set_policy(policy);
        self.current = new;
        Ok(Reloaded {
            applied,
            needs_restart,
        })
    }
}

impl Reloader {
    /// Refuses a configuration that removes a handler pods run on, or moves
    /// its runtime state (`runtime_root`): the runtime would no longer find
    /// them. Adding handlers and changing anything else is fine: the next
    /// runtime command of every pod uses the new settings.
    fn check_handlers_in_use(&self, new: &Config) -> Result<(), ReloadError> {
        let running = self
            .daemon
            .sandboxes
            .list(&sandbox_core::SandboxFilter::default());
        for (name, old) in &self.current.runtime.handlers {
            let why = match new.runtime.handlers.get(name) {
                None => "removed",
                Some(h) if h.runtime_root != old.runtime_root => "runtime_root changed",
                Some(_) => continue,
            };
            let pods: Vec<&str> = running
                .iter()
                .filter(|s| &s.runtime_handler == name)
                .map(|s| s.id.as_str())
                .take(3)
                .collect();
            if !pods.is_empty() {
                return Err(ReloadError::HandlerInUse {
                    handler: name.clone(),
                    why,
                    pods: pods.join(", "),
                });
            }
        }
        Ok(())
    }

    /// The handlers of `new`, probed like at start; the cgroup driver (a
    /// restart-only key) stays the running one.
    async fn handler_set(&self, new: &Config) -> crate::handlers::HandlerSet {
        let mut config = new.clone();
        config.runtime.cgroup_driver = self.started.runtime.cgroup_driver;
        let daemon = &self.daemon;
        crate::opener::handler_set(
            &config,
            &daemon.layout,
            &daemon.monitor_binary,
            &daemon.pod_calls,
        )
        .await
    }
}

fn reloadable(key: &str) -> bool {
    RELOADABLE.iter().any(|r| {
        key == *r || key.starts_with(&format!("{r}.")) || key.starts_with(&format!("{r}["))
    })
}

/// The leaf keys whose values differ between `old` and `new`, dotted.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (old, new) = (leaves(old), leaves(new));
    let mut keys: Vec<String> = old
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(new.keys().filter(|k| !old.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn leaves(config: &Config) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    if let Ok(value) = toml::Value::try_from(config) {
        flatten("", &value, &mut out);
    }
    out
}

fn flatten(path: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        other => {
            out.insert(path.to_owned(), other.clone());
        }
    }
}

/// Reloads on every SIGHUP, logging and counting how it went; runs until
/// the signal stream ends.
pub async fn on_hangup(mut reloader: Reloader, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        let result = reloader.reload().await;
        reloader.daemon.metrics.count_reload(result.is_ok());
        match result {
            Ok(reloaded) => tracing::info!(
                applied = ?reloaded.applied,
                needs_restart = ?reloaded.needs_restart,
                "SIGHUP: configuration reloaded"
            ),
            Err(error) => tracing::error!(
                %error,
                "SIGHUP: configuration not reloaded; the previous one stays in force"
            ),
        }
    }
}

/// Where the running daemon of `config` keeps its pid.
pub fn pid_file(config: &Config) -> PathBuf {
    config.state.join(PID_FILE)
}

/// Writes this process's pid to `path` whole (temporary file, rename): a
/// reader never sees half a number.
pub fn write_pid_file(path: &std::path::Path) -> std::io::Result<()> {
    let temporary = path.with_extension("pid.tmp");
    std::fs::write(&temporary, format!("{}\n", std::process::id()))?;
    std::fs::rename(&temporary, path)
}

/// Sends SIGHUP to the daemon of `config`, found through its pid file and
/// checked to be a `cri-server` (pids are reused); returns its pid.
pub fn signal_running(config: &Config) -> Result<i32, ReloadError> {
    let path = pid_file(config);
    let not_running = |reason: String| ReloadError::NotRunning {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| not_running(format!("{e} (is the daemon running?)")))?;
    let pid: i32 = text
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| not_running(format!("{:?} is not a pid", text.trim())))?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "cri-server" {
        return Err(not_running(format!(
            "pid {pid} is not a running cri-server"
        )));
    }
    // SAFETY: plain syscall on a pid just checked to be a cri-server.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(not_running(std::io::Error::last_os_error().to_string()));
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_split_into_reloadable_and_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.runtime.trusted_images = trust_policy::TrustedImages::Verified;
        new.image.registries.push(crate::config::RegistryConfig {
            prefix: "registry.k8s.io".into(),
            mirrors: vec!["127.0.0.1:5000".into()],
            insecure: true,
            mirrors_only: false,
            ..Default::default()
        });
        new.socket = "/run/other.sock".into();
        new.tracing.endpoint = "http://127.0.0.1:4317".into();
        new.runtime
            .handlers
            .get_mut("runsc")
            .unwrap()
            .args
            .push("--debug".into());
        let changed = changed_keys(&old, &new);
        let (reload, restart): (Vec<_>, Vec<_>) = changed.iter().partition(|k| reloadable(k));
        assert_eq!(
            reload,
            [
                "image.registries",
                "runtime.handlers.runsc.args",
                "runtime.trusted_images"
            ]
        );
        // The exporter starts with the daemon: [tracing] needs a restart.
        assert_eq!(restart, ["socket", "tracing.endpoint"]);
    }

    #[test]
    fn a_pid_file_of_another_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            state: dir.path().to_path_buf(),
            ..Config::default()
        };
        let err = signal_running(&config).unwrap_err().to_string();
        assert!(err.contains("is the daemon running"), "{err}");
        // Our own pid: alive, but a test binary, not a cri-server.
        std::fs::write(pid_file(&config), std::process::id().to_string()).unwrap();
        let err = signal_running(&config).unwrap_err().to_string();
        assert!(err.contains("is not a running cri-server"), "{err}");
        std::fs::write(pid_file(&config), "garbage").unwrap();
        let err = signal_running(&config).unwrap_err().to_string();
        assert!(err.contains("not a pid"), "{err}");
    }
}
