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
    let on_runc = daemon
        .handler(&container.runtime_handler)
        .is_ok_and(|h| h.kind == oci_shim::runtime::RuntimeKind::Runc);
    if on_runc && container.state == ContainerState::Running {
        let dir = super::monitor_dir(daemon, &container.id);
        match daemon.monitors.kill(&container.id, &dir, signal, all).await {
            Ok(true) => {
                tracing::debug!(container = %container.id, signal, all, "signal delivered");
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(container = %container.id, error = %e, "signal through the monitor")
            }
        }
    }
    tracing::debug!(container = %container.id, signal, all, "signal sent through the runtime");
    Ok(runtime.kill(&container.id, signal, all).await?)
}

/// Stops container `id` (a full id) while its lock (or its pod's) is held,
/// then deletes the runtime's state of it.
pub async fn stop_locked(daemon: &Arc<Daemon>, id: &str, timeout_seconds: i64) -> Result<()> {
    stop_then(daemon, id, timeout_seconds, true).await
}

/// [`stop_locked`] leaving the runtime's state for a later delete
/// (`runtime_deleted` stays false, so RemoveContainer does it at the
/// latest): StopPodSandbox leaves it to RemovePodSandbox, which runs it
/// beside the pod's CNI DEL.
pub async fn stop_locked_keeping_state(daemon: &Arc<Daemon>, id: &str) -> Result<()> {
    stop_then(daemon, id, 0, false).await
}

async fn stop_then(
    daemon: &Arc<Daemon>,
    id: &str,
    timeout_seconds: i64,
    delete: bool,
) -> Result<()> {
    let Ok(container) = daemon.containers.get(id) else {
        return Ok(());
    };
    if container.state != ContainerState::Running && container.state != ContainerState::Created {
        return Ok(());
    }
    let runtime = daemon.runtime(&container.runtime_handler)?;
    let monitor_dir = super::monitor_dir(daemon, id);
    if container.state == ContainerState::Created && super::on_gvisor(daemon, &container) {
        return stop_unstarted_in_gvisor(daemon, id, &runtime, &monitor_dir).await;
    }
    // Before any signal, so that no exit its watcher sees is missed.
    let mut exits = daemon.exits.subscribe(id);
    let mut exit = None;
    if container.state == ContainerState::Running && timeout_seconds > 0 {
        let signal = signal_number(&container.stop_signal).unwrap_or(libc::SIGTERM);
        if let Err(e) = send_signal(daemon, &container, &runtime, signal, false).await {
            tracing::debug!(container = %id, error = %e, "stop signal");
        }
        let grace = Duration::from_secs(timeout_seconds as u64);
        exit = wait_stopped(daemon, id, &monitor_dir, exits.as_mut(), grace).await;
    }
    let started = std::time::Instant::now();
    let killed_at = std::time::SystemTime::now();
    if exit.is_none() {
        if let Err(e) = send_signal(daemon, &container, &runtime, libc::SIGKILL, true).await {
            tracing::debug!(container = %id, error = %e, "SIGKILL");
        }
        exit = wait_stopped(daemon, id, &monitor_dir, exits.as_mut(), KILL_GRACE).await;
    }
    match exit {
        Some(exit) => {
            let exit_seen = started.elapsed();
            // The monitor stamps the exit when it reaps the init: the wait
            // splits into the kill's delivery and the dying (up to the
            // reap) and the report (from the reap to the daemon).
            let reaped = std::time::UNIX_EPOCH + Duration::from_nanos(exit.finished_at_unix_nanos);
            let to_reap = reaped.duration_since(killed_at).unwrap_or_default();
            let runtime = delete.then_some(&runtime);
            super::record_exit_then_delete(daemon, id, &exit, runtime).await;
            tracing::debug!(container = %id, ?exit_seen, ?to_reap, elapsed = ?started.elapsed(), "container stopped");
            Ok(())
        }
        None => Err(Error::internal(
            format!("container {id}"),
            "still running after SIGKILL",
        )),
    }
}

/// Waits (at most `limit`) for container `id` to exit: through its
/// watcher when one follows it (`exits`, see [`crate::exits`]), else, or
/// when the watcher lost the monitor, by asking the monitor.
async fn wait_stopped(
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

    /// A container that ignores its stop signal and dies of SIGKILL: its
    /// monitor's wait stays pending until the kill. With `delivers` its
    /// monitor sends the signals; without, it leaves them to the runtime.
    struct IgnoresStopSignal {
        killed: Arc<tokio::sync::Notify>,
        delivers: bool,
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
            _: &str,
            _: &std::path::Path,
        ) -> oci_shim::Result<oci_shim::monitor::protocol::ExitRecord> {
            self.killed.notified().await;
            Ok(exit(128 + libc::SIGKILL))
        }
        async fn retire(&self, _: &str, _: &std::path::Path) -> bool {
            false
        }
        async fn kill(
            &self,
            _: &str,
            _: &std::path::Path,
            signal: i32,
            _: bool,
        ) -> oci_shim::Result<bool> {
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
            d.monitors_instead = Some(Arc::new(IgnoresStopSignal { killed, delivers }));
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
}
