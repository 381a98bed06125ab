//! critest "Runtime info": version info and runtime conditions, plus the
//! daemon's command line and socket handling.

use cri_api::v1 as cri;
use tests::daemon::{run_cli, Daemon};

#[tokio::test]
async fn returns_version_info() {
    let daemon = Daemon::start("").await;
    let v = daemon
        .runtime()
        .await
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "cri-server");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty());
}

#[tokio::test]
async fn returns_runtime_conditions() {
    let daemon = Daemon::start("").await;
    let status = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    let runtime_ready = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(runtime_ready.status);
    assert!(conditions.iter().any(|c| c.r#type == "NetworkReady"));
    let config: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    assert_eq!(config["runtime"]["default_handler"], "runc");
    let handlers: Vec<_> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert!(handlers.contains(&"runc"), "{handlers:?}");
}

#[tokio::test]
async fn missing_handler_binary_is_reported_in_status() {
    let daemon = Daemon::start(
        "[runtime]\nuntrusted_handler = \"kata\"\n\
         [runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n\
         [runtime.handlers.kata]\npath = \"/nonexistent/kata-runtime\"\n",
    )
    .await;
    let status = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    let runtime_ready = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(
        runtime_ready.message.contains("/nonexistent/kata-runtime"),
        "{runtime_ready:?}"
    );
    assert!(!status.runtime_handlers.iter().any(|h| h.name == "kata"));
}

#[tokio::test]
async fn a_live_socket_is_not_taken_over_and_sigterm_exits_cleanly() {
    let mut daemon = Daemon::start("").await;
    let second = run_cli(&["--config", daemon.config_path().to_str().unwrap()]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another daemon"), "{stderr}");
    // The first daemon still answers.
    daemon
        .runtime()
        .await
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
    assert!(daemon.terminate().await.success(), "{}", daemon.log());
    assert!(!daemon.socket().exists());
}

#[test]
fn bad_config_is_refused_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[runtime]\ndefault_handler = \"kata\"\n").unwrap();
    let out = run_cli(&["--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("runtime.default_handler"), "{stderr}");
}

#[test]
fn config_command_prints_effective_toml() {
    let out = run_cli(&["config"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("socket = \"/run/cri-server/cri-server.sock\""),
        "{text}"
    );
    assert!(text.contains("[runtime.handlers.runsc]"), "{text}");
}

async fn cgroup_driver(daemon: &Daemon) -> cri::CgroupDriver {
    let config = daemon
        .runtime()
        .await
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    config
        .linux
        .and_then(|l| cri::CgroupDriver::try_from(l.cgroup_driver).ok())
        .expect("a cgroup driver")
}

#[tokio::test]
async fn runtime_config_reports_the_cgroup_driver() {
    let daemon = Daemon::start("").await;
    assert_eq!(cgroup_driver(&daemon).await, cri::CgroupDriver::Cgroupfs);
    // A cgroupfs parent is a path; nothing is refused.
    let mut pod = tests::fixtures::pod_config("cgparent");
    pod.linux.get_or_insert_with(Default::default).cgroup_parent = "/cri-server-e2e".into();
    let id = daemon.run_pod(pod, "").await;
    daemon.remove_pod(&id).await;
    // kubelet owns pod parents; the test made this one, so it removes it.
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join("cri-server-e2e"));
    }
}

#[tokio::test]
async fn the_systemd_driver_needs_systemd_and_slice_parents() {
    let extra = "[runtime]\ncgroup_driver = \"systemd\"\n";
    if !std::path::Path::new("/run/systemd/system").exists() {
        // This machine has no systemd: the daemon says so and stops.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "socket = \"{0}/cri.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n{extra}",
                dir.path().display()
            ),
        )
        .unwrap();
        let out = run_cli(&["--config", config.to_str().unwrap()]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.trim().lines().last().unwrap_or_default();
        assert!(last.contains("runtime.cgroup_driver"), "{stderr}");
        assert!(last.contains("systemd"), "{stderr}");
        assert!(!dir.path().join("cri.sock").exists());
        return;
    }
    let daemon = Daemon::start(extra).await;
    assert_eq!(cgroup_driver(&daemon).await, cri::CgroupDriver::Systemd);
    let mut pod = tests::fixtures::pod_config("cgpath");
    pod.linux.get_or_insert_with(Default::default).cgroup_parent = "/kubepods/pod1".into();
    let err = daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("cgroup_parent"), "{err:?}");
}

#[tokio::test]
async fn logs_carry_no_colour_escapes_outside_a_terminal() {
    let daemon = Daemon::start("").await;
    let log = daemon.log();
    assert!(log.contains("serving CRI v1"), "{log}");
    assert!(!log.contains('\x1b'), "escape sequences in a file:\n{log}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cri.toml");
    std::fs::write(&config, tests::daemon::test_config(dir.path(), "")).unwrap();
    let mut child = std::process::Command::new(tests::daemon::binary("cri-server"))
        .args(["--log-format", "json", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let object: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?} after {seen:#?}"));
        seen.push(line);
        if object["message"] == "serving CRI v1" {
            assert_eq!(object["level"], "INFO", "{object}");
            assert!(object["timestamp"].is_string(), "{object}");
            break;
        }
        assert!(seen.len() < 200, "never logged readiness: {seen:#?}");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // Every line up to the exit is JSON too.
    for line in lines {
        let line = line.unwrap();
        assert!(
            serde_json::from_str::<serde_json::Value>(&line).is_ok(),
            "{line:?}"
        );
    }
    let status = child.wait().unwrap();
    tests::daemon::unmount_pin_dir(dir.path());
    assert!(status.success(), "{status}");
}

// Multi-threaded: the test blocks on its datagram socket while the gRPC
// connection's task must stay able to answer the daemon's GOAWAY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_the_daemon_says_ready_once_it_serves_and_stopping_on_sigterm() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cri.toml");
    std::fs::write(&config, tests::daemon::test_config(dir.path(), "")).unwrap();
    let notify = dir.path().join("notify");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut child = std::process::Command::new(tests::daemon::binary("cri-server"))
        .args(["--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "200000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = listener.recv(&mut buf).expect("READY=1 within 20 s");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", child.id())),
        "{ready}"
    );
    // Ready means ready: the very first call is answered.
    let channel = tests::daemon::channel(&dir.path().join("cri.sock")).await;
    cri::runtime_service_client::RuntimeServiceClient::new(channel)
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
    // Keep-alives at half of WATCHDOG_USEC.
    let n = listener.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"WATCHDOG=1\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut stopping = String::new();
    for _ in 0..100 {
        let n = listener.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
        if &buf[..n] != b"WATCHDOG=1\n" {
            stopping = String::from_utf8_lossy(&buf[..n]).into_owned();
            break;
        }
    }
    assert_eq!(stopping, "STOPPING=1\n");
    let status = child.wait().unwrap();
    tests::daemon::unmount_pin_dir(dir.path());
    assert!(status.success(), "{status}");
}

/// Issue #18: `runtime_root` per handler moves the runtime's state (its
/// `--root`), as containerd's and CRI-O's key does; a drop-in that sets
/// only it keeps the handler's binary.
#[tokio::test]
async fn a_handler_keeps_its_state_in_its_runtime_root() {
    let root = tempfile::tempdir().unwrap();
    let runc_root = root.path().join("runc-state");
    let daemon = tests::daemon::Daemon::start(&format!(
        "[runtime.handlers.runc]\nruntime_root = {:?}\n",
        runc_root.display().to_string()
    ))
    .await;
    let pod = daemon
        .run_pod(tests::fixtures::pod_config("rooted"), "")
        .await;
    assert!(
        runc_root.join(&pod).join("state.json").is_file(),
        "no runc state under {}:\n{}",
        runc_root.display(),
        daemon.log()
    );
    daemon.remove_pod(&pod).await;
    assert!(!runc_root.join(&pod).exists(), "runc state left behind");
}

/// Issue #18: `privileged_without_host_devices` (containerd's key): on such
/// a handler a privileged container keeps every privilege but sees none of
/// the host's devices; the same pod on plain runc sees them.
#[tokio::test]
async fn privileged_without_host_devices_hides_the_hosts_devices() {
    use tests::fixtures::{container_config, pod_config, BUSYBOX};
    let daemon = Daemon::start(
        "[runtime.handlers.runc-nodev]\npath = \"/usr/sbin/runc\"\n\
         privileged_without_host_devices = true\n",
    )
    .await;
    daemon.pull(BUSYBOX).await;
    let host_disk = tests::fixtures::host_block_device();
    let privileged_pod = |name: &str| {
        let mut config = pod_config(name);
        config.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        config
    };
    let privileged_container = || {
        let mut config = container_config("privileged", BUSYBOX, &["sleep", "600"]);
        config.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        config
    };
    let mut seen = Vec::new();
    for handler in ["runc", "runc-nodev"] {
        let pod = daemon.run_pod(privileged_pod(handler), handler).await;
        let id = daemon.create_started(&pod, privileged_container()).await;
        let (has_disk, _) = daemon.sh(&id, &format!("test -b {host_disk}")).await;
        let (_, caps) = daemon.sh(&id, "grep CapEff /proc/self/status").await;
        seen.push((
            handler,
            has_disk == 0,
            caps.split_whitespace().nth(1).map(str::to_owned),
        ));
        daemon.remove_pod(&pod).await;
    }
    assert!(seen[0].1, "plain runc shows {host_disk}: {seen:?}");
    assert!(!seen[1].1, "runc-nodev hides {host_disk}: {seen:?}");
    assert_eq!(seen[0].2, seen[1].2, "the same capabilities: {seen:?}");
}
