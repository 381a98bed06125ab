//! Starting a monitor (which creates the container) and finding it again.

use super::client::MonitorClient;
use super::protocol::{self, ExitRecord};
use super::LogSizeMax;
use crate::error::{Error, Result};
use crate::runtime::RuntimeHandlerConfig;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything the monitor needs to create and watch one container.
///
/// # Examples
///
/// ```
/// use oci_shim::monitor::{LogSizeMax, MonitorConfig};
/// use oci_shim::runtime::RuntimeHandlerConfig;
///
/// let mut cfg = MonitorConfig::new("c1", "/b", "/run/c1", "/var/log/c1.log",
///     RuntimeHandlerConfig::runc("/run/oci/runc"));
/// cfg.stdin = true;
/// assert!(cfg.monitor_args().contains(&"--stdin".to_string()));
/// assert!(!cfg.monitor_args().contains(&"--log-size-max".to_string()));
/// cfg.log_size_max = LogSizeMax::from_config(65536).unwrap();
/// assert!(cfg.monitor_args().windows(2).any(|w| w == ["--log-size-max", "65536"]));
/// ```
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Container id, as given to the runtime.
    pub id: String,
    /// Bundle directory holding `config.json`.
    pub bundle: PathBuf,
    /// Directory for the socket, pid file, exit record and runtime log.
    /// Created if missing, removed if creating the container fails.
    pub state_dir: PathBuf,
    /// Container log file (CRI format).
    pub log_path: PathBuf,
    /// The runtime handler to create the container with.
    pub runtime: RuntimeHandlerConfig,
    /// Give the container a terminal (through `--console-socket`).
    pub terminal: bool,
    /// Keep the container's stdin open for attach.
    pub stdin: bool,
    /// Close stdin when the first attach ends.
    pub stdin_once: bool,
    /// The most bytes the log file may hold (`[runtime] log_size_max`);
    /// `None` (the default) is unlimited. Before an entry that would
    /// overflow it, the monitor starts a new, empty file renamed over the
    /// path, as conmon does; a file reopened after rotation is capped anew.
    pub log_size_max: Option<LogSizeMax>,
    /// Path of the `oci-monitor` binary.
    pub monitor_binary: PathBuf,
    /// What of the host's mount table the runtime's `create` sees; the
    /// default is all of it.
    pub runtime_view: super::RuntimeView,
}

impl MonitorConfig {
    /// A config with no terminal or stdin, using the `oci-monitor` next to the
    /// current executable (override [`MonitorConfig::monitor_binary`] as needed).
    pub fn new(
        id: impl Into<String>,
        bundle: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        log_path: impl Into<PathBuf>,
        runtime: RuntimeHandlerConfig,
    ) -> Self {
        let monitor_binary = monitor_beside_current_exe();
        MonitorConfig {
            id: id.into(),
            bundle: bundle.into(),
            state_dir: state_dir.into(),
            log_path: log_path.into(),
            runtime,
            terminal: false,
            stdin: false,
            stdin_once: false,
            log_size_max: None,
            monitor_binary,
            runtime_view: super::RuntimeView::default(),
        }
    }

    /// The monitor's command line (without the binary).
    pub fn monitor_args(&self) -> Vec<String> {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let mut args = vec![
            "--id".into(),
            self.id.clone(),
            "--bundle".into(),
            s(&self.bundle),
            "--state-dir".into(),
            s(&self.state_dir),
            "--log-path".into(),
            s(&self.log_path),
            "--runtime".into(),
            s(&self.runtime.path),
            "--runtime-timeout".into(),
            self.runtime.timeout.as_secs().max(1).to_string(),
        ];
        if let Some(max) = self.log_size_max {
            args.push("--log-size-max".into());
            args.push(max.to_string());
        }
        let log = self.state_dir.join(protocol::RUNTIME_LOG_NAME);
        for a in self.runtime.global_args(&log) {
            args.push("--runtime-arg".into());
            args.push(a);
        }
        for (on, flag) in [
            (self.terminal, "--terminal"),
            (self.stdin, "--stdin"),
            (self.stdin_once, "--stdin-once"),
        ] {
            if on {
                args.push(flag.into());
            }
        }
        args.extend(self.runtime_view.monitor_args());
        args
    }
}

/// The `oci-monitor` in the current executable's directory (or on `PATH`
/// when that cannot be known): where the daemon is installed beside it.
pub(crate) fn monitor_beside_current_exe() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("oci-monitor")))
        .unwrap_or_else(|| PathBuf::from("oci-monitor"))
}

/// A container's monitor, started by [`Monitor::spawn`] or found by [`Monitor::reconnect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    id: String,
    state_dir: PathBuf,
    container_pid: i32,
    monitor_pid: i32,
}

/// What [`Monitor::reconnect`] found in a state directory.
#[derive(Debug)]
pub enum MonitorStatus {
    /// The monitor is alive; the container is running (or not yet started).
    Running(MonitorClient),
    /// The container has exited (its monitor may be gone).
    Exited(ExitRecord),
}

impl Monitor {
    /// Starts the monitor, which creates the container (not yet started).
    ///
    /// On failure the error carries the runtime's explanation, and nothing is
    /// left behind: no runtime state, no state directory. The same as
    /// [`Monitor::prepare`] followed by [`PendingMonitor::create`].
    pub async fn spawn(cfg: &MonitorConfig) -> Result<Monitor> {
        Monitor::prepare(cfg).await?.create().await
    }

    /// Starts the monitor process without creating the container yet, so that
    /// its start-up (exec, detaching, binding its socket) overlaps with
    /// writing the bundle. The monitor waits until [`PendingMonitor::create`]
    /// says the bundle is ready.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cfg: oci_shim::monitor::MonitorConfig) -> Result<(), oci_shim::Error> {
    /// use oci_shim::monitor::Monitor;
    /// let pending = Monitor::prepare(&cfg).await?;
    /// // ... write cfg.bundle/config.json meanwhile ...
    /// let monitor = pending.create().await?;
    /// # Ok(()) }
    /// ```
    pub async fn prepare(cfg: &MonitorConfig) -> Result<PendingMonitor> {
        let created_dir = tokio::fs::metadata(&cfg.state_dir).await.is_err();
        tokio::fs::create_dir_all(&cfg.state_dir)
            .await
            .map_err(|e| Error::io("monitor state dir", &cfg.state_dir, "create", e))?;
        let log = cfg.state_dir.join(protocol::RUNTIME_LOG_NAME);
        let _ = tokio::fs::remove_file(&log).await;
        let child = tokio::process::Command::new(&cfg.monitor_binary)
            .args(cfg.monitor_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                if created_dir {
                    let _ = tokio::fs::remove_dir_all(&cfg.state_dir).await;
                }
                return Err(Error::monitor(
                    &cfg.id,
                    format!("cannot run {}: {e}", cfg.monitor_binary.display()),
                ));
            }
        };
        Ok(PendingMonitor {
            cfg: cfg.clone(),
            child,
            created_dir,
        })
    }

    /// Finds the monitor of container `id` in `state_dir`: connected if it is
    /// alive, else the exit it recorded.
    pub async fn reconnect(id: &str, state_dir: impl AsRef<Path>) -> Result<MonitorStatus> {
        let state_dir = state_dir.as_ref();
        let sock = state_dir.join(protocol::SOCKET_NAME);
        if let Ok(client) = MonitorClient::connect(id, &sock).await {
            return Ok(MonitorStatus::Running(client));
        }
        read_exit_async(id, state_dir)
            .await
            .map(MonitorStatus::Exited)
    }

    /// A handle on the monitor of container `id` from what it left in
    /// `state_dir` (for a daemon that restarted); fails when the container
    /// was never successfully created there.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), oci_shim::Error> {
    /// let m = oci_shim::monitor::Monitor::open("c1", "/run/oci-shim/c1").await?;
    /// let exit = m.wait().await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(id: &str, state_dir: impl AsRef<Path>) -> Result<Monitor> {
        let state_dir = state_dir.as_ref();
        let read_pid = |name: &'static str| {
            let path = state_dir.join(name);
            let id = id.to_owned();
            async move {
                let text = tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| Error::io("monitor pid file", &path, "read", e))?;
                text.trim().parse::<i32>().map_err(|e| {
                    Error::monitor(&id, format!("bad pid file {}: {e}", path.display()))
                })
            }
        };
        Ok(Monitor {
            id: id.to_owned(),
            state_dir: state_dir.to_owned(),
            container_pid: read_pid(protocol::PID_FILE_NAME).await?,
            monitor_pid: read_pid(protocol::MONITOR_PID_FILE_NAME).await?,
        })
    }

    /// The monitor of container `id` in `state_dir`, from what a caller
    /// already knows (a restored record, a test double's answer).
    pub fn new(id: &str, state_dir: &Path, container_pid: i32, monitor_pid: i32) -> Monitor {
        Monitor {
            id: id.to_owned(),
            state_dir: state_dir.to_owned(),
            container_pid,
            monitor_pid,
        }
    }

    /// Container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's init pid on the host (for runsc: the sandbox process).
    pub fn container_pid(&self) -> i32 {
        self.container_pid
    }

    /// The monitor's pid.
    pub fn monitor_pid(&self) -> i32 {
        self.monitor_pid
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Opens a control connection to this monitor.
    pub async fn connect(&self) -> Result<MonitorClient> {
        MonitorClient::connect(&self.id, &self.state_dir.join(protocol::SOCKET_NAME)).await
    }

    /// Starts the created container: the monitor runs the runtime's `start`.
    ///
    /// Prefer this to [`crate::runtime::OciRuntime::start`]: gVisor hands a
    /// container joining a pod sandbox the stdio of the `start` process, which
    /// only the monitor holds.
    pub async fn start(&self) -> Result<()> {
        match self.connect().await?.start().await {
            Err(Error::Monitor { reason, .. }) => {
                let log = crate::runtime::cli::read_runtime_log_async(
                    &self.state_dir.join(protocol::RUNTIME_LOG_NAME),
                )
                .await;
                let reason = if log.is_empty() {
                    reason
                } else {
                    format!("{reason}; runtime log: {log}")
                };
                Err(Error::monitor(&self.id, reason))
            }
            other => other,
        }
    }

    /// Waits for the container to exit and returns how it ended.
    ///
    /// Works however late it is called: a monitor that already exited left
    /// its record in `exit.json`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(monitor: oci_shim::monitor::Monitor) -> Result<(), oci_shim::Error> {
    /// let exit = monitor.wait().await?;
    /// assert!(exit.exit_code >= 0);
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self) -> Result<ExitRecord> {
        match self.connect().await {
            Ok(mut client) => client.wait().await,
            // The monitor exits only after writing exit.json.
            Err(e) => read_exit_async(&self.id, &self.state_dir)
                .await
                .map_err(|_| e),
        }
    }

    /// The exit record, if the container has exited and the monitor wrote it.
    pub fn exit_record(&self) -> Option<ExitRecord> {
        read_exit(&self.id, &self.state_dir).ok()
    }
}

async fn read_exit_async(id: &str, state_dir: &Path) -> Result<ExitRecord> {
    let path = state_dir.join(protocol::EXIT_FILE_NAME);
    let text = tokio::fs::read_to_string(&path).await;
    parse_exit(id, &path, text)
}

fn read_exit(id: &str, state_dir: &Path) -> Result<ExitRecord> {
    let path = state_dir.join(protocol::EXIT_FILE_NAME);
    let text = std::fs::read_to_string(&path);
    parse_exit(id, &path, text)
}

fn parse_exit(id: &str, path: &Path, text: std::io::Result<String>) -> Result<ExitRecord> {
    let text = text.map_err(|e| {
        Error::monitor(
            id,
            format!("no live monitor and no exit record {}: {e}", path.display()),
        )
    })?;
    ExitRecord::from_json(&text)
        .ok_or_else(|| Error::monitor(id, format!("unparsable exit record {}", path.display())))
}

/// A monitor process that waits for its bundle: from [`Monitor::prepare`].
///
/// Dropping it without [`PendingMonitor::create`] closes the monitor's
/// stdin, and the monitor exits without creating anything; use
/// [`PendingMonitor::abandon`] to also wait for that and remove the state
/// directory.
#[derive(Debug)]
pub struct PendingMonitor {
    cfg: MonitorConfig,
    child: tokio::process::Child,
    created_dir: bool,
}

impl PendingMonitor {
    /// Tells the monitor that the bundle is written: it runs the runtime's
    /// `create` and reports. On failure nothing is left behind, as with
    /// [`Monitor::spawn`].
    pub async fn create(mut self) -> Result<Monitor> {
        let result = self.report(true).await;
        if result.is_err() {
            // The runtime may have half-created the container; forget it.
            let runtime = crate::runtime::CliRuntime::new(self.cfg.runtime.clone());
            let _ = crate::runtime::OciRuntime::delete(&runtime, &self.cfg.id, true).await;
            if self.created_dir {
                let _ = tokio::fs::remove_dir_all(&self.cfg.state_dir).await;
            }
        }
        result
    }

    /// Gives up on the container before its bundle was ready: the monitor
    /// exits without running the runtime, and the state directory goes if
    /// [`Monitor::prepare`] made it.
    pub async fn abandon(mut self) {
        // Waits for the monitor's exit, so that it can no longer write into
        // the directory removed next.
        let _ = self.report(false).await;
        if self.created_dir {
            let _ = tokio::fs::remove_dir_all(&self.cfg.state_dir).await;
        }
    }

    /// Sends the go-ahead (or closes the pipe instead), then reads the
    /// monitor's one line.
    async fn report(&mut self, go: bool) -> Result<Monitor> {
        let cfg = &self.cfg;
        let id = &cfg.id;
        if let Some(mut stdin) = self.child.stdin.take() {
            if go {
                // A monitor that failed early exits without reading: its
                // report below says why, so a broken pipe here is no news.
                let _ = stdin.write_all(b"go\n").await;
            }
        }
        // The monitor kills a runtime that outlives its timeout and reports;
        // this backstop covers a monitor that cannot.
        let backstop = cfg.runtime.timeout + std::time::Duration::from_secs(30);
        let stdout = self.child.stdout.take();
        let line = match tokio::time::timeout(backstop, read_report_line(id, stdout)).await {
            Ok(line) => line?,
            Err(_) => {
                let _ = self.child.start_kill();
                return Err(Error::RuntimeTimeout {
                    id: id.clone(),
                    runtime: cfg.runtime.name.clone(),
                    command: format!(
                        "{} create (through oci-monitor)",
                        cfg.runtime.path.display()
                    ),
                    after: backstop,
                });
            }
        };
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr).await;
        }
        // The first process exits right after forking the real monitor.
        let _ = self.child.wait().await;
        parse_report(cfg, &line, &stderr).await
    }
}

/// The monitor's one report line (`ready ...` or `error ...`); after an
/// error, waits for the monitor to let go of the pipe (it exits).
async fn read_report_line(id: &str, stdout: Option<tokio::process::ChildStdout>) -> Result<String> {
    let Some(mut out) = stdout else {
        return Ok(String::new());
    };
    // The detached monitor writes one line and then lets go of the pipe.
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while out
        .read(&mut byte)
        .await
        .map_err(|e| Error::monitor(id, e.to_string()))?
        == 1
    {
        if byte[0] == b'\n' {
            break;
        }
        buf.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&buf).into_owned();
    if !line.starts_with("ready") {
        // A failed monitor holds the pipe until it exits: EOF means it is gone.
        let mut rest = Vec::new();
        let _ = out.read_to_end(&mut rest).await;
    }
    Ok(line)
}

async fn parse_report(cfg: &MonitorConfig, line: &str, stderr: &str) -> Result<Monitor> {
    let id = &cfg.id;
    let mut words = line.split_ascii_whitespace();
    match words.next() {
        Some("ready") => {
            let pid = |w: Option<&str>| w.and_then(|s| s.parse::<i32>().ok());
            match (pid(words.next()), pid(words.next())) {
                (Some(container_pid), Some(monitor_pid)) => Ok(Monitor {
                    id: id.clone(),
                    state_dir: cfg.state_dir.clone(),
                    container_pid,
                    monitor_pid,
                }),
                _ => Err(Error::monitor(id, format!("bad ready line {line:?}"))),
            }
        }
        Some("error") => {
            let reason = line["error".len()..].trim();
            // The monitor says "create failed (<how>): <runtime's stderr>".
            let (status, stderr) = reason
                .strip_prefix("create failed (")
                .and_then(|r| r.split_once("): "))
                .unwrap_or(("monitor error", reason));
            let log = cfg.state_dir.join(protocol::RUNTIME_LOG_NAME);
            let runtime_log = crate::runtime::cli::read_runtime_log_async(&log).await;
            let mut command = cfg.runtime.path.display().to_string();
            for a in &cfg.runtime.args {
                command = format!("{command} {a}");
            }
            command = format!("{command} create --bundle {} {id}", cfg.bundle.display());
            Err(Error::RuntimeFailed {
                id: id.clone(),
                runtime: cfg.runtime.name.clone(),
                command,
                status: status.to_owned(),
                detail: join_details(stderr, &runtime_log),
            })
        }
        _ => Err(Error::monitor(
            id,
            format!("monitor exited without reporting: {}", stderr.trim()),
        )),
    }
}

fn join_details(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_owned(),
        (true, false) => b.to_owned(),
        (false, false) if a.contains(b) => a.to_owned(),
        (false, false) => format!("{a}; runtime log: {b}"),
    }
}
