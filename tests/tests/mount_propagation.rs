//! critest "Container Mount Propagation": a host path volume with
//! `rprivate` sees no later host mounts, `rslave` sees them, and `rshared`
//! also sends the container's mounts back to the host. `rprivate` and
//! `rslave` hold on gVisor too: its gofer reads the volume through a mount
//! that propagates as asked. `rshared` cannot (mounts made inside gVisor
//! stay in its sandbox, and runsc refuses the `rshared` root it needs): it
//! is refused there at CreateContainer.

use cri_api::v1 as cri;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};
use tests::daemon::Daemon;
use tests::fixtures::{container_config, image_spec, pod_config, BUSYBOX, HANDLERS};

/// A host directory under /tmp whose mounts (ours, the daemon's shared
/// bind, the container's) are all detached when the test ends, even on
/// panic.
struct HostDir {
    dir: tempfile::TempDir,
}

impl HostDir {
    fn new() -> HostDir {
        HostDir {
            dir: tempfile::Builder::new()
                .prefix("propagation-")
                .tempdir_in("/tmp")
                .unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn mount_tmpfs(&self, name: &str) {
        let target = self.path().join(name);
        std::fs::create_dir_all(&target).unwrap();
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::write(target.join("marker"), "from host").unwrap();
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let root = self.path();
        // Innermost first; several layers may stack on the same point.
        for _ in 0..8 {
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mut points: Vec<PathBuf> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .map(PathBuf::from)
                .filter(|p| p.starts_with(&root))
                .collect();
            if points.is_empty() {
                break;
            }
            points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
            for p in points {
                let _ = umount2(&p, MntFlags::MNT_DETACH);
            }
        }
    }
}

fn mounted_on_host(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*path.to_string_lossy()))
}

async fn run_with_volume(
    daemon: &Daemon,
    name: &str,
    host: &Path,
    propagation: cri::MountPropagation,
) -> (String, String) {
    run_with_volume_on(daemon, "runc", name, host, propagation).await
}

async fn run_with_volume_on(
    daemon: &Daemon,
    handler: &str,
    name: &str,
    host: &Path,
    propagation: cri::MountPropagation,
) -> (String, String) {
    let mut rt = daemon.runtime().await;
    let mut pod = pod_config(name);
    pod.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod),
            runtime_handler: handler.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", daemon.log()))
        .into_inner()
        .pod_sandbox_id;
    let mut config = container_config(name, BUSYBOX, &["sleep", "3600"]);
    config.mounts = vec![cri::Mount {
        container_path: "/mnt/vol".into(),
        host_path: host.to_string_lossy().into_owned(),
        propagation: propagation as i32,
        ..Default::default()
    }];
    // Mounting inside the container needs privilege, as in critest.
    config.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", daemon.log()))
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    (pod, id)
}

async fn exec(daemon: &Daemon, id: &str, cmd: &[&str]) -> (i32, String) {
    let out = daemon
        .runtime()
        .await
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    (
        out.exit_code,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn remove_pod(daemon: &Daemon, pod: String) {
    daemon
        .runtime()
        .await
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
}

async fn daemon() -> Daemon {
    let daemon = Daemon::start("").await;
    daemon
        .images()
        .await
        .pull_image(cri::PullImageRequest {
            image: image_spec(BUSYBOX),
            ..Default::default()
        })
        .await
        .expect("pull busybox (is `cargo xtask fixtures` up?)");
    daemon
}

/// Whether a host mount made after the container started is seen inside,
/// on `handler`.
async fn host_mount_seen_inside(handler: &str, propagation: cri::MountPropagation) -> bool {
    let daemon = daemon().await;
    let host = HostDir::new();
    let (pod, id) = run_with_volume_on(&daemon, handler, "h2c", &host.path(), propagation).await;
    host.mount_tmpfs("late");
    let (code, _) = exec(&daemon, &id, &["cat", "/mnt/vol/late/marker"]).await;
    remove_pod(&daemon, pod).await;
    code == 0
}

#[tokio::test]
async fn rprivate_does_not_propagate() {
    for handler in HANDLERS {
        let seen = host_mount_seen_inside(handler, cri::MountPropagation::PropagationPrivate).await;
        assert!(!seen, "{handler}");
    }
}

#[tokio::test]
async fn rslave_propagates_from_host_to_container() {
    for handler in HANDLERS {
        let seen =
            host_mount_seen_inside(handler, cri::MountPropagation::PropagationHostToContainer)
                .await;
        assert!(seen, "{handler}");
    }
}

#[tokio::test]
async fn rshared_propagates_both_ways() {
    let daemon = daemon().await;
    let host = HostDir::new();
    let (pod, id) = run_with_volume(
        &daemon,
        "both",
        &host.path(),
        cri::MountPropagation::PropagationBidirectional,
    )
    .await;
    host.mount_tmpfs("late");
    let (code, out) = exec(&daemon, &id, &["cat", "/mnt/vol/late/marker"]).await;
    assert_eq!(code, 0, "host → container: {out}");
    let (code, out) = exec(
        &daemon,
        &id,
        &[
            "sh",
            "-c",
            "mkdir -p /mnt/vol/inner && mount -t tmpfs tmpfs /mnt/vol/inner && echo back > /mnt/vol/inner/file",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let inner = host.path().join("inner");
    assert!(
        mounted_on_host(&inner),
        "container → host: no mount at {}",
        inner.display()
    );
    assert_eq!(
        std::fs::read_to_string(inner.join("file")).unwrap(),
        "back\n"
    );
    remove_pod(&daemon, pod).await;
}

/// critest's `rshared` cannot hold on gVisor: a mount made inside its
/// sandbox never reaches the host, and runsc refuses the `rshared` root
/// propagation such a volume needs (it failed as an Internal error from
/// `runsc create`). It is refused at CreateContainer with InvalidArgument
/// naming the volume, fast, leaving nothing behind.
#[tokio::test]
async fn rshared_is_refused_on_gvisor() {
    let daemon = daemon().await;
    let host = HostDir::new();
    let (pod, id) = run_with_volume_on(
        &daemon,
        "runsc",
        "gvisor",
        &host.path(),
        cri::MountPropagation::PropagationPrivate,
    )
    .await;
    let (_, release) = exec(&daemon, &id, &["uname", "-r"]).await;
    assert_eq!(release.trim(), "4.4.0", "in gVisor");
    let mut config = container_config("shared", BUSYBOX, &["sleep", "3600"]);
    config.mounts = vec![cri::Mount {
        container_path: "/mnt/shared".into(),
        host_path: host.path().to_string_lossy().into_owned(),
        propagation: cri::MountPropagation::PropagationBidirectional as i32,
        ..Default::default()
    }];
    let started = std::time::Instant::now();
    let err = daemon
        .runtime()
        .await
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .expect_err("Bidirectional on gVisor");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("/mnt/shared") && err.message().contains("Bidirectional"),
        "{err}"
    );
    // Refused before runsc is run (which took over a second to fail).
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    let containers = daemon
        .runtime()
        .await
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 1, "only the first: {containers:?}");
    remove_pod(&daemon, pod).await;
}
