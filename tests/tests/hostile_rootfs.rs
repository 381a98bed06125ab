//! Hostile root filesystems (issue #14): images whose `/etc/passwd` or
//! `/etc/group` is a symlink to `/dev/zero`, a device, a FIFO or a symlink
//! to the host's `/etc/shadow` (`cargo xtask fixtures` pushes them, see
//! `xtask/src/fixtures/hostile_rootfs.rs`).
//!
//! CreateContainer reads those files inside the image's root: the device,
//! the FIFO and the link out of the image are refused at once with an error
//! naming the file and the cause, the daemon's memory stays flat, nothing is
//! left behind and the pod's lock is free again; the link to `/etc/shadow`
//! resolves to the image's own file.

use cri_api::v1 as cri;
use std::path::Path;
use std::time::{Duration, Instant};
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX};
use tonic::Code;

fn image(repository: &str) -> String {
    format!("registry.k8s.io/hostile/{repository}:latest")
}

/// Sanity bound for a refused CreateContainer: the fix answers in
/// milliseconds; before it, the /dev/zero read never ended.
const REFUSED_WITHIN: Duration = Duration::from_secs(5);

/// The daemon's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Overlay mounts under the daemon's directories (container root
/// filesystems; the built-in infra container needs none).
fn overlay_mounts(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&dir) && l.contains(" - overlay "))
        .map(str::to_owned)
        .collect()
}

fn monitors(dir: &Path) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("oci-monitor.*{}", dir.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn create(
    daemon: &Daemon,
    pod: &str,
    config: cri::ContainerConfig,
) -> Result<Result<String, tonic::Status>, tokio::time::error::Elapsed> {
    let mut rt = daemon.runtime().await;
    tokio::time::timeout(
        REFUSED_WITHIN * 2,
        rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config),
            sandbox_config: None,
        }),
    )
    .await
    .map(|r| r.map(|r| r.into_inner().container_id))
}

/// What a refused image must say, and its file.
struct Refused {
    repository: &'static str,
    file: &'static str,
    cause: &'static str,
}

const REFUSED: [Refused; 4] = [
    Refused {
        repository: "passwd-devzero",
        file: "/etc/passwd",
        cause: "symlink to \"/dev/zero\", which does not exist inside the image",
    },
    Refused {
        repository: "passwd-chardev",
        file: "/etc/passwd",
        cause: "character device, not a regular file",
    },
    Refused {
        repository: "passwd-fifo",
        file: "/etc/passwd",
        cause: "FIFO, not a regular file",
    },
    Refused {
        repository: "group-devzero",
        file: "/etc/group",
        cause: "symlink to \"/dev/zero\", which does not exist inside the image",
    },
];

#[tokio::test]
async fn hostile_user_databases_are_refused_fast_and_leave_nothing() {
    let daemon = Daemon::start("").await;
    for r in &REFUSED {
        daemon.pull(&image(r.repository)).await;
    }
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(pod_config("hostile-rootfs"), "runc").await;
    let state = daemon.dir().join("state/c");
    let mounts_before = overlay_mounts(daemon.dir());
    let peak_before = peak_rss_kib(daemon.pid());

    for r in &REFUSED {
        let name = r.repository;
        let started = Instant::now();
        let answer = create(
            &daemon,
            &pod,
            container_config(name, &image(name), &["true"]),
        )
        .await;
        let elapsed = started.elapsed();
        let err = match answer {
            Err(_) => panic!("{name}: CreateContainer still running after {elapsed:?}"),
            Ok(Ok(id)) => panic!("{name}: CreateContainer succeeded ({id})"),
            Ok(Err(err)) => err,
        };
        assert!(elapsed < REFUSED_WITHIN, "{name}: took {elapsed:?}");
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err}");
        for needle in [r.file, r.cause, name] {
            assert!(
                err.message().contains(needle),
                "{name}: {needle:?} missing: {err}"
            );
        }
        let left: Vec<_> = std::fs::read_dir(&state)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{name}: container state left: {left:?}");
        assert_eq!(monitors(&state), "", "{name}: a monitor is left");
        assert_eq!(
            overlay_mounts(daemon.dir()),
            mounts_before,
            "{name}: rootfs left"
        );
    }

    let grown_kib = peak_rss_kib(daemon.pid()).saturating_sub(peak_before);
    assert!(
        grown_kib < 64 * 1024,
        "daemon peak RSS grew by {grown_kib} KiB"
    );
    // The pod's lock is free and the names are free: a good container of
    // the same pod is created and runs.
    let good = create(
        &daemon,
        &pod,
        container_config("good", BUSYBOX, &["sleep", "60"]),
    )
    .await
    .expect("CreateContainer of a good image hangs: the pod's lock is held")
    .unwrap_or_else(|e| panic!("good image: {e}\n{}", daemon.log()));
    daemon
        .runtime()
        .await
        .start_container(cri::StartContainerRequest {
            container_id: good.clone(),
        })
        .await
        .unwrap();
    let (code, out) = daemon.sh(&good, "id -u").await;
    assert_eq!((code, out.trim()), (0, "0"));
    daemon.remove_pod(&pod).await;
}

#[tokio::test]
async fn a_symlink_to_etc_shadow_resolves_inside_the_image() {
    let daemon = Daemon::start("").await;
    let shadow = image("passwd-shadow");
    daemon.pull(&shadow).await;
    let pod = daemon.run_pod(pod_config("hostile-shadow"), "runc").await;
    let ctr = create(
        &daemon,
        &pod,
        container_config("shadow", &shadow, &["sleep", "60"]),
    )
    .await
    .expect("CreateContainer hangs")
    .unwrap_or_else(|e| panic!("passwd-shadow: {e}\n{}", daemon.log()));
    // The uid the container gets comes from the image's own /etc/shadow
    // (root is 4242 there), never from the host's.
    let bundle = daemon
        .dir()
        .join("state/c")
        .join(&ctr)
        .join("bundle/config.json");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(config["process"]["user"]["uid"], 4242, "{bundle:?}");
    assert_eq!(config["process"]["user"]["gid"], 4242, "{bundle:?}");
    daemon
        .runtime()
        .await
        .start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
    let (code, out) = daemon.sh(&ctr, "echo $(id -u):$(id -g)").await;
    assert_eq!((code, out.trim()), (0, "4242:4242"));
    daemon.remove_pod(&pod).await;
}
