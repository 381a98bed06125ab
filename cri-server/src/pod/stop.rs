//! StopPodSandbox: stop every container, kill the infra container, record
//! the pod stopped, then release its network off the request path
//! ([`super::release`]). Idempotent: stopping a stopped or removed pod
//! succeeds.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::layout::Layout;
use sandbox_core::{ContainerFilter, Sandbox};
use std::sync::Arc;
use std::time::Duration;

/// How long a killed infra container may take to be reaped.
const INFRA_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Stops pod `id_or_prefix`.
pub async fn stop(daemon: &Arc<Daemon>, id_or_prefix: &str) -> Result<()> {
    let _busy = daemon.pod_calls.enter();
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
///
/// The stopped record is saved while the containers die, not after: its
/// fsync (a data write, an inode write and a cache flush, each a sleep
/// and a wake-up) was 3–5 ms of the stop's p50 and up to 20 ms of its
/// p99 at 110 pods, all of it after the last exit. A crash meanwhile
/// leaves a pod recorded stopped whose SIGKILLed containers were still
/// dying, which restore finds exited from their monitors and whose
/// network it releases, as kubelet asked. A stop that fails puts the
/// record back as memory has it.
pub async fn stop_locked(daemon: &Arc<Daemon>, id: &str) -> Result<()> {
    let Ok(sandbox) = daemon.sandboxes.get(id) else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let stopped_at = sandbox_core::timestamp::now();
    let mut planned = (*sandbox).clone();
    record_stop(&mut planned, stopped_at);
    // A pod stopped before (RemovePodSandbox stops it again, kubelet
    // repeats StopPodSandbox) has nothing new to make durable: no fsync.
    let early = (planned != *sandbox).then(|| daemon.spawn_save_sandbox(planned.clone()));
    let stopped = stop_containers(daemon, id, &sandbox).await;
    let containers_stopped = started.elapsed();
    let early_saved = match early {
        Some(saving) => Some(saving.await),
        None => None,
    };
    if let Err(e) = stopped {
        if matches!(early_saved, Some(Ok(()))) {
            put_back(daemon, id);
        }
        return Err(e);
    }
    let changed = daemon.sandboxes.update(id, |s| {
        let before = s.clone();
        record_stop(s, stopped_at);
        (*s != before).then(|| (before, s.clone()))
    })?;
    let saved = changed.is_some();
    if let Some((before, updated)) = changed {
        // Saved again only when the early save failed or something else
        // changed the pod meanwhile (its release clearing the pins).
        let durable = matches!(early_saved, Some(Ok(()))) && updated == planned;
        if !durable {
            if let Err(e) = daemon.save_sandbox(&updated) {
                // Memory never holds a stop the disk does not: the retry
                // this error asks for finds the change again, and saves it.
                let _ = daemon.sandboxes.update(id, |s| *s = before);
                return Err(e);
            }
        }
    }
    tracing::debug!(pod = %id, ?containers_stopped, saved, elapsed = ?started.elapsed(), "pod stopped");
    Ok(())
}

/// Kills the pod's containers, then its infra container, and waits for
/// them all to exit.
async fn stop_containers(daemon: &Arc<Daemon>, id: &str, sandbox: &Sandbox) -> Result<()> {
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
    if sandbox.infra_container.is_none() {
        return Ok(());
    }
    let killed = std::time::Instant::now();
    let dir = Layout::monitor(&daemon.layout.sandbox_dir(id));
    // Subscribed before the kill, so that no exit its watcher sees is
    // missed.
    let mut exits = daemon.exits.subscribe(id);
    if !kill_infra(daemon, id, sandbox, &dir).await? {
        return Ok(());
    }
    let waited =
        crate::container::stop::wait_stopped(daemon, id, &dir, exits.as_mut(), INFRA_EXIT_TIMEOUT)
            .await;
    tracing::debug!(pod = %id, elapsed = ?killed.elapsed(), "infra container stopped");
    match waited {
        Some(_) => Ok(()),
        None => Err(Error::internal(
            format!("pod {id}"),
            "the infra container did not exit after SIGKILL",
        )),
    }
}

/// SIGKILLs pod `id`'s infra container (pause holds nothing worth a grace
/// period); `false` when it had exited already. On runc it goes straight
/// to the init through its pidfd, as a container's stop does: the
/// runtime's `kill` was a `runc` process (its Go runtime starting, a
/// vfork on an async worker) and the check before it a connection to the
/// monitor, both after the pod's last container had exited.
async fn kill_infra(
    daemon: &Arc<Daemon>,
    id: &str,
    sandbox: &Sandbox,
    dir: &std::path::Path,
) -> Result<bool> {
    let handler = &sandbox.runtime_handler;
    let through_monitor = crate::container::stop::kill_through_monitor(
        daemon,
        id,
        handler,
        dir,
        libc::SIGKILL,
        false,
    );
    if through_monitor.await {
        return Ok(true);
    }
    let runtime = daemon.runtime(&sandbox.runtime_handler)?;
    if crate::container::has_exited(daemon, id, dir).await {
        return Ok(false);
    }
    if let Err(e) = runtime.kill(id, libc::SIGKILL, false).await {
        tracing::debug!(pod = %id, error = %e, "killing the infra container");
    }
    Ok(true)
}

/// Records `s` stopped at `at`, with its release to do (in the same save
/// as the stop, so a crash from then on still finds it).
fn record_stop(s: &mut Sandbox, at: i64) {
    s.mark_stopped(at);
    if has_pins(s) {
        s.network_release_pending = true;
    }
    if let Some(infra) = s.infra_container.as_mut() {
        if infra.finished_at.is_none() {
            infra.finished_at = Some(at);
        }
        infra.state = sandbox_core::ContainerState::Exited;
    }
}

/// After a failed stop, saves pod `id`'s record as memory holds it (not
/// stopped) over the stopped one saved early.
fn put_back(daemon: &Daemon, id: &str) {
    let Ok(current) = daemon.sandboxes.get(id) else {
        return;
    };
    if let Err(e) = daemon.save_sandbox(&current) {
        tracing::warn!(pod = %id, error = %e, "putting back the record of a pod whose stop failed");
    }
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
    use crate::testing::{exit, networked_pod, running_container, Doubles};
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

    /// Pod `id` as its record on disk has it.
    fn on_disk(daemon: &crate::daemon::Daemon, id: &str) -> sandbox_core::Sandbox {
        let records: Vec<sandbox_core::Sandbox> = daemon.sandbox_records.load_all();
        records
            .into_iter()
            .find(|s| s.id == id)
            .expect("the pod's record")
    }

    /// The inode of pod `id`'s record: every save changes it (the spare
    /// takes the record's name).
    fn record_inode(daemon: &crate::daemon::Daemon, id: &str) -> u64 {
        let path = daemon.layout.sandbox_records().join(format!("{id}.json"));
        std::fs::metadata(path).expect("the pod's record").ino()
    }

    /// A networked pod with no infra container (nothing to kill).
    async fn pod_without_infra() -> (crate::testing::TestDaemon, String) {
        pod_without_infra_and(|_| {}).await
    }

    /// [`pod_without_infra`], with `more` doubles' expectations.
    async fn pod_without_infra_and(
        more: impl FnOnce(&mut Doubles),
    ) -> (crate::testing::TestDaemon, String) {
        let mut d = Doubles::new();
        d.network.expect_teardown().returning(|_| Ok(()));
        more(&mut d);
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

    #[tokio::test(flavor = "multi_thread")]
    async fn the_stopped_record_is_saved_while_the_containers_die() {
        let (t, pod) = pod_without_infra_and(|d| {
            d.monitors.expect_kill().returning(|_, _, _, _| Ok(true));
            d.monitors.expect_wait().never();
        })
        .await;
        let app = running_container(&t.daemon, &pod, "app");
        // The container's watcher, which hears of its exit only when told.
        let publisher = t.daemon.exits.watch(&app);
        let stopping = {
            let (daemon, pod) = (std::sync::Arc::clone(&t.daemon), pod.clone());
            tokio::spawn(async move { super::stop_locked(&daemon, &pod).await })
        };
        let saved = async {
            while !on_disk(&t.daemon, &pod).is_stopped() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), saved)
            .await
            .expect("the stopped record saved before the exit");
        assert!(!stopping.is_finished());
        assert!(
            !t.daemon.sandboxes.get(&pod).unwrap().is_stopped(),
            "memory says stopped only once the containers are"
        );

        publisher.publish(Some(exit(128 + libc::SIGKILL)));
        stopping.await.unwrap().unwrap();
        let stopped = t.daemon.sandboxes.get(&pod).unwrap();
        assert!(stopped.is_stopped() && stopped.network_release_pending);
        assert_eq!(
            on_disk(&t.daemon, &pod),
            *stopped,
            "one save, the same record"
        );
        // The container is exited in memory by the time the stop returns;
        // its record follows behind the stop (the monitor's `exit.json`
        // covers a crash meanwhile).
        let exited = sandbox_core::ContainerState::Exited;
        assert_eq!(t.daemon.containers.get(&app).unwrap().state, exited);
        let record_exited = async {
            loop {
                let containers: Vec<sandbox_core::Container> =
                    t.daemon.container_records.load_all();
                if containers.iter().any(|c| c.id == app && c.state == exited) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), record_exited)
            .await
            .expect("the container's exit saved");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_stop_that_fails_puts_the_record_back() {
        let (t, pod) = pod_without_infra().await;
        let lost = running_container(&t.daemon, &pod, "lost");
        t.daemon
            .containers
            .update(&lost, |c| {
                c.runtime_handler = "removed-from-the-config".into()
            })
            .unwrap();

        super::stop_locked(&t.daemon, &pod).await.unwrap_err();

        assert!(!t.daemon.sandboxes.get(&pod).unwrap().is_stopped());
        let record = on_disk(&t.daemon, &pod);
        assert!(!record.is_stopped() && !record.network_release_pending);
    }

    /// On runc the infra container is killed through its pidfd (the
    /// monitors' `kill`), never by a `runc kill` process, and the stop
    /// takes its exit from the infra's watcher.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_infra_is_killed_directly_and_its_exit_comes_from_its_watcher() {
        let mut d = Doubles::new();
        let (killed, heard) = std::sync::mpsc::channel::<()>();
        let killed = std::sync::Mutex::new(killed);
        d.monitors
            .expect_kill()
            .withf(|_, _, signal, _| *signal == libc::SIGKILL)
            .times(1)
            .returning(move |_, _, _, _| {
                let _ = killed.lock().unwrap().send(());
                Ok(true)
            });
        d.runc.expect_kill().never();
        d.monitors.expect_exited().never();
        d.monitors.expect_wait().never();
        d.network.expect_teardown().returning(|_| Ok(()));
        let t = d.build().await;
        let pod = networked_pod(&t.daemon, "web");
        let publisher = t.daemon.exits.watch(&pod);
        let stopping = {
            let (daemon, pod) = (std::sync::Arc::clone(&t.daemon), pod.clone());
            tokio::spawn(async move { super::stop_locked(&daemon, &pod).await })
        };
        tokio::task::spawn_blocking(move || heard.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the infra killed");
        publisher.publish(Some(exit(128 + libc::SIGKILL)));
        stopping.await.unwrap().unwrap();
        assert!(t.daemon.sandboxes.get(&pod).unwrap().is_stopped());
    }

    /// When its monitor cannot signal it, the infra container is killed
    /// through the runtime, unless its monitor says it has exited.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_infra_the_monitor_cannot_signal_is_killed_through_the_runtime() {
        for exited in [false, true] {
            let mut d = Doubles::new();
            d.monitors.expect_kill().returning(|_, _, _, _| Ok(false));
            d.monitors
                .expect_exited()
                .times(1)
                .returning(move |_, _| Ok(exited.then(|| exit(0))));
            d.runc
                .expect_kill()
                .times(usize::from(!exited))
                .returning(|_, _, _| Ok(()));
            d.monitors
                .expect_wait()
                .times(usize::from(!exited))
                .returning(|_, _| Ok(exit(137)));
            d.network.expect_teardown().returning(|_| Ok(()));
            let t = d.build().await;
            let pod = networked_pod(&t.daemon, "web");
            super::stop_locked(&t.daemon, &pod).await.unwrap();
            assert!(t.daemon.sandboxes.get(&pod).unwrap().is_stopped());
        }
    }
}
