//! Configuration drop-ins and live reload (issue #18): files in
//! `config.d/` beside the main file are laid over it, `cri-server config
//! --sources` says which file set each key, and SIGHUP (or `cri-server
//! reload`) puts registries, trust settings and the signature policy in
//! force without touching running pods, or changes nothing and says why.

use cri_api::v1 as cri;
use std::time::{Duration, Instant};
use tests::daemon::{run_cli, Daemon};
use tests::fixtures::{pod_config, BUSYBOX};

/// A registry entry for `registry.k8s.io` that reaches nothing: port 1 on
/// loopback refuses connections at once.
const DEAD_MIRROR: &str = "[[image.registries]]\nprefix = \"registry.k8s.io\"\n\
                           mirrors = [\"127.0.0.1:1\"]\ninsecure = true\nmirrors_only = true\n";

fn drop_in(daemon: &Daemon, name: &str, text: &str) {
    let dir = daemon.dir().join("config.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

fn config_arg(daemon: &Daemon) -> String {
    daemon.config_path().display().to_string()
}

/// Sends `cri-server reload` for `daemon`'s configuration and waits for the
/// daemon to log the outcome containing `expect`, which it returns.
async fn reload(daemon: &Daemon, expect: &str) -> String {
    let seen = daemon.log().matches(expect).count();
    let out = run_cli(&["--config", &config_arg(daemon), "reload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("pid {}", daemon.pid())),
        "{stdout}"
    );
    daemon.wait_for_log(expect, seen).await
}

async fn try_pull(daemon: &Daemon, image: &str) -> Result<(), tonic::Status> {
    let mut images = daemon.images().await;
    images
        .pull_image(cri::PullImageRequest {
            image: tests::fixtures::image_spec(image),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map(drop)
}

#[tokio::test]
async fn a_drop_in_and_a_reload_change_the_mirror_and_pods_keep_running() {
    let daemon = Daemon::start(DEAD_MIRROR).await;
    let pod = daemon.run_pod(pod_config("stays"), "").await;
    let err = try_pull(&daemon, BUSYBOX)
        .await
        .expect_err("no mirror works yet");
    assert!(err.message().contains("127.0.0.1:1"), "{err}");

    drop_in(&daemon, "50-mirror.toml", tests::daemon::TEST_REGISTRIES);
    let line = reload(&daemon, "configuration reloaded").await;
    assert!(line.contains("image.registries"), "{line}");

    try_pull(&daemon, BUSYBOX)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    let status = daemon.pod_status(&pod, false).await;
    assert_eq!(
        status.status.unwrap().state,
        cri::PodSandboxState::SandboxReady as i32
    );
    daemon.remove_pod(&pod).await;
}

#[tokio::test]
async fn sources_name_the_drop_in_that_set_each_key() {
    let daemon = Daemon::start("").await;
    drop_in(
        &daemon,
        "10-trust.toml",
        "[runtime]\ntrusted_images = \"verified\"\n",
    );
    drop_in(
        &daemon,
        "20-trust.toml",
        "[runtime]\ndefault_workload_trust = \"untrusted\"\n",
    );
    let out = run_cli(&["--config", &config_arg(&daemon), "config", "--sources"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"))
            .to_string()
    };
    assert!(source("runtime.trusted_images").ends_with("config.d/10-trust.toml"));
    assert!(source("runtime.default_workload_trust").ends_with("config.d/20-trust.toml"));
    assert!(source("socket").ends_with("cri-server.toml"));
    assert_eq!(source("runtime.privileged_untrusted"), "(default)");
    let merged = run_cli(&["--config", &config_arg(&daemon), "config"]);
    let merged = String::from_utf8_lossy(&merged.stdout);
    assert!(merged.contains("trusted_images = \"verified\""), "{merged}");
}

#[tokio::test]
async fn a_reloaded_trust_default_places_the_next_pod_and_not_the_running_one() {
    let daemon = Daemon::start("").await;
    let before = daemon.run_pod(pod_config("before"), "").await;
    drop_in(
        &daemon,
        "10-trust.toml",
        "[runtime]\ndefault_workload_trust = \"untrusted\"\n",
    );
    reload(&daemon, "configuration reloaded").await;
    let after = daemon.run_pod(pod_config("after"), "").await;
    let handler = |id: &str| {
        let id = id.to_string();
        let daemon = &daemon;
        async move {
            daemon
                .pod_status(&id, false)
                .await
                .status
                .unwrap()
                .runtime_handler
        }
    };
    assert_eq!(handler(&before).await, "runc");
    assert_eq!(handler(&after).await, "runsc");
    daemon.remove_pod(&before).await;
    daemon.remove_pod(&after).await;
}

#[tokio::test]
async fn a_bad_drop_in_changes_nothing_and_a_restart_key_is_reported() {
    let daemon = Daemon::start("").await;
    drop_in(
        &daemon,
        "10-typo.toml",
        "[runtime]\ntrusted_imagez = \"verified\"\n",
    );
    // `cri-server reload` checks the files first and does not signal.
    let out = run_cli(&["--config", &config_arg(&daemon), "reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("10-typo.toml") && err.contains("trusted_imagez"),
        "{err}"
    );
    // systemd's ExecReload sends SIGHUP whatever the files say.
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let line = daemon.wait_for_log("configuration not reloaded", 0).await;
    assert!(
        line.contains("10-typo.toml") && line.contains("trusted_imagez"),
        "{line}"
    );
    // Still serving with what it had.
    daemon.pull(BUSYBOX).await;

    std::fs::remove_file(daemon.dir().join("config.d/10-typo.toml")).unwrap();
    drop_in(
        &daemon,
        "20-stream.toml",
        "[streaming]\ntoken_ttl_seconds = 77\n",
    );
    drop_in(
        &daemon,
        "30-trust.toml",
        "[runtime]\ntrusted_images = \"verified\"\n",
    );
    let line = reload(&daemon, "configuration reloaded").await;
    assert!(line.contains("runtime.trusted_images"), "{line}");
    assert!(
        line.contains("needs_restart") && line.contains("streaming.token_ttl_seconds"),
        "{line}"
    );
}

#[tokio::test]
async fn reload_without_a_running_daemon_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("state = {:?}\n", dir.path().display().to_string()),
    )
    .unwrap();
    let out = run_cli(&["--config", config.to_str().unwrap(), "reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cri-server.pid") && err.contains("is the daemon running"),
        "{err}"
    );
}

/// The handlers Status reports, with whether each can mount recursively
/// read-only.
async fn status_handlers(daemon: &Daemon) -> Vec<(String, bool)> {
    daemon
        .status()
        .await
        .runtime_handlers
        .into_iter()
        .map(|h| {
            let rro = h.features.is_some_and(|f| f.recursive_read_only_mounts);
            (h.name, rro)
        })
        .collect()
}

#[tokio::test]
async fn handlers_are_added_by_reload_and_one_in_use_cannot_be_removed() {
    let daemon = Daemon::start("").await;
    let before = status_handlers(&daemon).await;
    // runc 1.1 lists rro in `runc features`; runsc (2022) has no features.
    assert!(before.contains(&("runc".into(), true)), "{before:?}");
    assert!(before.contains(&("runsc".into(), false)), "{before:?}");

    drop_in(
        &daemon,
        "50-debug.toml",
        "[runtime.handlers.runc-debug]\npath = \"/usr/sbin/runc\"\nargs = [\"--debug\"]\n",
    );
    let line = reload(&daemon, "configuration reloaded").await;
    assert!(line.contains("runtime.handlers.runc-debug"), "{line}");
    let after = status_handlers(&daemon).await;
    assert!(after.contains(&("runc-debug".into(), true)), "{after:?}");
    let pod = daemon
        .run_pod(pod_config("on-new-handler"), "runc-debug")
        .await;

    // Taking the handler away while a pod runs on it is refused, naming it.
    std::fs::remove_file(daemon.dir().join("config.d/50-debug.toml")).unwrap();
    let line = reload(&daemon, "configuration not reloaded").await;
    assert!(
        line.contains("runtime.handlers.runc-debug") && line.contains(&pod),
        "{line}"
    );
    assert!(status_handlers(&daemon)
        .await
        .iter()
        .any(|(n, _)| n == "runc-debug"));

    // Once the pod is gone, the same reload goes through.
    daemon.remove_pod(&pod).await;
    reload(&daemon, "configuration reloaded").await;
    let last = status_handlers(&daemon).await;
    assert!(!last.iter().any(|(n, _)| n == "runc-debug"), "{last:?}");
    let err = daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("gone-handler")),
            runtime_handler: "runc-debug".into(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("runc-debug"), "{err:?}");
}

#[tokio::test]
async fn a_reload_opens_moves_and_closes_the_metrics_endpoint() {
    use tests::http::{free_port, get, try_get};
    let daemon = Daemon::start("").await;
    let first = free_port();
    drop_in(
        &daemon,
        "60-metrics.toml",
        &format!("[metrics]\naddress = \"127.0.0.1:{first}\"\n"),
    );
    let line = reload(&daemon, "configuration reloaded").await;
    assert!(line.contains("metrics.address"), "{line}");
    let (code, body) = get(first, "/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("cri_server_config_reloads_total"), "{body}");

    // A taken port: the reload fails and the endpoint stays where it was.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    drop_in(
        &daemon,
        "60-metrics.toml",
        &format!("[metrics]\naddress = \"127.0.0.1:{taken_port}\"\n"),
    );
    let line = reload(&daemon, "configuration not reloaded").await;
    assert!(line.contains(&taken_port.to_string()), "{line}");
    assert_eq!(get(first, "/metrics").await.0, 200);

    // Moved, then closed.
    let second = free_port();
    drop_in(
        &daemon,
        "60-metrics.toml",
        &format!("[metrics]\naddress = \"127.0.0.1:{second}\"\n"),
    );
    reload(&daemon, "configuration reloaded").await;
    assert_eq!(get(second, "/metrics").await.0, 200);
    assert!(
        try_get(first, "/metrics").await.is_err(),
        "the old port still serves"
    );
    std::fs::remove_file(daemon.dir().join("config.d/60-metrics.toml")).unwrap();
    reload(&daemon, "configuration reloaded").await;
    assert!(
        try_get(second, "/metrics").await.is_err(),
        "closed endpoint still serves"
    );
    drop(taken);
}

#[tokio::test]
async fn a_reload_changes_the_log_level() {
    let daemon = Daemon::start("").await;
    // The test daemon logs at debug; a drop-in quiets it to warnings (so
    // the reload's own info line is not written either: watch the effect).
    drop_in(&daemon, "70-quiet.toml", "log_level = \"warn\"\n");
    assert!(run_cli(&["--config", &config_arg(&daemon), "reload"])
        .status
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = daemon.log().len();
        daemon.status().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !daemon.log()[before..].contains("Status") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still logging requests at info:\n{}",
            daemon.log()
        );
    }

    // Emptied: back to the level the daemon started with.
    std::fs::remove_file(daemon.dir().join("config.d/70-quiet.toml")).unwrap();
    let line = reload(&daemon, "configuration reloaded").await;
    assert!(line.contains("log_level"), "{line}");
    let before = daemon.log().len();
    daemon.status().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let loud = daemon.log()[before..].to_string();
    assert!(
        loud.contains("Status"),
        "no request lines after the reload:\n{loud}"
    );

    // A filter that does not parse is refused, naming the key.
    drop_in(&daemon, "70-quiet.toml", "log_level = \"info,=[\"\n");
    let out = run_cli(&["--config", &config_arg(&daemon), "reload"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log_level"));
}
