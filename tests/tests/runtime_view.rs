//! Issue 20: `runc create` runs without the daemon's other mounts. Every
//! pod's pins and every container's root filesystem are detached from the
//! mount namespace the monitor runs `runc create` in, and only the
//! container's own pod pins and root filesystem are put back (runc reads
//! and copies the whole mount table at every create). The host keeps
//! every mount, and the containers run as before.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, with_kubelet_namespaces, BUSYBOX};

/// A runc that notes, for each `create`, how many overlay and nsfs mounts
/// it sees, then runs the real runc.
fn probing_runc(dir: &Path) -> std::path::PathBuf {
    let runc = std::process::Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .expect("sh");
    let runc = String::from_utf8_lossy(&runc.stdout).trim().to_string();
    assert!(!runc.is_empty(), "runc on PATH");
    let seen = dir.join("seen");
    let script = dir.join("runc");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             case \" $* \" in *\" create \"*)\n\
             echo \"$(grep -c ' - overlay ' /proc/self/mountinfo) \
             $(grep -c ' - nsfs ' /proc/self/mountinfo)\" >> {seen};;\n\
             esac\n\
             exec {runc} \"$@\"\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Mounts of `kind` in this (the host's) namespace: (under `dir`, elsewhere).
fn host_mounts(dir: &Path, kind: &str) -> (usize, usize) {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.display().to_string();
    let of_kind: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(&format!(" - {kind} ")))
        .collect();
    let ours = of_kind
        .iter()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&dir)))
        .count();
    (ours, of_kind.len() - ours)
}

#[tokio::test]
async fn runc_create_sees_only_its_own_pins_and_root_filesystem() {
    let probe = tempfile::tempdir().unwrap();
    let runc = probing_runc(probe.path());
    let daemon = Daemon::start(&format!(
        "[runtime.handlers.runc]\npath = \"{}\"\n",
        runc.display()
    ))
    .await;
    daemon.pull(BUSYBOX).await;
    let mut containers = Vec::new();
    for name in ["v1", "v2", "v3"] {
        let pod = with_kubelet_namespaces(pod_config(name), false);
        let pod = daemon.run_pod(pod, "").await;
        let config = container_config("app", BUSYBOX, &["sleep", "1000"]);
        containers.push(daemon.create_started(&pod, config).await);
    }
    // The host has all three pods' pins and root filesystems (and
    // whatever else this machine mounts)...
    let (overlays, other_overlays) = host_mounts(daemon.dir(), "overlay");
    let (pins, other_pins) = host_mounts(daemon.dir(), "nsfs");
    assert_eq!((overlays, pins), (3, 9));
    // ...each create saw its own of ours: one root filesystem, three pins
    // (network, IPC, UTS).
    let seen = std::fs::read_to_string(probe.path().join("seen")).unwrap();
    let own = format!("{} {}\n", 1 + other_overlays, 3 + other_pins);
    assert_eq!(seen, own.repeat(3), "overlays and pins each create saw");
    // And the containers are whole: their root, their pod's namespaces.
    for id in &containers {
        let (code, out) = daemon.sh(id, "cat /proc/1/cmdline; ls /bin/sh").await;
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("sleep"), "{out}");
    }
}
