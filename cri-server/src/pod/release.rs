//! A stopped pod's network, released off StopPodSandbox's path.
//!
//! CNI DEL is most of a StopPodSandbox (80–110 ms here: the bridge plugin
//! tears its masquerading rules down with six `iptables` runs, serialised
//! on the xtables lock). The stop records the pod stopped with
//! `network_release_pending` set, in one durable save, and returns; a task
//! of its own then runs the DEL, removes the namespace pins and clears the
//! flag. It holds the pod's *release* lock ([`lock_key`]), not the pod's:
//! RemovePodSandbox removes the pod's containers (runtime delete, root
//! filesystem, record) under the pod's lock while the DEL runs, and does
//! not wait for it either: a pod removed with its release pending hands
//! what the release needs to [`super::removed::RemovedPods`] and goes, record and all; the
//! release finishes from there. Only the release's last step, recording
//! it done, takes the pod's lock too (release lock, then pod lock; nothing
//! takes them the other way round), so that it and a removal's hand-over
//! never interleave. Whatever stops a release halfway is made
//! good at the next start: a stopped pod's flag is still on disk and its
//! release resumes ([`crate::restore`]); a removed pod has no record left,
//! so its CNI attachment is one no record claims and its pins are stale,
//! and the start-up sweep releases both ([`crate::orphans`],
//! `PinDir::cleanup_stale`). A graceful shutdown waits for the task
//! (`in_flight::VERBS`).
//!
//! At most [`parallel_releases`](crate::daemon::parallel_releases) of
//! these tasks run their DEL at once, and only one while RunPodSandbox or
//! StopPodSandbox calls are in flight ([`crate::quiet`]); the rest wait
//! for a turn before they take the release lock, so a release that a new
//! pod's host ports need ([`release_conflicting`]) is never stuck behind
//! the queue.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use sandbox_core::{Protocol, Sandbox, SandboxFilter};
use std::sync::Arc;

/// The lock a pod's release runs under, beside the pod's own.
pub fn lock_key(id: &str) -> String {
    format!("release:{id}")
}

/// Releases pod `id`'s network in a task of its own, under its release
/// lock, once one of the [`parallel_releases`](crate::daemon::parallel_releases)
/// turns is free and the pod calls in flight leave it a turn
/// ([`crate::quiet::Quiet::turn`]).
pub fn release_later(daemon: &Arc<Daemon>, id: &str) {
    let daemon = Arc::clone(daemon);
    let id = id.to_string();
    let entered = crate::in_flight::VERBS.enter();
    tokio::spawn(async move {
        let _entered = entered;
        let _permit = daemon.background_releases.acquire().await;
        let _turn = daemon
            .pod_calls
            .turn(crate::quiet::Lane::NetworkRelease)
            .await;
        let _guard = daemon.locks.lock(&lock_key(&id)).await;
        if let Err(e) = release_locked(&daemon, &id).await {
            tracing::warn!(pod = %id, error = %e, "releasing a stopped pod's network failed; RemovePodSandbox and the next start try again");
        }
    });
}

/// Releases first the network of every stopped pod, its release still
/// pending, that publishes one of `sandbox`'s host ports: otherwise the old
/// pod's portmap rules, matched first, would send the new pod's traffic to
/// the stopped one until its release ran (kubelet recreates a sandbox with
/// the same ports right after stopping the old one).
pub async fn release_conflicting(daemon: &Arc<Daemon>, sandbox: &Sandbox) {
    let published = |s: &Sandbox| -> Vec<(u16, Protocol)> {
        s.port_mappings
            .iter()
            .filter(|m| m.host_port != 0)
            .map(|m| (m.host_port, m.protocol))
            .collect()
    };
    let wanted = published(sandbox);
    if wanted.is_empty() {
        return;
    }
    let stopped = daemon.sandboxes.list(&SandboxFilter::default());
    let holders: Vec<String> = stopped
        .iter()
        .map(|s| (**s).clone())
        .chain(daemon.removed_pods.list())
        .filter(|s| s.network_release_pending && s.id != sandbox.id)
        .filter(|s| published(s).iter().any(|p| wanted.contains(p)))
        .map(|s| s.id.clone())
        .collect();
    for id in holders {
        let _guard = daemon.locks.lock(&lock_key(&id)).await;
        if let Err(e) = release_locked(daemon, &id).await {
            tracing::warn!(pod = %id, error = %e, "releasing a stopped pod's host ports for a new pod");
        }
    }
}

/// Releases pod `id`'s network if its stop left that pending (CNI DEL, the
/// namespace pins), then records it released; the pod's release lock is
/// held.
pub async fn release_locked(daemon: &Arc<Daemon>, id: &str) -> Result<()> {
    let stored = daemon.sandboxes.get(id).ok().map(|s| (*s).clone());
    let Some(sandbox) = stored.or_else(|| daemon.removed_pods.get(id)) else {
        return Ok(());
    };
    if !sandbox.network_release_pending {
        return Ok(());
    }
    let started = std::time::Instant::now();
    if sandbox.netns_path.is_some() {
        crate::fault::point("stop_pod_sandbox.before_cni_del");
        super::network::teardown(daemon, &sandbox).await?;
    }
    let held: Vec<String> = [
        sandbox.netns_path.is_some().then(|| id.to_string()),
        sandbox
            .ipc_path
            .is_some()
            .then(|| netns::PinnedKind::Ipc.pin_name(id)),
        sandbox.uts_path.is_some().then(|| uts_pin_name(id)),
        // Last: the user namespace owns the others.
        sandbox
            .userns_path
            .is_some()
            .then(|| netns::user_pin_name(id)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !held.is_empty() {
        let pins = daemon.pins.clone();
        let removals = tokio::task::spawn_blocking(move || {
            held.iter()
                .map(|name| pins.remove(name))
                .collect::<std::result::Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| Error::internal(format!("pod {id}"), e))??;
        tracing::debug!(pod = %id, ?removals, "namespace pins released");
    }
    // Under the pod's lock, which RemovePodSandbox holds from reading the
    // flag to removing the record: a removal between this check and the
    // save below handed a still-pending release to `removed_pods`, whose
    // task ran the DEL again, or removed the record before this save
    // wrote it back, a removed pod that came back at the next start.
    let _pod = daemon.locks.lock(id).await;
    // Removed meanwhile (or before): no record is left to update.
    if daemon.removed_pods.forget(id) || !daemon.sandboxes.contains(id) {
        tracing::debug!(pod = %id, elapsed = ?started.elapsed(), "removed pod's network released");
        return Ok(());
    }
    let updated = daemon.sandboxes.update(id, |s| {
        s.network_release_pending = false;
        // Nothing to release any more: a second stop has no DEL to run.
        s.netns_path = None;
        s.ipc_path = None;
        s.uts_path = None;
        s.userns_path = None;
        s.clone()
    })?;
    daemon.save_sandbox(&updated)?;
    tracing::debug!(pod = %id, elapsed = ?started.elapsed(), "pod network released");
    Ok(())
}

/// Every pin name pod `id` may have: network, IPC, UTS and user.
pub fn pin_names(id: &str) -> [String; 4] {
    [
        id.to_string(),
        netns::PinnedKind::Ipc.pin_name(id),
        uts_pin_name(id),
        netns::user_pin_name(id),
    ]
}

fn uts_pin_name(id: &str) -> String {
    netns::PinnedKind::Uts {
        hostname: String::new(),
    }
    .pin_name(id)
}

#[cfg(test)]
mod verb_tests {
    use crate::testing::{exit, networked_pod, Doubles};
    use std::sync::Arc;
    use std::time::Duration;

    /// Doubles for stopping a networked pod whose infra container is
    /// running: it is killed and reaped.
    fn stoppable() -> Doubles {
        let mut d = Doubles::new();
        d.monitors.expect_kill().returning(|_, _, _, _| Ok(true));
        d.monitors.expect_wait().returning(|_, _| Ok(exit(137)));
        d
    }

    /// Makes the pod's one CNI DEL hold until the returned sender is used,
    /// so that a test can act while the release is in flight; the removal's
    /// runtime and image calls succeed.
    fn hold_the_del(d: &mut Doubles) -> std::sync::mpsc::Sender<()> {
        let (go, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Mutex::new(held);
        d.network.expect_teardown().times(1).returning(move |_| {
            tokio::task::block_in_place(|| held.lock().unwrap().recv().unwrap());
            Ok(())
        });
        d.runc.expect_delete().returning(|_, _| Ok(()));
        d.images.expect_remove_rootfs().returning(|_| Ok(()));
        go
    }

    /// Waits (at most 5 s) until the pod's release is no longer pending,
    /// in memory and on disk: the release updates memory, then saves.
    async fn released(daemon: &crate::daemon::Daemon, id: &str) -> sandbox_core::Sandbox {
        for _ in 0..500 {
            let pod = daemon.sandboxes.get(id).unwrap();
            let records: Vec<sandbox_core::Sandbox> = daemon.sandbox_records.load_all();
            let saved = records
                .iter()
                .any(|s| s.id == id && !s.network_release_pending);
            if !pod.network_release_pending && saved {
                return (*pod).clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the release never ran");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_stop_records_the_release_and_a_task_runs_the_del_once() {
        let mut d = stoppable();
        d.network.expect_teardown().times(1).returning(|_| Ok(()));
        let t = d.build().await;
        let id = networked_pod(&t.daemon, "web");
        crate::pod::stop::stop(&t.daemon, &id).await.unwrap();
        let pod = released(&t.daemon, &id).await;
        assert!(pod.is_stopped());
        assert_eq!(pod.netns_path, None, "nothing left to release");
        assert!(t.daemon.pins.list().unwrap().is_empty());
        // Stopping again has no DEL to run (teardown is expected once).
        crate::pod::stop::stop(&t.daemon, &id).await.unwrap();
        assert!(!t.daemon.sandboxes.get(&id).unwrap().network_release_pending);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_release_stays_recorded_and_removal_runs_it_again() {
        let mut d = stoppable();
        let mut calls = 0;
        d.network.expect_teardown().times(2).returning(move |_| {
            calls += 1;
            if calls == 1 {
                Err(cni::Error::NotReady(cni::NotReadyReason {
                    reason: "Test".into(),
                    message: "a plugin failed".into(),
                }))
            } else {
                Ok(())
            }
        });
        d.runc.expect_delete().returning(|_, _| Ok(()));
        d.images.expect_remove_rootfs().returning(|_| Ok(()));
        let t = d.build().await;
        let id = networked_pod(&t.daemon, "web");
        crate::pod::stop::stop(&t.daemon, &id).await.unwrap();
        // The failed task leaves the flag, on disk too.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let on_disk: Vec<sandbox_core::Sandbox> = t.daemon.sandbox_records.load_all();
        assert!(on_disk[0].network_release_pending);
        crate::pod::remove::remove(&t.daemon, &id).await.unwrap();
        crate::testing::removals_released(&t.daemon).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removal_does_not_wait_for_the_release_which_finishes_from_removed_pods() {
        let mut d = stoppable();
        let go = hold_the_del(&mut d);
        let t = d.build().await;
        let id = networked_pod(&t.daemon, "web");

        crate::pod::remove::remove(&t.daemon, &id).await.unwrap();

        // Gone for every caller, record and all, while its DEL still runs.
        assert!(t.daemon.sandboxes.get(&id).is_err());
        assert!(t
            .daemon
            .sandbox_records
            .load_all::<sandbox_core::Sandbox>()
            .is_empty());
        let held = t
            .daemon
            .removed_pods
            .get(&id)
            .expect("held for its release");
        assert!(held.network_release_pending);
        assert!(!t.daemon.pins.list().unwrap().is_empty(), "pins still held");
        go.send(()).unwrap();
        crate::testing::removals_released(&t.daemon).await;
    }

    /// The release records itself done under the pod's lock, which a
    /// removal holds from reading the flag to deleting the record: a
    /// removal in between handed a pending release on (a second DEL), or
    /// deleted the record that the release then saved back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_release_records_its_end_under_the_pods_lock() {
        let mut d = stoppable();
        let go = hold_the_del(&mut d);
        let t = d.build().await;
        let id = networked_pod(&t.daemon, "web");
        crate::pod::stop::stop(&t.daemon, &id).await.unwrap();
        let pod_lock = t.daemon.locks.lock(&id).await;
        go.send(()).unwrap();
        for _ in 0..500 {
            if t.daemon.pins.list().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(t.daemon.pins.list().unwrap().is_empty(), "the DEL ran");
        let pod = t.daemon.sandboxes.get(&id).unwrap();
        assert!(
            pod.network_release_pending,
            "recorded without the pod's lock"
        );

        let removing = {
            let (daemon, id) = (Arc::clone(&t.daemon), id.clone());
            tokio::spawn(async move { crate::pod::remove::remove(&daemon, &id).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(pod_lock);
        removing.await.unwrap().unwrap();
        crate::testing::removals_released(&t.daemon).await;
        let on_disk: Vec<sandbox_core::Sandbox> = t.daemon.sandbox_records.load_all();
        assert!(on_disk.is_empty(), "{on_disk:?}");
    }

    /// DELs that hold until their gate opens, counted while they run.
    struct HeldDels {
        running: Arc<std::sync::atomic::AtomicUsize>,
        most: Arc<std::sync::atomic::AtomicUsize>,
        gate: Gate,
    }

    impl HeldDels {
        /// Expects one DEL for each of pods `web0`..`web{pods - 1}`.
        fn expect(d: &mut Doubles, pods: usize) -> HeldDels {
            use std::sync::atomic::Ordering::SeqCst;
            let held = HeldDels {
                running: Default::default(),
                most: Default::default(),
                gate: Gate::default(),
            };
            // One expectation per pod: mockall runs one expectation's
            // answers one at a time, and concurrent calls may pick the same
            // unsaturated expectation unless each matches only its own pod.
            for i in 0..pods {
                let (r, m, g) = (held.running.clone(), held.most.clone(), held.gate.clone());
                let name = format!("web{i}");
                let own = move |r: &cni::PodNetworkRequest| r.pod_name == name;
                d.network
                    .expect_teardown()
                    .withf(own)
                    .times(1)
                    .returning(move |_| {
                        m.fetch_max(r.fetch_add(1, SeqCst) + 1, SeqCst);
                        // Off the worker, whose queued tasks go on meanwhile.
                        tokio::task::block_in_place(|| g.wait());
                        r.fetch_sub(1, SeqCst);
                        Ok(())
                    });
            }
            held
        }

        fn running(&self) -> usize {
            self.running.load(std::sync::atomic::Ordering::SeqCst)
        }

        /// Waits (at most 5 s) for `n` DELs to be running.
        async fn until_running(&self, n: usize) {
            for _ in 0..500 {
                if self.running() == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Pods `web0`..`web{n - 1}`, networked, stopped.
    async fn stopped_pods(daemon: &Arc<crate::daemon::Daemon>, n: usize) -> Vec<String> {
        let pods: Vec<String> = (0..n)
            .map(|i| networked_pod(daemon, &format!("web{i}")))
            .collect();
        for id in &pods {
            crate::pod::stop::stop(daemon, id).await.unwrap();
        }
        pods
    }

    /// However many pods stop at once, no more than `parallel_releases`
    /// DELs run at a time, and the others run when turns free up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_releases_take_turns() {
        let slots = crate::daemon::parallel_releases();
        let mut d = stoppable();
        let held = HeldDels::expect(&mut d, slots + 3);
        let t = d.build().await;
        // Opened however the test ends, so that no held DEL outlives it.
        let _open_at_end = held.gate.clone();
        let pods = stopped_pods(&t.daemon, slots + 3).await;
        held.until_running(slots).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(held.running(), slots, "every turn taken, no more");
        held.gate.open();
        for id in &pods {
            released(&t.daemon, id).await;
        }
        assert_eq!(held.most.load(std::sync::atomic::Ordering::SeqCst), slots);
    }

    /// While a pod call is in flight, background DELs run one at a time;
    /// once it has ended (and a quiet moment passed) every turn is open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_releases_run_one_at_a_time_beside_pod_calls() {
        let slots = crate::daemon::parallel_releases();
        let mut d = stoppable();
        let held = HeldDels::expect(&mut d, slots + 1);
        let t = d.build().await;
        let _open_at_end = held.gate.clone();
        let call = t.daemon.pod_calls.enter();
        let pods = stopped_pods(&t.daemon, slots + 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(held.running(), 1, "one DEL beside the call");
        drop(call);
        held.until_running(slots).await;
        assert_eq!(held.running(), slots, "every turn open once quiet");
        held.gate.open();
        for id in &pods {
            released(&t.daemon, id).await;
        }
    }

    /// Holds DELs until opened (or dropped: the last clone opens it).
    #[derive(Clone, Default)]
    struct Gate(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

    impl Gate {
        fn wait(&self) {
            let (open, opened) = &*self.0;
            let guard = open.lock().unwrap_or_else(|e| e.into_inner());
            drop(opened.wait_while(guard, |open| !*open));
        }

        fn open(&self) {
            let (open, opened) = &*self.0;
            *open.lock().unwrap_or_else(|e| e.into_inner()) = true;
            opened.notify_all();
        }
    }

    impl Drop for Gate {
        fn drop(&mut self) {
            self.open();
        }
    }

    /// A new pod publishing a stopped pod's host port has the old pod's
    /// release run first, before its RunPodSandbox goes on.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_new_pods_host_port_releases_the_stopped_holder_first() {
        let mut d = Doubles::new();
        d.network
            .expect_teardown()
            .withf(|r| r.pod_name == "old")
            .times(1)
            .returning(|_| Ok(()));
        let t = d.build().await;
        let port = |s: &mut sandbox_core::Sandbox| {
            s.port_mappings = vec![sandbox_core::PortMapping {
                protocol: sandbox_core::Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
            }];
        };
        let old = networked_pod(&t.daemon, "old");
        // Stopped with its release pending, and no task to run it.
        let old_pod = t
            .daemon
            .sandboxes
            .update(&old, |s| {
                port(s);
                s.state = sandbox_core::SandboxState::NotReady;
                s.network_release_pending = true;
                s.clone()
            })
            .unwrap();
        let mut new_pod = old_pod.clone();
        new_pod.id = "new".into();

        super::release_conflicting(&t.daemon, &new_pod).await;

        let old_pod = t.daemon.sandboxes.get(&old).unwrap();
        assert!(!old_pod.network_release_pending);
        assert_eq!(old_pod.netns_path, None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn removal_deletes_the_stopped_containers_beside_the_release() {
        let mut d = stoppable();
        d.network.expect_teardown().times(1).returning(|_| Ok(()));
        d.images.expect_remove_rootfs().returning(|_| Ok(()));
        let deleted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = std::sync::Arc::clone(&deleted);
        d.runc.expect_delete().returning(move |id, _| {
            seen.lock().unwrap().push(id.to_string());
            Ok(())
        });
        let app_deleted = |app: &str| deleted.lock().unwrap().iter().filter(|d| *d == app).count();
        let t = d.build().await;
        let id = networked_pod(&t.daemon, "web");
        let app = crate::testing::running_container(&t.daemon, &id, "app");
        crate::pod::stop::stop(&t.daemon, &id).await.unwrap();
        // The stop recorded the exit and left the runtime's state.
        let stopped = t.daemon.containers.get(&app).unwrap();
        assert_eq!(stopped.state, sandbox_core::ContainerState::Exited);
        assert!(!stopped.runtime_deleted);
        assert_eq!(app_deleted(&app), 0);
        crate::pod::remove::remove(&t.daemon, &id).await.unwrap();
        assert_eq!(app_deleted(&app), 1);
        assert!(t.daemon.containers.get(&app).is_err());
        assert!(t.daemon.sandboxes.get(&id).is_err());
        // The release finishes in a task of its own (RemovePodSandbox does
        // not wait for it).
        crate::testing::removals_released(&t.daemon).await;
    }
}
