//! [`MonitorLauncher`]: what a daemon does with its containers' monitors,
//! as a trait, so that the daemon's verbs can be tested with a double
//! instead of real monitor processes and runtimes.
//!
//! [`ProcessMonitors`] is the real thing: `oci-monitor` processes driving a
//! runtime. With the `mock` feature, `MockMonitorLauncher` and
//! `MockPendingLaunch` (mockall) stand in for it in other crates' tests.

use super::protocol::ExitRecord;
use super::{Monitor, MonitorConfig, MonitorStatus, PendingMonitor};
use crate::error::{Error, Result};
use async_trait::async_trait;
use std::future::Future;
use std::path::Path;

/// Starting containers under a monitor and learning how they ended.
///
/// A container's monitor is named by the container id and the monitor's
/// state directory, which is all a daemon keeps across restarts.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait MonitorLauncher: Send + Sync {
    /// Starts the monitor of `cfg` without creating the container yet (see
    /// [`Monitor::prepare`]): the caller writes the bundle meanwhile.
    async fn prepare(&self, cfg: &MonitorConfig) -> Result<Box<dyn PendingLaunch>>;
    /// Starts the created container `id` (the monitor runs the runtime's
    /// `start`, see [`Monitor::start`]).
    async fn start(&self, id: &str, state_dir: &Path) -> Result<()>;
    /// What became of container `id`: `None` while its monitor runs, its
    /// exit record once it has exited. An error means the monitor is gone
    /// without a record (the machine rebooted, the directory was removed).
    async fn exited(&self, id: &str, state_dir: &Path) -> Result<Option<ExitRecord>>;
    /// Waits for container `id` to exit, however late it is called.
    async fn wait(&self, id: &str, state_dir: &Path) -> Result<ExitRecord>;
    /// Has container `id`'s monitor deliver `signal` (see
    /// [`MonitorClient::kill`](super::MonitorClient::kill)): `false` when
    /// the runtime must; an error for a monitor that is gone.
    async fn kill(&self, id: &str, state_dir: &Path, signal: i32, all: bool) -> Result<bool>;
    /// Ends container `id`'s monitor if it still runs, before its
    /// directory is removed (see [`super::retire`]); `true` if one was.
    async fn retire(&self, id: &str, state_dir: &Path) -> bool;
}

/// A monitor waiting for its bundle, from [`MonitorLauncher::prepare`].
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PendingLaunch: Send {
    /// The bundle is written: the monitor creates the container. On failure
    /// nothing is left behind (see [`PendingMonitor::create`]).
    async fn create(self: Box<Self>) -> Result<Monitor>;
    /// The bundle will not come: the monitor exits and its state directory
    /// goes (see [`PendingMonitor::abandon`]).
    async fn abandon(self: Box<Self>);
}

/// Starts the monitor of `cfg` while `write_bundle` writes the bundle, then
/// has it create the container; returns the monitor and what `write_bundle`
/// returned. If writing fails the monitor is abandoned and that error
/// returned; if the monitor fails its error is converted into `E`. Either
/// way, whatever `write_bundle` made stays for the caller to undo.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(cfg: oci_shim::monitor::MonitorConfig, oci: oci_spec::runtime::Spec)
/// # -> Result<(), oci_shim::Error> {
/// use oci_shim::monitor::{launch_alongside, MonitorLauncher, ProcessMonitors};
/// let monitors = ProcessMonitors;
/// let dir = cfg.bundle.clone();
/// let (monitor, _bundle) = launch_alongside(&monitors, &cfg, async move {
///     oci_shim::bundle::Bundle::write(dir, &oci)
/// })
/// .await?;
/// monitors.start(monitor.id(), monitor.state_dir()).await?;
/// # Ok(()) }
/// ```
pub async fn launch_alongside<T, E, F>(
    launcher: &dyn MonitorLauncher,
    cfg: &MonitorConfig,
    write_bundle: F,
) -> std::result::Result<(Monitor, T), E>
where
    F: Future<Output = std::result::Result<T, E>>,
    E: From<Error>,
{
    let (pending, written) = tokio::join!(launcher.prepare(cfg), write_bundle);
    match (pending, written) {
        (Ok(pending), Ok(value)) => Ok((pending.create().await?, value)),
        (Ok(pending), Err(e)) => {
            pending.abandon().await;
            Err(e)
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// The real [`MonitorLauncher`]: `oci-monitor` processes, reached through
/// their sockets and exit records.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessMonitors;

#[async_trait]
impl PendingLaunch for PendingMonitor {
    async fn create(self: Box<Self>) -> Result<Monitor> {
        PendingMonitor::create(*self).await
    }
    async fn abandon(self: Box<Self>) {
        PendingMonitor::abandon(*self).await
    }
}

#[async_trait]
impl MonitorLauncher for ProcessMonitors {
    async fn prepare(&self, cfg: &MonitorConfig) -> Result<Box<dyn PendingLaunch>> {
        Ok(Box::new(Monitor::prepare(cfg).await?))
    }

    async fn start(&self, id: &str, state_dir: &Path) -> Result<()> {
        Monitor::new(id, state_dir, 0, 0).start().await
    }

    async fn exited(&self, id: &str, state_dir: &Path) -> Result<Option<ExitRecord>> {
        match Monitor::reconnect(id, state_dir).await? {
            MonitorStatus::Running(_) => Ok(None),
            MonitorStatus::Exited(exit) => Ok(Some(exit)),
        }
    }

    async fn kill(&self, id: &str, state_dir: &Path, signal: i32, all: bool) -> Result<bool> {
        if super::direct_kill::kill_init(state_dir, signal, all) {
            return Ok(true);
        }
        match Monitor::reconnect(id, state_dir).await? {
            MonitorStatus::Exited(_) => Ok(true),
            MonitorStatus::Running(mut client) => client.kill(signal, all).await,
        }
    }

    async fn retire(&self, id: &str, state_dir: &Path) -> bool {
        super::retire::retire(id, state_dir).await
    }

    async fn wait(&self, id: &str, state_dir: &Path) -> Result<ExitRecord> {
        match Monitor::reconnect(id, state_dir).await? {
            MonitorStatus::Exited(exit) => Ok(exit),
            // The connection may end before the record is read (the monitor
            // exits right after writing it): then the record tells.
            MonitorStatus::Running(mut client) => match client.wait().await {
                Ok(exit) => Ok(exit),
                Err(e) => match Monitor::reconnect(id, state_dir).await {
                    Ok(MonitorStatus::Exited(exit)) => Ok(exit),
                    _ => Err(e),
                },
            },
        }
    }
}
