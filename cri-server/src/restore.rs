//! Bringing back what was recorded after a restart: names reserved again,
//! network namespaces reopened, monitors reconnected, and exits that
//! happened while the daemon was away recorded with their real codes.

use crate::daemon::Daemon;
use crate::layout::Layout;
use oci_shim::monitor::protocol::ExitRecord;
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
    match daemon.sandboxes.add(sandbox) {
        Ok(_) => true,
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
    if matches!(
        container.state,
        ContainerState::Running | ContainerState::Created
    ) {
        let dir = daemon.layout.container_dir(&container.id);
        match exited(daemon, &container, &dir).await {
            Some(exit) => {
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
            None => {}
        }
    }
    let _ = daemon
        .container_names
        .reserve(&container.name, &container.id);
    let _ = daemon.save_container(&container);
    daemon.containers.add(container).is_ok()
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
