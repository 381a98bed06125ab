//! Issue 21: pods with a user namespace (Kubernetes `hostUsers: false`) on
//! runc. Root inside is an unprivileged host user: its files, its volumes
//! and its capabilities reach nothing of the host's that a host user of
//! that uid could not. Covers the pod's files, the root filesystem, plain
//! and idmapped volumes, several containers in one namespace, exec, logs,
//! stats, a daemon restart, Status per handler, and what is refused.

use cri_api::v1 as cri;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use tests::daemon::Daemon;
use tests::fixtures::{
    container_config, pod_config, with_kubelet_namespaces, with_user_namespace, BUSYBOX,
};
use tonic::Code;

/// The host uid (and gid) of the pods' root: an unusual range, so files
/// it owns on the host cannot be anybody else's.
const HOST_ROOT: u32 = 3_000_000;

fn mapping(host_id: u32) -> Vec<cri::IdMapping> {
    vec![cri::IdMapping {
        host_id,
        container_id: 0,
        length: 65536,
    }]
}

fn userns(host_id: u32) -> cri::UserNamespace {
    cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: mapping(host_id),
        gids: mapping(host_id),
    }
}

/// The pod's sandbox security context.
fn security(config: &mut cri::PodSandboxConfig) -> &mut cri::LinuxSandboxSecurityContext {
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default)
}

/// The pod's namespace options.
fn namespaces(config: &mut cri::PodSandboxConfig) -> &mut cri::NamespaceOption {
    security(config)
        .namespace_options
        .get_or_insert_with(Default::default)
}

/// A kubelet-style pod (or one sharing its PID namespace, which keeps an
/// infra container) with its own user namespace.
fn userns_pod(name: &str, shared_pid: bool, logs: &Path) -> cri::PodSandboxConfig {
    let mut config =
        with_user_namespace(with_kubelet_namespaces(pod_config(name), false), HOST_ROOT);
    config.log_directory = logs.display().to_string();
    if shared_pid {
        namespaces(&mut config).pid = cri::NamespaceMode::Pod as i32;
    }
    config
}

/// A busybox container that sleeps, with `mounts`, and `SYS_ADMIN` inside
/// its user namespace.
fn sleeper(name: &str, mounts: Vec<cri::Mount>) -> cri::ContainerConfig {
    let mut config = container_config(name, BUSYBOX, &["sh", "-c", "echo started; sleep 600"]);
    config.mounts = mounts;
    config.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: vec!["SYS_ADMIN".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

fn volume(container_path: &str, host: &Path, readonly: bool) -> cri::Mount {
    cri::Mount {
        container_path: container_path.into(),
        host_path: host.display().to_string(),
        readonly,
        ..Default::default()
    }
}

async fn sh_ok(daemon: &Daemon, id: &str, script: &str) -> String {
    let (code, out) = daemon.sh(id, script).await;
    assert_eq!(code, 0, "{script}: {out}");
    out
}

async fn sh_fails(daemon: &Daemon, id: &str, script: &str) -> String {
    let (code, out) = daemon.sh(id, script).await;
    assert_ne!(code, 0, "{script} should fail: {out}");
    out
}

/// The host uid of container `id`'s init.
async fn host_uid(daemon: &Daemon, id: &str) -> u32 {
    let response = daemon
        .runtime()
        .await
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let record: serde_json::Value = serde_json::from_str(&response.info["info"]).unwrap();
    let pid = record["pid"].as_u64().expect("the container's pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    uid_line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The pod pins left in the daemon's pin directory.
fn pins(daemon: &Daemon) -> usize {
    std::fs::read_dir(daemon.dir().join("state/netns"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn root_inside_is_an_unprivileged_host_user_for_files_and_mounts() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // A volume anybody may write, like an emptyDir.
    let shared = scratch.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // A stand-in for a hostPath of /etc: root's files, world-readable.
    let etc = scratch.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::os::unix::fs::chown(scratch.path(), Some(0), Some(0)).unwrap();
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let pod = daemon
        .run_pod(userns_pod("userns-files", false, logs.path()), "")
        .await;
    let status = daemon.pod_status(&pod, false).await.status.unwrap();
    let options = status.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(
        options.userns_options,
        Some(userns(HOST_ROOT)),
        "status reports the mapping"
    );
    let c = daemon
        .create_started(
            &pod,
            sleeper(
                "app",
                vec![
                    volume("/shared", &shared, false),
                    volume("/host-etc", &etc, false),
                    volume("/host-etc-ro", &etc, true),
                ],
            ),
        )
        .await;

    // Root inside, with the pod's mapping.
    assert_eq!(sh_ok(&daemon, &c, "id -u").await.trim(), "0");
    let uid_map: Vec<String> = sh_ok(&daemon, &c, "cat /proc/self/uid_map")
        .await
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(uid_map, ["0", &HOST_ROOT.to_string(), "65536"]);
    // The image's files and the pod's own files are root's inside.
    for path in ["/bin/sh", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
        let owner = sh_ok(&daemon, &c, &format!("stat -c %u:%g {path}")).await;
        assert_eq!(owner.trim(), "0:0", "{path}");
    }
    sh_ok(&daemon, &c, "echo x > /made-by-root && mkdir /etc/more").await;

    // A file the pod's root makes in a volume is the mapped uid's on the host.
    sh_ok(&daemon, &c, "echo data > /shared/made-inside").await;
    let made = std::fs::metadata(shared.join("made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (HOST_ROOT, HOST_ROOT));

    // The host's root-owned files: readable, never writable, never taken.
    assert!(sh_ok(&daemon, &c, "cat /host-etc/passwd")
        .await
        .contains("root:x:0:0"));
    assert_eq!(
        sh_ok(&daemon, &c, "stat -c %u /host-etc/passwd")
            .await
            .trim(),
        "65534"
    );
    for attack in [
        "echo 'evil::0:0::/:/bin/sh' >> /host-etc/passwd",
        "chmod 666 /host-etc/passwd",
        "chown 0:0 /host-etc/passwd",
        "touch /host-etc/new-file",
    ] {
        sh_fails(&daemon, &c, attack).await;
    }
    assert_eq!(
        std::fs::read_to_string(etc.join("passwd")).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert!(!etc.join("new-file").exists());

    // CAP_SYS_ADMIN inside: its own mounts work, the host's stay as they are.
    sh_ok(
        &daemon,
        &c,
        "mkdir -p /scratch && mount -t tmpfs none /scratch",
    )
    .await;
    sh_fails(&daemon, &c, "mount -o remount,rw /host-etc-ro").await;
    sh_fails(
        &daemon,
        &c,
        "mkdir -p /again && mount --bind /host-etc-ro /again && mount -o remount,bind,rw /again",
    )
    .await;
    sh_fails(&daemon, &c, "echo x > /host-etc-ro/passwd").await;
    // No host device, no way to the host's root.
    sh_fails(&daemon, &c, "mknod /dev/host-disk b 254 0").await;

    // On the host the container's processes run as the mapped uid.
    assert_eq!(host_uid(&daemon, &c).await, HOST_ROOT);

    // The mapped root reaches its root filesystem through a directory only
    // it may pass; the image store stays root's alone (setuid binaries of
    // images: CVE-2021-41091), and no other local user gets in either way.
    let guard = daemon.dir().join("state/c").join(&c).join("userns-root");
    let meta = std::fs::metadata(&guard).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (HOST_ROOT, 0o700));
    let store = daemon.dir().join("root/images");
    for dir in [store.clone(), store.join("containers")] {
        assert_eq!(
            std::fs::metadata(&dir).unwrap().mode() & 0o777,
            0o700,
            "{}",
            dir.display()
        );
    }
    let as_nobody = |path: &Path| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "ls",
            ])
            .arg(path)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        !as_nobody(&guard.join("rootfs/bin")),
        "nobody passed the guard"
    );
    assert!(!as_nobody(
        &store.join("containers").join(&c).join("rootfs/bin")
    ));
    daemon.remove_pod(&pod).await;
    assert!(!guard.exists());
}

#[tokio::test]
async fn containers_share_the_pods_user_namespace_through_exec_logs_stats_and_a_restart() {
    let mut daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    for shared_pid in [false, true] {
        let name = if shared_pid {
            "userns-infra"
        } else {
            "userns-pins"
        };
        let pod = daemon
            .run_pod(userns_pod(name, shared_pid, logs.path()), "")
            .await;
        let a = daemon.create_started(&pod, sleeper("a", vec![])).await;
        let b = daemon.create_started(&pod, sleeper("b", vec![])).await;
        let ns_a = sh_ok(&daemon, &a, "readlink /proc/self/ns/user").await;
        let ns_b = sh_ok(&daemon, &b, "readlink /proc/self/ns/user").await;
        assert_eq!(ns_a, ns_b, "{name}: one user namespace per pod");
        let host_ns = std::fs::read_link("/proc/self/ns/user").unwrap();
        assert_ne!(ns_a.trim(), host_ns.display().to_string(), "{name}");
        // IPC and UTS belong to the pod's user namespace: root there may
        // use them (a host-owned UTS namespace would refuse sethostname).
        sh_ok(&daemon, &a, "hostname renamed && hostname").await;
        assert_eq!(
            sh_ok(&daemon, &b, "hostname").await.trim(),
            "renamed",
            "{name}"
        );

        // Logs, written by the monitor on the host, as usual.
        let log = logs.path().join("a.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(text.contains("stdout F started"), "{name}: {text}");
        // Stats.
        let stats = daemon.pod_stats(&pod).await;
        let containers = stats.linux.unwrap().containers;
        assert_eq!(containers.len(), 2, "{name}");
        assert!(containers.iter().all(|c| c
            .memory
            .as_ref()
            .is_some_and(|m| m.working_set_bytes.as_ref().is_some_and(|w| w.value > 0))));
        // ContainerStatus as for any container.
        let status = daemon.container_status(&a).await;
        assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
        assert_eq!(status.image.unwrap().image, BUSYBOX);

        // The daemon dies and comes back: the pod keeps its namespace and a
        // new container joins it.
        daemon.kill9();
        daemon.restart().await;
        let c = daemon.create_started(&pod, sleeper("c", vec![])).await;
        assert_eq!(
            sh_ok(&daemon, &c, "readlink /proc/self/ns/user").await,
            ns_a,
            "{name}"
        );
        assert_eq!(sh_ok(&daemon, &a, "id -u").await.trim(), "0", "{name}");
        daemon.remove_pod(&pod).await;
    }
    // Nothing of the pods is left: pins, staging or root filesystem mounts.
    assert_eq!(pins(&daemon), 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = daemon.dir().display().to_string();
    let own = tests::leaks::daemon_mounts(daemon.dir());
    let left: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|point| point.starts_with(&root) && !own.iter().any(|o| o == point))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn an_idmapped_volume_shows_host_roots_files_as_the_pods_root() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = scratch.path().join("configmap");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("key"), "value").unwrap();
    let pod = daemon
        .run_pod(userns_pod("userns-idmap", false, logs.path()), "")
        .await;
    let mut mapped = volume("/config", &config, false);
    mapped.uid_mappings = mapping(HOST_ROOT);
    mapped.gid_mappings = mapping(HOST_ROOT);
    let c = daemon
        .create_started(&pod, sleeper("app", vec![mapped.clone()]))
        .await;
    assert_eq!(
        sh_ok(&daemon, &c, "stat -c %u:%g /config/key").await.trim(),
        "0:0"
    );
    sh_ok(&daemon, &c, "echo changed > /config/key").await;
    assert_eq!(
        std::fs::read_to_string(config.join("key")).unwrap().trim(),
        "changed"
    );
    // The staging mount is gone once runc has the volume.
    let staging = daemon.dir().join("state/staged-volumes");
    assert!(std::fs::read_dir(&staging)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true));

    // A mapping that is not the pod's (here: host root as the pod's root)
    // is refused before anything is mounted.
    let mut rt = daemon.runtime().await;
    for (uids, why) in [
        (mapping(0), "not the pod's"),
        (mapping(HOST_ROOT + 65536), "not the pod's"),
    ] {
        let mut hostile = mapped.clone();
        hostile.uid_mappings = uids.clone();
        hostile.gid_mappings = uids;
        let err = rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(sleeper("hostile", vec![hostile])),
                sandbox_config: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(why), "{}", err.message());
    }
    daemon.remove_pod(&pod).await;
}

#[tokio::test]
async fn status_and_refusals_per_handler_and_hostile_pods() {
    let daemon = Daemon::start("").await;
    let status = daemon.status().await;
    let handler = |name: &str| {
        status
            .runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.features)
            .unwrap_or_default()
    };
    assert!(handler("runc").user_namespaces, "{status:?}");
    assert!(!handler("runsc").user_namespaces, "{status:?}");

    let logs = tempfile::tempdir().unwrap();
    let mut rt = daemon.runtime().await;
    let run = |config: cri::PodSandboxConfig, handler: &str| cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: handler.into(),
    };
    // On gVisor: refused, saying so.
    let err = rt
        .run_pod_sandbox(run(
            userns_pod("userns-gvisor", false, logs.path()),
            "runsc",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("user namespace"),
        "{}",
        err.message()
    );
    // Privileged, or on the host's network: Kubernetes forbids it too.
    let mut privileged = userns_pod("userns-privileged", false, logs.path());
    security(&mut privileged).privileged = true;
    let mut host_net = userns_pod("userns-hostnet", false, logs.path());
    namespaces(&mut host_net).network = cri::NamespaceMode::Node as i32;
    // Hostile mappings.
    let with_mapping = |name: &str, uids: Vec<cri::IdMapping>| {
        let mut config = userns_pod(name, false, logs.path());
        namespaces(&mut config).userns_options = Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            gids: uids.clone(),
            uids,
        });
        config
    };
    let cases = [
        (privileged, "privileged"),
        (host_net, "host network"),
        (with_mapping("userns-root", mapping(0)), "host id 0"),
        (
            with_mapping(
                "userns-wrap",
                vec![cri::IdMapping {
                    host_id: u32::MAX - 5,
                    container_id: 0,
                    length: 65536,
                }],
            ),
            "past the largest id",
        ),
        (with_mapping("userns-none", vec![]), "needs uid mappings"),
    ];
    for (config, why) in cases {
        let started = std::time::Instant::now();
        let err = rt.run_pod_sandbox(run(config, "")).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{why}: {err:?}");
        assert!(err.message().contains(why), "{why}: {}", err.message());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{why}: fast"
        );
    }
    // Nothing was made for any of them.
    let pods = daemon.list_pods().await;
    assert!(pods.is_empty(), "{pods:?}");
    assert_eq!(pins(&daemon), 0);
}

/// A pod sharing its PID namespace keeps an infra container; with
/// `pause_image` its root filesystem comes from the image store, idmapped
/// and bound where the mapped root reaches it, as a container's. (Here the
/// image is busybox, whose `sh` ends at once on an empty stdin: that it
/// ran at all, and ended well, is what is checked; a root filesystem the
/// mapped root could not reach fails RunPodSandbox.)
#[tokio::test]
async fn a_pause_image_infra_container_runs_in_the_pods_user_namespace() {
    let daemon = Daemon::start(&format!("[image]\npause_image = \"{BUSYBOX}\"\n")).await;
    let logs = tempfile::tempdir().unwrap();
    let pod = daemon
        .run_pod(userns_pod("userns-pause-image", true, logs.path()), "")
        .await;
    let guard = daemon.dir().join("state/p").join(&pod).join("userns-root");
    assert_eq!(std::fs::metadata(&guard).unwrap().uid(), HOST_ROOT);
    let mut exit = None;
    for _ in 0..100 {
        let info = daemon.pod_status(&pod, true).await.info;
        let record: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
        exit = record["infra_container"]["exit_code"].as_i64();
        if exit.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(exit, Some(0), "the infra container ran and ended well");
    daemon.remove_pod(&pod).await;
    assert!(!guard.exists());
}
