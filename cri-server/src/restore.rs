//! Bringing back what was recorded after a restart: names reserved again,
//! network namespaces reopened, monitors reconnected, and exits that
//! happened while the daemon was away recorded with their real codes.

use crate::daemon::Daemon;
use crate::layout::Layout;
use oci_shim::monitor::protocol::ExitRecord;
use oci_shim::runtime::ContainerStatus;
use sandbox_core::{Container, ContainerState, Sandbox, SandboxState};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Restores every recorded pod and container, then sweeps what a crash left
/// half-made and the pins no record claims.
pub async fn restore(daemon: &Arc<Daemon>) {
    let sandboxes: Vec<Sandbox> = daemon.sandbox_records.load_all();
    let containers: Vec<Container> = daemon.container_records.load_all();
    let recorded_pods: HashSet<String> = sandboxes.iter().map(|s| s.id.clone()).collect();
    let recorded_containers: HashSet<String> = containers.iter().map(|c| c.id.clone()).collect();
    // Staging mounts are needed only during a CreateContainer, and no call
    // runs yet: release any a crash left before anything removes files.
    crate::container::userns_volumes::release_all(daemon.layout.staged_volumes_root()).await;
    crate::discard::sweep(&daemon.layout);
    let mut kept_pins = Vec::new();
    let mut restored_pods = 0;
    for sandbox in sandboxes {
        if restore_pod(daemon, sandbox, &mut kept_pins).await {
            restored_pods += 1;
        }
    }
    let mut restored_containers = 0;
    for container in containers {
        if restore_container(daemon, container).await {
            restored_containers += 1;
        }
    }
    // Before the pins go: a half-made pod's CNI DEL runs in its namespace.
    let half_made = crate::orphans::sweep(daemon, &recorded_pods, &recorded_containers).await;
    // Pins no record claims belong to pods that died half-made.
    let report = daemon
        .pins
        .cleanup_stale(|name| kept_pins.iter().any(|k| k == name));
    tracing::info!(
        pods = restored_pods,
        containers = restored_containers,
        stale_pins = ?report,
        half_made_pods = ?half_made.pods,
        half_made_containers = ?half_made.containers,
        unclaimed_attachments = ?half_made.attachments,
        unclaimed_root_filesystems = ?half_made.root_filesystems,
        "state restored"
    );
}

/// Restores one pod; `false` when its record duplicates another's.
async fn restore_pod(
    daemon: &Arc<Daemon>,
    mut sandbox: Sandbox,
    kept_pins: &mut Vec<String>,
) -> bool {
    if let Some(path) = sandbox.netns_path.clone() {
        match netns::NetNs::open(&path) {
            Ok(_) => kept_pins.push(sandbox.id.clone()),
            Err(e) if sandbox.state == SandboxState::Ready => {
                tracing::warn!(pod = %sandbox.id, error = %e, "network namespace lost");
            }
            Err(_) => {}
        }
    }
    let others = [&sandbox.ipc_path, &sandbox.uts_path, &sandbox.userns_path];
    for path in others.into_iter().flatten() {
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            kept_pins.push(name.to_string());
        }
    }
    if let Some(infra) = sandbox.infra_container.clone() {
        let dir = daemon.layout.sandbox_dir(&sandbox.id);
        match exited(daemon, &infra, &dir).await {
            Some(exit) if sandbox.state == SandboxState::Ready => {
                tracing::info!(pod = %sandbox.id, code = exit.exit_code, "infra container exited while the daemon was away");
                sandbox.mark_stopped(exit.finished_at_unix_nanos as i64);
            }
            None if sandbox.state == SandboxState::Ready => {
                crate::watch::watch_infra(daemon, &sandbox.id);
            }
            _ => {}
        }
    }
    if let Err(e) = daemon.pod_names.reserve(&sandbox.name, &sandbox.id) {
        tracing::error!(pod = %sandbox.id, error = %e, "pod name taken twice on disk");
    }
    let _ = daemon.save_sandbox(&sandbox);
    let (id, release) = (sandbox.id.clone(), sandbox.network_release_pending);
    match daemon.sandboxes.add(sandbox) {
        Ok(_) => {
            // A stop whose network release did not finish before the
            // daemon went away.
            if release {
                crate::pod::release::release_later(daemon, &id);
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "duplicate pod record");
            false
        }
    }
}

/// Restores one container; `false` when its record duplicates another's.
async fn restore_container(daemon: &Arc<Daemon>, mut container: Container) -> bool {
    if !daemon.sandboxes.contains(&container.sandbox_id) {
        tracing::warn!(container = %container.id, pod = %container.sandbox_id, "container of an unknown pod kept for removal");
    }
    let mut exited_while_away = false;
    if matches!(
        container.state,
        ContainerState::Running | ContainerState::Created
    ) {
        let dir = daemon.layout.container_dir(&container.id);
        match exited(daemon, &container, &dir).await {
            Some(exit) => {
                exited_while_away = true;
                let _ = container.mark_exited(
                    exit.finished_at_unix_nanos as i64,
                    exit.exit_code,
                    crate::container::exit_reason(exit.exit_code, false),
                    String::new(),
                );
            }
            None if container.state == ContainerState::Running => {
                crate::watch::watch_container(daemon, &container.id);
            }
            None => {
                if started_meanwhile(daemon, &mut container).await {
                    crate::watch::watch_container(daemon, &container.id);
                }
            }
        }
    }
    let _ = daemon
        .container_names
        .reserve(&container.name, &container.id);
    let _ = daemon.save_container(&container);
    let id = container.id.clone();
    let added = daemon.containers.add(container).is_ok();
    if added && exited_while_away {
        // As when the watcher sees an exit: see delete_exited_from_gvisor.
        let daemon = Arc::clone(daemon);
        tokio::spawn(
            async move { crate::container::delete_exited_from_gvisor(&daemon, &id).await },
        );
    }
    added
}

/// Whether created `container` was started after all: a daemon killed
/// inside StartContainer, after the runtime's `start` and before the record
/// said so, comes back with a record that says "created" for a container
/// that runs. The runtime's word wins, or the container could never be
/// started, stopped cleanly or exec'd into again. Marks it running if so.
async fn started_meanwhile(daemon: &Daemon, container: &mut Container) -> bool {
    let Ok(runtime) = daemon.runtime(&container.runtime_handler) else {
        return false;
    };
    let state = match runtime.state(&container.id).await {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(container = %container.id, error = %e, "created container: runtime state unknown");
            return false;
        }
    };
    if !matches!(
        state.status,
        ContainerStatus::Running | ContainerStatus::Paused
    ) {
        return false;
    }
    let pid = container.pid.unwrap_or(state.pid);
    if container
        .mark_started(sandbox_core::timestamp::now(), pid)
        .is_err()
    {
        return false;
    }
    tracing::info!(container = %container.id, "started while the daemon was away");
    true
}

/// How `container` ended while the daemon was away: `None` while it runs.
/// A monitor that is gone without a record (the machine rebooted) counts as
/// an exit with code 255.
async fn exited(daemon: &Daemon, container: &Container, dir: &Path) -> Option<ExitRecord> {
    match daemon
        .monitors
        .exited(&container.id, &Layout::monitor(dir))
        .await
    {
        Ok(exit) => exit,
        Err(e) => {
            tracing::warn!(container = %container.id, error = %e, "monitor gone without an exit record");
            Some(ExitRecord {
                exit_code: 255,
                signal: 0,
                finished_at_unix_nanos: sandbox_core::timestamp::now() as u64,
            })
        }
    }
}

#[cfg(test)]
mod verb_tests {
    use super::*;
    use crate::testing::{ready_pod, Doubles};
    use oci_shim::runtime::ContainerState as RuntimeState;

    /// A record saying "created" for container `name` of a new pod, as a
    /// daemon killed inside StartContainer leaves it.
    fn created_record(daemon: &Daemon, name: &str) -> String {
        let pod = ready_pod(daemon, "p");
        let sandbox = daemon.sandboxes.get(&pod).unwrap();
        let id = sandbox_core::id::generate().unwrap();
        let mut container = Container::new(
            id.clone(),
            &sandbox,
            sandbox_core::ContainerMetadata::new(name, 0),
        );
        container.runtime_handler = "runc".into();
        container.pid = Some(4242);
        daemon.save_container(&container).unwrap();
        id
    }

    fn runtime_says(status: ContainerStatus) -> RuntimeState {
        serde_json::from_value(serde_json::json!({
            "id": "c", "pid": 4242, "status": status, "bundle": "/b"
        }))
        .unwrap()
    }

    fn recorded_state(daemon: &Daemon, id: &str) -> ContainerState {
        let records: Vec<Container> = daemon.container_records.load_all();
        records.into_iter().find(|c| c.id == id).unwrap().state
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_container_the_runtime_started_while_the_daemon_was_away_comes_back_running() {
        let mut d = Doubles::new();
        d.monitors.expect_exited().returning(|_, _| Ok(None));
        d.runc
            .expect_state()
            .times(1)
            .returning(|_| Ok(runtime_says(ContainerStatus::Running)));
        // The watcher follows it from now on.
        d.monitors.expect_wait().returning(|id, _| {
            Err(oci_shim::Error::Monitor {
                id: id.into(),
                reason: "test: gone".into(),
            })
        });
        d.network.expect_attached().returning(|| Ok(Vec::new()));
        d.images
            .expect_root_filesystems()
            .returning(|| Ok(Vec::new()));
        let t = d.build().await;
        let id = created_record(&t.daemon, "started");

        restore(&t.daemon).await;

        assert_eq!(recorded_state(&t.daemon, &id), ContainerState::Running);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_container_the_runtime_holds_created_stays_created() {
        let mut d = Doubles::new();
        d.monitors.expect_exited().returning(|_, _| Ok(None));
        d.runc
            .expect_state()
            .times(1)
            .returning(|_| Ok(runtime_says(ContainerStatus::Created)));
        d.monitors.expect_wait().times(0);
        d.network.expect_attached().returning(|| Ok(Vec::new()));
        d.images
            .expect_root_filesystems()
            .returning(|| Ok(Vec::new()));
        let t = d.build().await;
        let id = created_record(&t.daemon, "created");

        restore(&t.daemon).await;

        assert_eq!(recorded_state(&t.daemon, &id), ContainerState::Created);
        assert_eq!(
            t.daemon.containers.get(&id).unwrap().state,
            ContainerState::Created
        );
    }
}
