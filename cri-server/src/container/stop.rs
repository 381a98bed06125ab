//! StopContainer: the stop signal, then SIGKILL when the timeout passes.
//! Idempotent: stopping a stopped or removed container succeeds.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use oci_shim::monitor::protocol::ExitRecord;
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

/// Sends `signal` to the container (every process of it with `all`):
/// through its monitor on runc, which spares a runtime process per stop,
/// and through the runtime where the monitor cannot (gVisor, whose
/// processes live in the sandbox; `all` for a container sharing a PID
/// namespace).
async fn send_signal(
    daemon: &Arc<Daemon>,
    container: &sandbox_core::Container,
    runtime: &Arc<dyn oci_shim::runtime::OciRuntime>,
    signal: i32,
    all: bool,
) -> Result<()> {
    if container.state == ContainerState::Running {
        let dir = super::monitor_dir(daemon, &container.id);
        let handler = &container.runtime_handler;
        if kill_through_monitor(daemon, &container.id, handler, &dir, signal, all).await {
            return Ok(());
        }
    }
    tracing::debug!(container = %container.id, signal, all, "signal sent through the runtime");
    Ok(runtime.kill(&container.id, signal, all).await?)
}

/// Sends `signal` to `id`'s init (every process of it with `all`) through
/// its monitor when `handler` is a runc handler; `false` when the caller
/// must go through the runtime instead: gVisor (its processes live in the
/// sandbox), a monitor that cannot deliver it, or one that cannot be
/// reached. Shared by a container's stop and its pod's infra kill.
pub(crate) async fn kill_through_monitor(
    daemon: &Arc<Daemon>,
    id: &str,
    handler: &str,
    dir: &std::path::Path,
    signal: i32,
    all: bool,
) -> bool {
    let on_runc = daemon
        .handler(handler)
        .is_ok_and(|h| h.kind == oci_shim::runtime::RuntimeKind::Runc);
    if !on_runc {
        return false;
    }
    match daemon.monitors.kill(id, dir, signal, all).await {
        Ok(true) => {
            tracing::debug!(%id, signal, all, "signal delivered");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::debug!(%id, error = %e, "signal through the monitor");
            false
        }
    }
}

/// Stops container `id` (a full id) while its lock (or its pod's) is held,
/// then deletes the runtime's state of it.
pub async fn stop_locked(daemon: &Arc<Daemon>, id: &str, timeout_seconds: i64) -> Result<()> {
    match begin(daemon, id, timeout_seconds).await? {
        Some(stopping) => stopping.finish(daemon, timeout_seconds, true).await,
        None => Ok(()),
    }
}

/// Kills every container of `ids` at once (each held by its pod's lock),
/// then waits for them all, leaving their runtime state for a later delete
/// (`runtime_deleted` stays false, so RemoveContainer does it at the
/// latest): StopPodSandbox leaves it to RemovePodSandbox, which runs it
/// beside the pod's CNI DEL. Every signal goes out before any wait, so a
/// pod's second container never waits for the first one's bookkeeping
/// (on a busy node, a preempted worker held it back by up to 9 ms).
pub async fn kill_all_keeping_state(daemon: &Arc<Daemon>, ids: &[String]) -> Result<()> {
    // One container that cannot be stopped (its handler gone from the
    // configuration) does not keep the others running: the first error is
    // returned once every other container is stopped.
    let mut first_error = None;
    let mut killed = Vec::with_capacity(ids.len());
    // The kills go out side by side too: each is a round trip to the
    // container's monitor, which on a busy node waits for a CPU, and one
    // after the other they put the second container's SIGKILL up to 9 ms
    // behind the first (the slowest pod stops at 110 pods).
    let begun = futures_util::future::join_all(ids.iter().map(|id| begin(daemon, id, 0))).await;
    for begun in begun {
        match begun {
            Ok(Some(stopping)) => killed.push(stopping),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let waits = killed.into_iter().map(|s| s.finish(daemon, 0, false));
    for stopped in futures_util::future::join_all(waits).await {
        if let Err(e) = stopped {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A container whose stop has sent its first signal.
struct Stopping {
    container: Arc<sandbox_core::Container>,
    runtime: Arc<dyn oci_shim::runtime::OciRuntime>,
    monitor_dir: std::path::PathBuf,
    /// Subscribed before any signal, so that no exit its watcher sees is
    /// missed.
    exits: Option<tokio::sync::watch::Receiver<Option<ExitRecord>>>,
    /// When SIGKILL went out, if it already has (no grace period).
    killed: Option<Killed>,
}

/// When a SIGKILL was sent: the stop's clock and the wall clock the
/// monitor's reap stamp is compared with.
#[derive(Clone, Copy)]
struct Killed {
    started: std::time::Instant,
    at: std::time::SystemTime,
}

/// Sends container `id` its stop signal, or SIGKILL at once without a
/// grace period; `None` when there is nothing (left) to stop.
async fn begin(daemon: &Arc<Daemon>, id: &str, timeout_seconds: i64) -> Result<Option<Stopping>> {
    let Ok(container) = daemon.containers.get(id) else {
        return Ok(None);
    };
    if container.state != ContainerState::Running && container.state != ContainerState::Created {
        return Ok(None);
    }
    let runtime = daemon.runtime(&container.runtime_handler)?;
    let monitor_dir = super::monitor_dir(daemon, id);
    if container.state == ContainerState::Created && super::on_gvisor(daemon, &container) {
        stop_unstarted_in_gvisor(daemon, id, &runtime, &monitor_dir).await?;
        return Ok(None);
    }
    let exits = daemon.exits.subscribe(id);
    let mut stopping = Stopping {
        container,
        runtime,
        monitor_dir,
        exits,
        killed: None,
    };
    if stopping.container.state == ContainerState::Running && timeout_seconds > 0 {
        let signal = signal_number(&stopping.container.stop_signal).unwrap_or(libc::SIGTERM);
        if let Err(e) = stopping.signal(daemon, signal, false).await {
            tracing::debug!(container = %id, error = %e, "stop signal");
        }
    } else {
        stopping.kill(daemon).await;
    }
    Ok(Some(stopping))
}

impl Stopping {
    async fn signal(&self, daemon: &Arc<Daemon>, signal: i32, all: bool) -> Result<()> {
        send_signal(daemon, &self.container, &self.runtime, signal, all).await
    }

    async fn kill(&mut self, daemon: &Arc<Daemon>) {
        let killed = Killed {
            started: std::time::Instant::now(),
            at: std::time::SystemTime::now(),
        };
        self.killed = Some(killed);
        if let Err(e) = self.signal(daemon, libc::SIGKILL, true).await {
            tracing::debug!(container = %self.container.id, error = %e, "SIGKILL");
        }
    }

    async fn wait(&mut self, daemon: &Daemon, limit: Duration) -> Option<ExitRecord> {
        let id = &self.container.id;
        wait_stopped(daemon, id, &self.monitor_dir, self.exits.as_mut(), limit).await
    }

    /// Waits out the grace period (SIGKILL after it), then records the
    /// exit: with `delete` (StopContainer), the runtime's state is deleted
    /// and the record saved before it returns; without (a pod's stop),
    /// the record is saved behind it ([`super::record_exit_behind`]).
    async fn finish(
        mut self,
        daemon: &Arc<Daemon>,
        timeout_seconds: i64,
        delete: bool,
    ) -> Result<()> {
        let id = self.container.id.clone();
        let mut exit = None;
        if self.killed.is_none() {
            let grace = Duration::from_secs(timeout_seconds.max(0) as u64);
            exit = self.wait(daemon, grace).await;
            if exit.is_none() {
                self.kill(daemon).await;
            }
        }
        if exit.is_none() {
            exit = self.wait(daemon, KILL_GRACE).await;
        }
        let Some(exit) = exit else {
            return Err(Error::internal(
                format!("container {id}"),
                "still running after SIGKILL",
            ));
        };
        let killed = self.killed.unwrap_or(Killed {
            started: std::time::Instant::now(),
            at: std::time::SystemTime::now(),
        });
        let exit_seen = killed.started.elapsed();
        // The monitor stamps the exit when it reaps the init: the wait
        // splits into the kill's delivery and the dying (up to the reap)
        // and the report (from the reap to the daemon).
        let reaped = std::time::UNIX_EPOCH + Duration::from_nanos(exit.finished_at_unix_nanos);
        let to_reap = reaped.duration_since(killed.at).unwrap_or_default();
        if delete {
            super::record_exit_then_delete(daemon, &id, &exit, Some(&self.runtime)).await;
        } else {
            super::record_exit_behind(daemon, &id, &exit).await;
        }
        tracing::debug!(container = %id, ?exit_seen, ?to_reap, elapsed = ?killed.started.elapsed(), "container stopped");
        Ok(())
    }
}

/// Waits (at most `limit`) for container `id` to exit: through its
/// watcher when one follows it (`exits`, see [`crate::exits`]), else, or
/// when the watcher lost the monitor, by asking the monitor.
pub(crate) async fn wait_stopped(
    daemon: &Daemon,
    id: &str,
    monitor_dir: &std::path::Path,
    exits: Option<&mut tokio::sync::watch::Receiver<Option<ExitRecord>>>,
    limit: Duration,
) -> Option<ExitRecord> {
    use crate::exits::Waited;
    if let Some(receiver) = exits {
        match crate::exits::wait(receiver, limit).await {
            Waited::Exited(exit) => return Some(exit),
            Waited::TimedOut => return None,
            Waited::NoWatcher => {}
        }
    }
    super::wait_exit(daemon, id, monitor_dir, limit).await
}

/// Stops a gVisor container that was created but never started. Unlike a
/// runc init waiting to exec, it has no process at all: runsc refuses to
/// signal it ("cannot signal container in state created") and its monitor
/// would wait forever, so the kill-and-wait path ended in "still running
/// after SIGKILL" and the pod could never be stopped. Deleting it from the
/// sandbox by force is its stop; it is recorded as killed, as runc's
/// unstarted init is.
async fn stop_unstarted_in_gvisor(
    daemon: &Arc<Daemon>,
    id: &str,
    runtime: &Arc<dyn oci_shim::runtime::OciRuntime>,
    monitor_dir: &std::path::Path,
) -> Result<()> {
    runtime.delete(id, true).await?;
    daemon.monitors.retire(id, monitor_dir).await;
    let _ = daemon.containers.update(id, |c| c.runtime_deleted = true);
    let exit = oci_shim::monitor::protocol::ExitRecord {
        exit_code: 128 + libc::SIGKILL,
        signal: libc::SIGKILL,
        finished_at_unix_nanos: sandbox_core::timestamp::now() as u64,
    };
    super::record_exit(daemon, id, &exit).await;
    tracing::debug!(container = %id, "unstarted gVisor container deleted from its sandbox");
    Ok(())
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

#[cfg(test)]
mod verb_tests {
    use super::*;
    use crate::testing::{exit, ready_pod, running_container, Doubles};
    use mockall::Sequence;

    /// A monitor double that notes each kill and each wait, by container.
    /// Its container ignores the stop signal and dies of SIGKILL: the wait
    /// stays pending until the kill, or returns at once with
    /// `dies_at_once`. With `delivers` it sends the signals; without, it
    /// leaves them to the runtime. With `kills_meet`, each kill's reply
    /// waits until that many kills are in flight at once.
    #[derive(Default)]
    struct IgnoresStopSignal {
        killed: Arc<tokio::sync::Notify>,
        delivers: bool,
        dies_at_once: bool,
        kills_meet: Option<tokio::sync::Barrier>,
        journal: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl oci_shim::monitor::MonitorLauncher for IgnoresStopSignal {
        async fn prepare(
            &self,
            _: &oci_shim::monitor::MonitorConfig,
        ) -> oci_shim::Result<Box<dyn oci_shim::monitor::PendingLaunch>> {
            unreachable!("no container is created here")
        }
        async fn start(&self, _: &str, _: &std::path::Path) -> oci_shim::Result<()> {
            unreachable!("no container is started here")
        }
        async fn exited(
            &self,
            _: &str,
            _: &std::path::Path,
        ) -> oci_shim::Result<Option<oci_shim::monitor::protocol::ExitRecord>> {
            Ok(None)
        }
        async fn wait(
            &self,
            id: &str,
            _: &std::path::Path,
        ) -> oci_shim::Result<oci_shim::monitor::protocol::ExitRecord> {
            self.journal.lock().unwrap().push(format!("wait {id}"));
            if !self.dies_at_once {
                self.killed.notified().await;
            }
            Ok(exit(128 + libc::SIGKILL))
        }
        async fn retire(&self, _: &str, _: &std::path::Path) -> bool {
            false
        }
        async fn kill(
            &self,
            id: &str,
            _: &std::path::Path,
            signal: i32,
            _: bool,
        ) -> oci_shim::Result<bool> {
            self.journal.lock().unwrap().push(format!("kill {id}"));
            if let Some(meet) = &self.kills_meet {
                meet.wait().await;
            }
            if self.delivers && signal == libc::SIGKILL {
                self.killed.notify_one();
            }
            Ok(self.delivers)
        }
    }

    /// Doubles for a stop whose signals the runtime sends (`runc kill`).
    fn signals_through_the_runtime(d: &mut Doubles, killed: &Arc<tokio::sync::Notify>) {
        let mut order = Sequence::new();
        d.runc
            .expect_kill()
            .withf(|_, signal, all| *signal == libc::SIGTERM && !*all)
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(()));
        let on_kill = Arc::clone(killed);
        d.runc
            .expect_kill()
            .withf(|_, signal, all| *signal == libc::SIGKILL && *all)
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_, _, _| {
                on_kill.notify_one();
                Ok(())
            });
    }

    #[tokio::test(start_paused = true)]
    async fn the_stop_signal_then_sigkill_when_the_grace_period_ends() {
        // The monitor delivers both signals (no runtime process), or says
        // only the runtime can and `runc kill` does.
        for delivers in [true, false] {
            let killed = Arc::new(tokio::sync::Notify::new());
            let mut d = Doubles::new();
            if delivers {
                d.runc.expect_kill().never();
            } else {
                signals_through_the_runtime(&mut d, &killed);
            }
            d.runc
                .expect_delete()
                .withf(|_, force| !*force)
                .times(1)
                .returning(|_, _| Ok(()));
            d.monitors_instead = Some(Arc::new(IgnoresStopSignal {
                killed,
                delivers,
                ..IgnoresStopSignal::default()
            }));
            let t = d.build().await;
            let pod = ready_pod(&t.daemon, "web");
            let id = running_container(&t.daemon, &pod, "app");

            let started = tokio::time::Instant::now();
            stop(&t.daemon, &id, 30).await.unwrap();
            // The whole grace period, on tokio's paused clock, then the kill.
            assert_eq!(started.elapsed().as_secs(), 30, "delivers: {delivers}");
            let container = t.daemon.containers.get(&id).unwrap();
            assert_eq!(container.state, ContainerState::Exited);
            assert_eq!(container.exit_code, Some(137));
            assert!(container.runtime_deleted, "deleted once it exited");
            // Stopping again is a no-op: no signal, no wait, no delete.
            stop(&t.daemon, &id, 30).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unstarted_gvisor_container_is_deleted_not_signalled() {
        let mut d = Doubles::new();
        let mut runsc = oci_shim::runtime::MockOciRuntime::new();
        runsc.expect_name().return_const("runsc".to_string());
        // runsc refuses to signal it and its monitor would never see an
        // exit: no kill, no wait, one forced delete.
        runsc.expect_kill().never();
        d.monitors.expect_wait().never();
        runsc
            .expect_delete()
            .withf(|_, force| *force)
            .times(1)
            .returning(|_, _| Ok(()));
        d.runsc = Some(runsc);
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let sandbox = t.daemon.sandboxes.get(&pod).unwrap();
        let id = sandbox_core::id::generate().unwrap();
        let mut container = sandbox_core::Container::new(
            id.clone(),
            &sandbox,
            sandbox_core::ContainerMetadata::new("app", 0),
        );
        container.runtime_handler = "runsc".into();
        t.daemon.containers.add(container).unwrap();

        stop(&t.daemon, &id, 30).await.unwrap();

        let container = t.daemon.containers.get(&id).unwrap();
        assert_eq!(container.state, ContainerState::Exited);
        assert_eq!(container.exit_code, Some(137));
        assert!(container.runtime_deleted);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_container_that_exits_on_its_signal_gets_no_sigkill() {
        let mut d = Doubles::new();
        d.monitors.expect_kill().returning(|_, _, _, _| Ok(false));
        d.runc
            .expect_kill()
            .withf(|_, signal, _| *signal == libc::SIGQUIT)
            .times(1)
            .returning(|_, _, _| Ok(()));
        d.monitors
            .expect_wait()
            .times(1)
            .returning(|_, _| Ok(exit(0)));
        // A failed delete is left to RemoveContainer.
        d.runc.expect_delete().times(1).returning(|_, _| {
            Err(oci_shim::Error::RuntimeTimeout {
                id: "app".into(),
                runtime: "runc".into(),
                command: "runc delete".into(),
                after: std::time::Duration::from_secs(1),
            })
        });
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let id = running_container(&t.daemon, &pod, "app");
        t.daemon
            .containers
            .update(&id, |c| c.stop_signal = "QUIT".into())
            .unwrap();

        stop(&t.daemon, &id, 30).await.unwrap();
        let container = t.daemon.containers.get(&id).unwrap();
        assert_eq!(container.exit_code, Some(0));
        assert_eq!(container.reason, "Completed");
        assert!(!container.runtime_deleted);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_watched_container_stops_on_its_watchers_word() {
        // The watcher's connection already waits on the monitor: the stop
        // asks the monitor to kill, and opens no wait of its own.
        let mut d = Doubles::new();
        d.monitors.expect_wait().never();
        d.runc.expect_kill().never();
        d.runc.expect_delete().times(1).returning(|_, _| Ok(()));
        let (killed, heard) = tokio::sync::oneshot::channel();
        let killed = std::sync::Mutex::new(Some(killed));
        d.monitors
            .expect_kill()
            .withf(|_, _, signal, all| *signal == libc::SIGKILL && *all)
            .times(1)
            .returning(move |_, _, _, _| {
                if let Some(k) = killed.lock().unwrap().take() {
                    let _ = k.send(());
                }
                Ok(true)
            });
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let id = running_container(&t.daemon, &pod, "app");
        let publisher = t.daemon.exits.watch(&id);
        tokio::spawn(async move {
            if heard.await.is_ok() {
                publisher.publish(Some(exit(128 + libc::SIGKILL)));
            }
        });

        stop(&t.daemon, &id, 0).await.unwrap();
        let container = t.daemon.containers.get(&id).unwrap();
        assert_eq!(container.state, ContainerState::Exited);
        assert_eq!(container.exit_code, Some(137));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_watcher_that_lost_the_monitor_leaves_the_stop_to_ask_it() {
        let mut d = Doubles::new();
        d.monitors
            .expect_kill()
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        d.monitors
            .expect_wait()
            .times(1)
            .returning(|_, _| Ok(exit(128 + libc::SIGKILL)));
        d.runc.expect_delete().times(1).returning(|_, _| Ok(()));
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let id = running_container(&t.daemon, &pod, "app");
        let publisher = t.daemon.exits.watch(&id);
        let stopping = {
            let daemon = Arc::clone(&t.daemon);
            let id = id.clone();
            tokio::spawn(async move { stop(&daemon, &id, 0).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        publisher.publish(None);
        stopping.await.unwrap().unwrap();
        assert_eq!(t.daemon.containers.get(&id).unwrap().exit_code, Some(137));
    }

    /// Containers that die at once of a SIGKILL their monitors deliver.
    fn dying_at_once() -> Arc<IgnoresStopSignal> {
        Arc::new(IgnoresStopSignal {
            delivers: true,
            dies_at_once: true,
            ..IgnoresStopSignal::default()
        })
    }

    /// A daemon whose containers die at once of the kill their monitor
    /// delivers, its pod, and the monitors' journal.
    async fn pod_on_dying_monitors() -> (crate::testing::TestDaemon, String, Arc<IgnoresStopSignal>)
    {
        let journal = dying_at_once();
        let mut d = Doubles::new();
        d.monitors_instead = Some(Arc::clone(&journal) as _);
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        (t, pod, journal)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_pods_containers_are_all_killed_before_any_wait() {
        let journal = dying_at_once();
        let mut d = Doubles::new();
        d.runc.expect_kill().never();
        d.runc.expect_delete().never();
        d.monitors_instead = Some(Arc::clone(&journal) as _);
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let ids: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|name| running_container(&t.daemon, &pod, name))
            .collect();

        kill_all_keeping_state(&t.daemon, &ids).await.unwrap();

        let events = journal.journal.lock().unwrap().clone();
        let kills: Vec<String> = ids.iter().map(|id| format!("kill {id}")).collect();
        assert_eq!(events[..3], kills[..], "every kill first: {events:?}");
        assert_eq!(events.len(), 6, "then one wait each: {events:?}");
        for id in &ids {
            let container = t.daemon.containers.get(id).unwrap();
            assert_eq!(container.state, ContainerState::Exited);
            assert!(!container.runtime_deleted, "left to RemovePodSandbox");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_pods_kills_are_in_flight_side_by_side() {
        // Each kill is answered only once all three are asked for: kills
        // sent one after the other would never finish.
        let monitors = Arc::new(IgnoresStopSignal {
            delivers: true,
            dies_at_once: true,
            kills_meet: Some(tokio::sync::Barrier::new(3)),
            ..IgnoresStopSignal::default()
        });
        let mut d = Doubles::new();
        d.monitors_instead = Some(Arc::clone(&monitors) as _);
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let ids: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|name| running_container(&t.daemon, &pod, name))
            .collect();

        let stopped = tokio::time::timeout(
            Duration::from_secs(10),
            kill_all_keeping_state(&t.daemon, &ids),
        )
        .await;

        stopped.expect("the kills waited for each other").unwrap();
        for id in &ids {
            let container = t.daemon.containers.get(id).unwrap();
            assert_eq!(container.state, ContainerState::Exited);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_pods_container_exits_are_saved_behind_the_stop() {
        let (t, pod, _) = pod_on_dying_monitors().await;
        let id = running_container(&t.daemon, &pod, "app");

        kill_all_keeping_state(&t.daemon, std::slice::from_ref(&id))
            .await
            .unwrap();

        let on_disk = || {
            t.daemon
                .container_records
                .load_all::<sandbox_core::Container>()
                .into_iter()
                .find(|c| c.id == id)
                .map(|c| c.state)
        };
        let started = std::time::Instant::now();
        while on_disk() != Some(ContainerState::Exited) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the exit never reached the record: {:?}",
                on_disk()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_container_that_cannot_be_stopped_does_not_keep_the_others_running() {
        let (t, pod, journal) = pod_on_dying_monitors().await;
        let lost = running_container(&t.daemon, &pod, "lost");
        let _ = t.daemon.containers.update(&lost, |c| {
            c.runtime_handler = "removed-from-the-config".into();
        });
        let app = running_container(&t.daemon, &pod, "app");

        let stopped = kill_all_keeping_state(&t.daemon, &[lost.clone(), app.clone()]).await;

        assert!(stopped.is_err(), "the lost handler is reported");
        let app = t.daemon.containers.get(&app).unwrap();
        assert_eq!(app.state, ContainerState::Exited, "the other one stopped");
        let events = journal.journal.lock().unwrap().clone();
        assert!(!events.iter().any(|e| e.contains(&lost)), "{events:?}");
    }
}
