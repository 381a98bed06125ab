//! StopContainer: the stop signal, then SIGKILL when the timeout passes.
//! Idempotent: stopping a stopped or removed container succeeds.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use oci_shim::runtime::OciRuntime;
use sandbox_core::ContainerState;
use std::sync::Arc;
use std::time::Duration;

/// How long a SIGKILLed container may take to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Stops container `id_or_prefix`, giving it `timeout_seconds` after the
/// stop signal.
pub async fn stop(daemon: &Arc<Daemon>, id_or_prefix: &str, timeout_seconds: i64) -> Result<()> {
    let id = match daemon.containers.resolve(id_or_prefix) {
        Ok(id) => id,
        Err(sandbox_core::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let _guard = daemon.locks.lock(&id).await;
    stop_locked(daemon, &id, timeout_seconds).await
}

/// Stops container `id` (a full id) while its lock (or its pod's) is held.
pub async fn stop_locked(daemon: &Arc<Daemon>, id: &str, timeout_seconds: i64) -> Result<()> {
    let Ok(container) = daemon.containers.get(id) else {
        return Ok(());
    };
    if container.state != ContainerState::Running && container.state != ContainerState::Created {
        return Ok(());
    }
    let runtime = daemon.runtime(&container.runtime_handler)?;
    let monitor_dir = super::monitor_dir(daemon, id);
    let mut exit = None;
    if container.state == ContainerState::Running && timeout_seconds > 0 {
        let signal = signal_number(&container.stop_signal).unwrap_or(libc::SIGTERM);
        if let Err(e) = runtime.kill(id, signal, false).await {
            tracing::debug!(container = %id, error = %e, "stop signal");
        }
        exit = super::wait_exit(
            id,
            &monitor_dir,
            Duration::from_secs(timeout_seconds as u64),
        )
        .await;
    }
    if exit.is_none() {
        if let Err(e) = runtime.kill(id, libc::SIGKILL, true).await {
            tracing::debug!(container = %id, error = %e, "SIGKILL");
        }
        exit = super::wait_exit(id, &monitor_dir, KILL_GRACE).await;
    }
    match exit {
        Some(exit) => {
            super::record_exit(daemon, id, &exit).await;
            Ok(())
        }
        None => Err(Error::internal(
            format!("container {id}"),
            "still running after SIGKILL",
        )),
    }
}

/// The number of a signal named like `SIGQUIT`, `QUIT` or `3`.
pub fn signal_number(name: &str) -> Option<i32> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return Some(n);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(signal_number("term"), Some(libc::SIGTERM));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGNOPE"), None);
    }
}
