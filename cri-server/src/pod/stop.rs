//! StopPodSandbox: stop every container, kill the infra container, record
//! the pod stopped, then release its network off the request path
//! ([`super::release`]). Idempotent: stopping a stopped or removed pod
//! succeeds.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::layout::Layout;
use sandbox_core::ContainerFilter;
use std::sync::Arc;
use std::time::Duration;

/// How long a killed infra container may take to be reaped.
const INFRA_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Stops pod `id_or_prefix`.
pub async fn stop(daemon: &Arc<Daemon>, id_or_prefix: &str) -> Result<()> {
    let id = match daemon.sandboxes.resolve(id_or_prefix) {
        Ok(id) => id,
        Err(sandbox_core::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let _guard = daemon.locks.lock(&id).await;
    stop_locked(daemon, &id).await?;
    if daemon
        .sandboxes
        .get(&id)
        .is_ok_and(|s| s.network_release_pending)
    {
        super::release::release_later(daemon, &id);
    }
    Ok(())
}

/// Stops pod `id` (a full id) while its lock is held, leaving its network
/// to release (`network_release_pending`).
pub async fn stop_locked(daemon: &Arc<Daemon>, id: &str) -> Result<()> {
    let Ok(sandbox) = daemon.sandboxes.get(id) else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let filter = ContainerFilter {
        sandbox_id_prefix: Some(id.to_string()),
        ..ContainerFilter::default()
    };
    // All at once, as CRI-O does: each stop is mostly waiting (a signal,
    // the exit), and a pod's stop should take its slowest container's time
    // rather than the sum. The containers' runtime state is left to
    // RemovePodSandbox (as CRI-O does), which deletes it beside the CNI DEL
    // it waits for anyway.
    let ids: Vec<String> = daemon
        .containers
        .list(&filter)
        .into_iter()
        .filter(|c| c.sandbox_id == id)
        .map(|c| c.id.clone())
        .collect();
    crate::container::stop::kill_all_keeping_state(daemon, &ids).await?;
    let containers_stopped = started.elapsed();

    if sandbox.infra_container.is_some() {
        let runtime = daemon.runtime(&sandbox.runtime_handler)?;
        let dir = Layout::monitor(&daemon.layout.sandbox_dir(id));
        if !crate::container::has_exited(daemon, id, &dir).await {
            // pause holds nothing worth a grace period.
            if let Err(e) = runtime.kill(id, libc::SIGKILL, false).await {
                tracing::debug!(pod = %id, error = %e, "killing the infra container");
            }
            if crate::container::wait_exit(daemon, id, &dir, INFRA_EXIT_TIMEOUT)
                .await
                .is_none()
            {
                return Err(Error::internal(
                    format!("pod {id}"),
                    "the infra container did not exit after SIGKILL",
                ));
            }
        }
    }

    let now = sandbox_core::timestamp::now();
    let changed = daemon.sandboxes.update(id, |s| {
        let before = s.clone();
        s.mark_stopped(now);
        // In the same save as the stop: a crash from here on still finds
        // the release to do.
        if has_pins(s) {
            s.network_release_pending = true;
        }
        if let Some(infra) = s.infra_container.as_mut() {
            if infra.finished_at.is_none() {
                infra.finished_at = Some(now);
            }
            infra.state = sandbox_core::ContainerState::Exited;
        }
        (*s != before).then(|| (before, s.clone()))
    })?;
    // A pod stopped before (RemovePodSandbox stops it again, kubelet
    // repeats StopPodSandbox) has nothing new to make durable: no fsync.
    let saved = changed.is_some();
    if let Some((before, updated)) = changed {
        if let Err(e) = daemon.save_sandbox(&updated) {
            // Memory never holds a stop the disk does not: the retry this
            // error asks for finds the change again, and saves it.
            let _ = daemon.sandboxes.update(id, |s| *s = before);
            return Err(e);
        }
    }
    tracing::debug!(pod = %id, ?containers_stopped, saved, elapsed = ?started.elapsed(), "pod stopped");
    Ok(())
}

/// Whether the pod holds pinned namespaces, which its stop leaves to
/// release (`network_release_pending`).
fn has_pins(s: &sandbox_core::Sandbox) -> bool {
    s.netns_path.is_some()
        || s.ipc_path.is_some()
        || s.uts_path.is_some()
        || s.userns_path.is_some()
}

#[cfg(test)]
mod verb_tests {
    use crate::testing::{networked_pod, Doubles};
    use std::os::unix::fs::MetadataExt;

    /// The inode of pod `id`'s record: every save writes a new file.
    fn record_inode(daemon: &crate::daemon::Daemon, id: &str) -> u64 {
        let path = daemon.layout.sandbox_records().join(format!("{id}.json"));
        std::fs::metadata(path).expect("the pod's record").ino()
    }

    /// A networked pod with no infra container (nothing to kill).
    async fn pod_without_infra() -> (crate::testing::TestDaemon, String) {
        let mut d = Doubles::new();
        d.network.expect_teardown().returning(|_| Ok(()));
        let t = d.build().await;
        let id = networked_pod(&t.daemon, "web");
        t.daemon
            .sandboxes
            .update(&id, |s| s.infra_container = None)
            .unwrap();
        (t, id)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn stopping_a_stopped_pod_writes_nothing() {
        let (t, id) = pod_without_infra().await;
        super::stop_locked(&t.daemon, &id).await.unwrap();
        let first = record_inode(&t.daemon, &id);
        let stopped = t.daemon.sandboxes.get(&id).unwrap();
        assert!(stopped.is_stopped() && stopped.network_release_pending);

        super::stop_locked(&t.daemon, &id).await.unwrap();
        assert_eq!(record_inode(&t.daemon, &id), first, "saved again");
        assert_eq!(*t.daemon.sandboxes.get(&id).unwrap(), *stopped);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_stop_whose_save_failed_is_saved_by_the_retry() {
        let (t, id) = pod_without_infra().await;
        let records = t.daemon.layout.sandbox_records();
        std::fs::remove_dir_all(&records).unwrap();

        super::stop_locked(&t.daemon, &id).await.unwrap_err();
        let pod = t.daemon.sandboxes.get(&id).unwrap();
        assert!(!pod.is_stopped(), "memory is not ahead of the disk");

        std::fs::create_dir_all(&records).unwrap();
        super::stop_locked(&t.daemon, &id).await.unwrap();
        let on_disk: Vec<sandbox_core::Sandbox> = t.daemon.sandbox_records.load_all();
        assert!(on_disk[0].is_stopped() && on_disk[0].network_release_pending);
    }
}
