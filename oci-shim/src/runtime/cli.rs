//! [`CliRuntime`]: running a runtime binary and turning failures into errors
//! that say why.

use super::{
    ContainerState, ExecSession, ExecStreamOptions, ExecSyncResult, OciRuntime,
    RuntimeHandlerConfig,
};
use crate::error::{Error, Result};
use async_trait::async_trait;
use oci_spec::runtime::LinuxResources;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

/// An [`OciRuntime`] that runs a runc-compatible command line.
///
/// # Examples
///
/// ```no_run
/// use oci_shim::runtime::{CliRuntime, OciRuntime, RuntimeHandlerConfig};
///
/// # async fn demo() -> Result<(), oci_shim::Error> {
/// let runc = CliRuntime::new(RuntimeHandlerConfig::runc("/run/oci-shim/runc"));
/// for c in runc.list().await? {
///     println!("{} {:?}", c.id, c.status);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CliRuntime {
    pub(super) config: RuntimeHandlerConfig,
    /// The `oci-monitor` binary, whose `reap` mode every exec runs under.
    pub(super) monitor_binary: PathBuf,
    /// Where deleted runc containers wait for their cgroups' removal, if
    /// anywhere (else deletes remove them at once).
    pub(super) retirement: Option<super::Retirement>,
}

impl CliRuntime {
    /// A driver for `config`, running execs under the `oci-monitor` beside
    /// the current executable (see [`CliRuntime::with_monitor_binary`]).
    pub fn new(config: RuntimeHandlerConfig) -> Self {
        CliRuntime {
            config,
            monitor_binary: crate::monitor::monitor_beside_current_exe(),
            retirement: None,
        }
    }

    /// Runs execs under the `oci-monitor` at `path`: its `reap` mode is the
    /// child subreaper that reaps what an exec leaves when it is cut short.
    ///
    /// # Examples
    ///
    /// ```
    /// use oci_shim::runtime::{CliRuntime, RuntimeHandlerConfig};
    ///
    /// let runc = CliRuntime::new(RuntimeHandlerConfig::runc("/run/oci-shim/runc"))
    ///     .with_monitor_binary("/usr/local/bin/oci-monitor");
    /// assert_eq!(runc.monitor_binary().to_str(), Some("/usr/local/bin/oci-monitor"));
    /// ```
    pub fn with_monitor_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.monitor_binary = path.into();
        self
    }

    /// Removes a deleted runc container's cgroups after its delete
    /// returns, through `retirement` (see [`super::retired_runc`]).
    pub fn with_retirement(mut self, retirement: super::Retirement) -> Self {
        self.retirement = Some(retirement);
        self
    }

    /// The `oci-monitor` binary execs run under.
    pub fn monitor_binary(&self) -> &Path {
        &self.monitor_binary
    }

    /// The handler configuration.
    pub fn config(&self) -> &RuntimeHandlerConfig {
        &self.config
    }

    /// Runs `<runtime> <global args> <args>` about container `id` and returns
    /// its output, or an error with its stderr and log when it fails.
    pub(super) async fn run(&self, id: &str, args: &[&str]) -> Result<Output> {
        let log = blocking(|| {
            tempfile::Builder::new()
                .prefix("oci-shim-runtime-log")
                .tempfile()
                .map_err(|e| Error::io("runtime log", std::env::temp_dir(), "create", e))
        })
        .await?;
        let running = tokio::process::Command::new(&self.config.path)
            .args(self.config.global_args(log.path()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // On timeout the future is dropped, and with it the runtime.
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(self.config.timeout, running)
            .await
            .map_err(|_| Error::RuntimeTimeout {
                id: id.to_owned(),
                runtime: self.config.name.clone(),
                command: self.describe(args),
                after: self.config.timeout,
            })?
            .map_err(|source| Error::RuntimeSpawn {
                id: id.to_owned(),
                runtime: self.config.name.clone(),
                command: self.describe(args),
                source,
            })?;
        if output.status.success() {
            return Ok(output);
        }
        let log_text = read_runtime_log_async(log.path()).await;
        Err(self.failure(
            id,
            args,
            &output.status.to_string(),
            &output.stderr,
            &log_text,
        ))
    }

    pub(super) fn failure(
        &self,
        id: &str,
        args: &[&str],
        status: &str,
        stderr: &[u8],
        log: &str,
    ) -> Error {
        let stderr = String::from_utf8_lossy(stderr).trim().to_owned();
        let log = log.to_owned();
        let detail = match (stderr.is_empty(), log.is_empty()) {
            (true, true) => "no output".to_owned(),
            (false, true) => stderr,
            (true, false) => log,
            (false, false) if stderr.contains(&log) => stderr,
            (false, false) => format!("{stderr}; log: {log}"),
        };
        Error::RuntimeFailed {
            id: id.to_owned(),
            runtime: self.config.name.clone(),
            command: self.describe(args),
            status: status.to_owned(),
            detail,
        }
    }

    pub(super) fn describe(&self, args: &[&str]) -> String {
        let mut s = self.config.path.display().to_string();
        for a in self
            .config
            .args
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
        {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// Runs blocking work (file system, /proc) on tokio's blocking threads, never
/// on a worker.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        // Only a panic in `f` gets here (blocking tasks are never cancelled).
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// [`read_runtime_log`] off the async workers.
pub(crate) async fn read_runtime_log_async(path: &Path) -> String {
    let path = path.to_owned();
    blocking(move || read_runtime_log(&path)).await
}

/// The messages of a runtime's log file: `msg` of each JSON line at warning
/// level or above (runc, runsc with `--log-format json`), or the raw text.
/// Capped to the last 4 KiB, where the fatal error is.
pub fn read_runtime_log(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let mut msgs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                let level = v["level"].as_str().unwrap_or("error");
                if matches!(level, "warning" | "error" | "fatal" | "panic") {
                    if let Some(m) = v["msg"].as_str() {
                        msgs.push(m.to_owned());
                    }
                }
            }
            Err(_) => msgs.push(line.to_owned()),
        }
    }
    let joined = msgs.join("; ");
    match joined.char_indices().rev().nth(4095) {
        Some((i, _)) => format!("...{}", &joined[i..]),
        None => joined,
    }
}

#[async_trait]
impl OciRuntime for CliRuntime {
    fn name(&self) -> &str {
        &self.config.name
    }
    async fn create(&self, id: &str, bundle: &Path) -> Result<()> {
        self.create_container(id, bundle).await
    }
    async fn start(&self, id: &str) -> Result<()> {
        self.start_container(id).await
    }
    async fn state(&self, id: &str) -> Result<ContainerState> {
        self.container_state(id).await
    }
    async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        self.kill_container(id, signal, all).await
    }
    async fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.delete_container(id, force).await
    }
    async fn exec_sync(
        &self,
        id: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult> {
        self.exec_in_container(id, args, timeout).await
    }
    async fn exec_stream(
        &self,
        id: &str,
        args: &[String],
        options: ExecStreamOptions,
    ) -> Result<ExecSession> {
        self.exec_session(id, args, options).await
    }
    async fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        self.update_container(id, resources).await
    }
    async fn pause(&self, id: &str) -> Result<()> {
        self.pause_container(id).await
    }
    async fn resume(&self, id: &str) -> Result<()> {
        self.resume_container(id).await
    }
    async fn list(&self) -> Result<Vec<ContainerState>> {
        self.list_containers().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_log_keeps_errors_only() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "{\"level\":\"info\",\"msg\":\"noise\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": not found\"}\nplain text\n",
        )
        .unwrap();
        assert_eq!(
            read_runtime_log(f.path()),
            "exec: \"nope\": not found; plain text"
        );
        assert_eq!(read_runtime_log(Path::new("/nonexistent")), "");
    }

    #[tokio::test]
    async fn missing_binary_names_runtime_and_command() {
        let mut cfg = RuntimeHandlerConfig::runc("/tmp/none");
        cfg.path = "/nonexistent/runc".into();
        let err = CliRuntime::new(cfg).start("c9").await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("c9") && text.contains("/nonexistent/runc start c9"),
            "{text}"
        );
    }
}
