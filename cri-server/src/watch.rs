//! Following exits: a task per running container (and per ready pod's infra
//! container) that waits on its monitor and records how it ended.

use crate::daemon::Daemon;
use crate::layout::Layout;
use oci_shim::monitor::protocol::ExitRecord;
use sandbox_core::{ContainerState, SandboxState};
use std::sync::Arc;

/// Watches pod `id`'s infra container: when it dies, the pod is no longer
/// ready. Its exit is published ([`crate::exits`], under the pod's id) for
/// the pod's stop, which holds the pod's lock while it waits.
pub fn watch_infra(daemon: &Arc<Daemon>, id: &str) {
    let daemon = Arc::clone(daemon);
    let id = id.to_string();
    // Registered before the task runs: a stop right after the start finds it.
    let publisher = daemon.exits.watch(&id);
    tokio::spawn(async move {
        let dir = Layout::monitor(&daemon.layout.sandbox_dir(&id));
        let exit = daemon.monitors.wait(&id, &dir).await.ok();
        publisher.publish(exit);
        infra_exited(&daemon, &id, exit).await;
    });
}

/// Marks pod `id` not ready; `exit` is how its infra container ended, when
/// its monitor could tell.
async fn infra_exited(daemon: &Daemon, id: &str, exit: Option<ExitRecord>) {
    let at = exit
        .as_ref()
        .map(|e| e.finished_at_unix_nanos as i64)
        .unwrap_or_else(sandbox_core::timestamp::now);
    let _guard = daemon.locks.lock(id).await;
    let changed = daemon.sandboxes.update(id, |s| {
        let was_ready = s.state == SandboxState::Ready;
        s.mark_stopped(at);
        if let (Some(infra), Some(exit)) = (s.infra_container.as_mut(), exit.as_ref()) {
            infra.exit_code = Some(exit.exit_code);
            infra.finished_at = Some(at);
            infra.state = ContainerState::Exited;
        }
        was_ready.then(|| s.clone())
    });
    if let Ok(Some(sandbox)) = changed {
        tracing::info!(pod = %id, "infra container exited; pod not ready");
        let _ = daemon.save_sandbox(&sandbox);
    }
}

/// Watches container `id` and records its exit when it comes.
pub fn watch_container(daemon: &Arc<Daemon>, id: &str) {
    let daemon = Arc::clone(daemon);
    let id = id.to_string();
    // Registered before the task runs: a stop right after a start finds it.
    let publisher = daemon.exits.watch(&id);
    tokio::spawn(async move {
        let dir = Layout::monitor(&daemon.layout.container_dir(&id));
        match daemon.monitors.wait(&id, &dir).await {
            Ok(exit) => {
                // Splits a stop's wait for the exit: the monitor's reap to
                // here (its wake-up, its report, ours), here to the stop.
                let reaped = std::time::UNIX_EPOCH
                    + std::time::Duration::from_nanos(exit.finished_at_unix_nanos);
                let since_reap = reaped.elapsed().unwrap_or_default();
                tracing::debug!(container = %id, ?since_reap, "exit reached the watcher");
                publisher.publish(Some(exit));
                crate::container::record_watched_exit(&daemon, &id, &exit).await
            }
            Err(e) => {
                publisher.publish(None);
                tracing::warn!(container = %id, error = %e, "lost the monitor");
                let _ = daemon
                    .containers
                    .update(&id, |c| c.mark_unknown(e.to_string()));
            }
        }
    });
}

/// Removes, every few seconds, the pods and containers whose
/// RunPodSandbox or CreateContainer was cancelled and that no retry claimed
/// within the grace period (see [`crate::creations`]): nothing a cancelled
/// call made lingers. Ends with the daemon.
pub fn sweep_unclaimed(daemon: &Arc<Daemon>) -> tokio::task::JoinHandle<()> {
    let grace =
        std::time::Duration::from_secs(daemon.config.runtime.unclaimed_creation_grace_seconds);
    let period = (grace / 2).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(10),
    );
    let daemon = Arc::downgrade(daemon);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            let Some(daemon) = daemon.upgrade() else {
                return;
            };
            let now = std::time::Instant::now();
            for (name, id) in daemon.container_creations.expired(now) {
                tracing::warn!(%name, container = %id, "created for a cancelled call nobody retried; removing");
                if let Err(e) = crate::container::remove::remove(&daemon, &id).await {
                    tracing::warn!(container = %id, error = %e, "removing an unclaimed container");
                }
            }
            for (name, id) in daemon.pod_creations.expired(now) {
                tracing::warn!(%name, pod = %id, "created for a cancelled call nobody retried; removing");
                if let Err(e) = crate::pod::remove::remove(&daemon, &id).await {
                    tracing::warn!(pod = %id, error = %e, "removing an unclaimed pod");
                }
            }
        }
    })
}
