//! Pods and containers the daemon began to make but never recorded.
//!
//! A record is saved when RunPodSandbox or CreateContainer succeeds, after the
//! runtime has made the container. A daemon killed in between leaves a state
//! directory, perhaps a live monitor and a created container, a mounted root
//! filesystem and (for a pod) a CNI attachment, all of which no record
//! claims. Kubelet never got an id for them, so it will never remove them:
//! [`sweep`] does, at start-up, before the stale pins go. A record set aside
//! as unreadable leaves its pod or container unclaimed in the same way, and
//! it goes too: nothing the daemon cannot list keeps running.

use crate::daemon::Daemon;
use crate::layout::Layout;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// What [`sweep`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Ids of half-made pods removed.
    pub pods: Vec<String>,
    /// Ids of half-made containers removed.
    pub containers: Vec<String>,
    /// Ids of CNI attachments removed that no pod (and no directory) claimed.
    pub attachments: Vec<String>,
    /// Ids of root filesystems removed that no pod or container claimed.
    pub root_filesystems: Vec<String>,
}

/// Removes every pod and container directory under `state` that no record
/// names (`pods` and `containers` are the recorded ids), with whatever was
/// made for it.
pub async fn sweep(
    daemon: &Arc<Daemon>,
    pods: &HashSet<String>,
    containers: &HashSet<String>,
) -> Swept {
    let mut swept = Swept::default();
    for id in unclaimed(&daemon.layout.container_dir(""), containers) {
        remove_container(daemon, &id, &daemon.layout.container_dir(&id)).await;
        swept.containers.push(id);
    }
    for id in unclaimed(&daemon.layout.sandbox_dir(""), pods) {
        remove_container(daemon, &id, &daemon.layout.sandbox_dir(&id)).await;
        // The attachment recorded at ADD says what DEL must undo.
        let request = cni::PodNetworkRequest::new(&id, "");
        if let Err(e) = daemon.network.teardown(&request).await {
            tracing::warn!(pod = %id, error = %e, "half-made pod: CNI DEL failed");
        }
        swept.pods.push(id);
    }
    swept.attachments = unclaimed_attachments(daemon, pods, &swept.pods).await;
    swept.root_filesystems = unclaimed_root_filesystems(daemon, pods, containers).await;
    swept
}

/// Tears down the CNI attachments no pod claims: gVisor pods and pods with
/// `net.*` sysctls attach before their directory exists.
async fn unclaimed_attachments(
    daemon: &Daemon,
    pods: &HashSet<String>,
    already: &[String],
) -> Vec<String> {
    let mut swept = Vec::new();
    match daemon.network.attached().await {
        Ok(attached) => {
            for id in attached.into_iter().filter(|id| !pods.contains(id)) {
                if already.contains(&id) {
                    continue;
                }
                tracing::warn!(pod = %id, "removing a CNI attachment no record claims");
                let request = cni::PodNetworkRequest::new(&id, "");
                if let Err(e) = daemon.network.teardown(&request).await {
                    tracing::warn!(pod = %id, error = %e, "unclaimed attachment: CNI DEL failed");
                }
                swept.push(id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list CNI attachments"),
    }
    swept
}

/// Removes the root filesystems no pod or container claims: a daemon
/// killed between mounting one and making its container's directory leaves
/// one that no directory names either.
async fn unclaimed_root_filesystems(
    daemon: &Daemon,
    pods: &HashSet<String>,
    containers: &HashSet<String>,
) -> Vec<String> {
    let ids = match daemon.images.root_filesystems().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list root filesystems");
            return Vec::new();
        }
    };
    let mut swept = Vec::new();
    for id in ids {
        if pods.contains(&id) || containers.contains(&id) {
            continue;
        }
        tracing::warn!(id, "removing a root filesystem no record claims");
        match daemon.images.remove_rootfs(&id).await {
            Ok(()) => swept.push(id),
            Err(e) => tracing::warn!(id, error = %e, "unclaimed root filesystem"),
        }
    }
    swept
}

/// Directory names under `dir` that `claimed` does not hold.
fn unclaimed(dir: &Path, claimed: &HashSet<String>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| !claimed.contains(id))
        .collect();
    ids.sort();
    ids
}

/// Stops the monitor (so it cannot write into the directory as it goes),
/// deletes the container from every handler, unmounts its root filesystem
/// and removes its directory.
async fn remove_container(daemon: &Arc<Daemon>, id: &str, dir: &Path) {
    tracing::warn!(id, dir = %dir.display(), "removing a half-made container no record claims");
    if let Some(pid) = oci_shim::monitor::retire::running_monitor(id, &Layout::monitor(dir)) {
        // SAFETY: plain syscall; the pid was checked to be this id's monitor.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // Which handler made it is in no record: ask each (an unknown id is a
    // quick "does not exist").
    for (_, runtime) in daemon.runtimes() {
        let _ = runtime.delete(id, true).await;
    }
    // A runtime killed inside `create` has no state to delete from, but may
    // have made the cgroup (with its init still in it).
    remove_leftover_cgroup(id, dir).await;
    crate::container::userns_root::release(dir).await;
    if let Err(e) = daemon.images.remove_rootfs(id).await {
        tracing::warn!(id, error = %e, "half-made container: root filesystem");
    }
    if let Err(e) = tokio::fs::remove_dir_all(dir).await {
        tracing::warn!(id, error = %e, "half-made container: directory");
    }
}

/// Removes the cgroup the bundle in `dir` gave container (or pod) `id`, if
/// its runtime left it, killing what is left in it. Besides half-made
/// containers, gVisor's: runsc (2022-12) now and then leaves a container's
/// cgroup when `runsc delete` removes it while the container's last
/// processes are still leaving it (the chaos test and crictl runs by hand
/// both found some; never on runc).
pub async fn remove_leftover_cgroup(id: &str, dir: &Path) {
    let Some(path) = cgroup_of(id, dir) else {
        return;
    };
    let removed = tokio::task::spawn_blocking(move || {
        let result = cgroups::Hierarchy::detect().remove(&path);
        (path, result)
    })
    .await;
    match removed {
        Ok((path, Ok(true))) => {
            tracing::info!(id, cgroup = %path, "removed a cgroup its runtime left")
        }
        Ok((path, Err(e))) => {
            tracing::warn!(id, cgroup = %path, error = %e, "removing a cgroup its runtime left")
        }
        _ => {}
    }
}

/// The cgroup (below each hierarchy's root) that the bundle in `dir` gave
/// container `id`, if it names one that is `id`'s own: the bundle is read
/// from disk, and a path that is not the container's must never be killed.
fn cgroup_of(id: &str, dir: &Path) -> Option<String> {
    let bytes = std::fs::read(Layout::bundle(dir).join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let runtime_path = spec.pointer("/linux/cgroupsPath")?.as_str()?;
    let path = cgroups::CgroupDriver::fs_path_of(runtime_path).ok()?;
    let own = Path::new(&path)
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name == id || name == format!("{}-{id}.scope", cgroups::SCOPE_PREFIX));
    own.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn an_attachment_no_pod_claims_is_torn_down_and_a_claimed_one_kept() {
        let mut d = crate::testing::Doubles::new();
        d.images
            .expect_root_filesystems()
            .returning(|| Ok(Vec::new()));
        d.network
            .expect_attached()
            .times(1)
            .returning(|| Ok(vec!["ghost".into(), "kept".into()]));
        d.network
            .expect_teardown()
            .withf(|r| r.container_id == "ghost")
            .times(1)
            .returning(|_| Ok(()));
        let t = d.build().await;
        let pods: HashSet<String> = ["kept".to_string()].into();
        let swept = sweep(&t.daemon, &pods, &HashSet::new()).await;
        assert_eq!(swept.attachments, ["ghost"]);
        assert!(swept.pods.is_empty() && swept.containers.is_empty());
    }

    #[test]
    fn only_a_cgroup_named_for_the_container_is_taken_from_its_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Layout::bundle(dir.path());
        std::fs::create_dir_all(&bundle).unwrap();
        let with = |path: &str| {
            let spec = serde_json::json!({"linux": {"cgroupsPath": path}});
            std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
            cgroup_of("c1", dir.path())
        };
        assert_eq!(
            with("/kubepods/pod1/c1").as_deref(),
            Some("/kubepods/pod1/c1")
        );
        assert_eq!(
            with("kubepods-pod1.slice:cri-server:c1").as_deref(),
            Some("/kubepods.slice/kubepods-pod1.slice/cri-server-c1.scope")
        );
        for foreign in [
            "/kubepods/pod1",
            "/kubepods/c1/..",
            "/",
            "relative/c1",
            "/x/c2",
        ] {
            assert_eq!(with(foreign), None, "{foreign}");
        }
        std::fs::write(bundle.join("config.json"), "not json").unwrap();
        assert_eq!(cgroup_of("c1", dir.path()), None);
        assert_eq!(cgroup_of("c1", &dir.path().join("missing")), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_root_filesystem_no_record_claims_is_removed() {
        let mut d = crate::testing::Doubles::new();
        d.network.expect_attached().returning(|| Ok(Vec::new()));
        d.images
            .expect_root_filesystems()
            .times(1)
            .returning(|| Ok(vec!["ctr".into(), "ghost".into(), "pod".into()]));
        d.images
            .expect_remove_rootfs()
            .withf(|id| id == "ghost")
            .times(1)
            .returning(|_| Ok(()));
        let t = d.build().await;
        let pods: HashSet<String> = ["pod".to_string()].into();
        let containers: HashSet<String> = ["ctr".to_string()].into();
        let swept = sweep(&t.daemon, &pods, &containers).await;
        assert_eq!(swept.root_filesystems, ["ghost"]);
    }

    #[test]
    fn unclaimed_lists_only_directories_without_a_record() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["a", "b", "c"] {
            std::fs::create_dir(dir.path().join(id)).unwrap();
        }
        std::fs::write(dir.path().join("stray-file"), "").unwrap();
        let claimed: HashSet<String> = ["b".to_string()].into();
        assert_eq!(unclaimed(dir.path(), &claimed), ["a", "c"]);
        assert!(unclaimed(&dir.path().join("missing"), &claimed).is_empty());
    }
}
