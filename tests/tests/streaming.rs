//! Exec, Attach and PortForward through the streaming server (issue 7), with
//! the tests crate's own WebSocket and SPDY clients.

use k8s_cri::v1 as cri;
use std::time::Duration;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX};
use tests::ws_client::{self, ConnectError};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const V4_BASE64: &str = "v4.base64.channel.k8s.io";

struct Pod {
    daemon: Daemon,
    id: String,
    container: String,
}

async fn pod_with(name: &str, extra: &str, config: cri::ContainerConfig) -> Pod {
    let daemon = Daemon::start(extra).await;
    daemon.pull(BUSYBOX).await;
    let id = daemon.run_pod(pod_config(name), "").await;
    let container = daemon.create_started(&id, config).await;
    Pod {
        daemon,
        id,
        container,
    }
}

async fn sleeper(name: &str) -> Pod {
    pod_with(
        name,
        "",
        container_config("sleeper", BUSYBOX, &["sleep", "600"]),
    )
    .await
}

impl Pod {
    async fn exec_url(&self, cmd: &[&str], tty: bool, stdin: bool) -> String {
        self.daemon
            .runtime()
            .await
            .exec(cri::ExecRequest {
                container_id: self.container.clone(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin,
                stdout: true,
                stderr: !tty,
            })
            .await
            .expect("Exec")
            .into_inner()
            .url
    }

    async fn remove(self) {
        self.daemon.remove_pod(&self.id).await;
    }
}

#[tokio::test]
async fn websocket_exec_echo_without_tty_or_stdin() {
    let pod = sleeper("wsecho").await;
    let url = pod
        .exec_url(&["echo", "hello from exec"], false, false)
        .await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let session = ws_client::connect(&url, &[V5, V4]).await.unwrap();
    assert_eq!(session.protocol, V5);
    let out = session.collect().await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from exec\n");
    assert_eq!(out.status()["status"], "Success", "{:?}", out);
    // Single use: the same URL again is 404.
    match ws_client::connect(&url, &[V5]).await {
        Err(ConnectError::Status(404)) => {}
        other => panic!("reused token: {:?}", other.map(|s| s.protocol)),
    }
    pod.remove().await;
}

#[tokio::test]
async fn websocket_exec_reports_exit_code_and_stderr() {
    let pod = sleeper("wsexit").await;
    let url = pod
        .exec_url(&["sh", "-c", "echo oops >&2; exit 3"], false, false)
        .await;
    let out = ws_client::connect(&url, &[V4])
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    let status = out.status();
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    pod.remove().await;
}

#[tokio::test]
async fn websocket_exec_missing_command_fails_instead_of_hanging() {
    let pod = sleeper("wsmissing").await;
    let url = pod.exec_url(&["/no/such/binary"], false, false).await;
    let session = ws_client::connect(&url, &[V5]).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), session.collect())
        .await
        .expect("a missing command must not hang");
    let status = out.status();
    assert_eq!(status["status"], "Failure", "{status}");
    pod.remove().await;
}

#[tokio::test]
async fn websocket_exec_stdin_without_tty_base64() {
    let pod = sleeper("wsstdin").await;
    let url = pod.exec_url(&["cat"], false, true).await;
    let mut session = ws_client::connect(&url, &[V4_BASE64]).await.unwrap();
    assert_eq!(session.protocol, V4_BASE64);
    session.stdin(b"line one\n").await;
    let seen = session.read_until("line one").await;
    assert!(seen.contains("line one"), "{seen}");
    // Leaving mid-stream kills `cat`: the container has no cat left.
    session.abandon();
    let mut left = String::new();
    for _ in 0..50 {
        let (_, out) = pod
            .daemon
            .sh(&pod.container, "ps -o comm | grep -c '^cat' || true")
            .await;
        left = out.trim().to_string();
        if left == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, "0", "cat still running after the client left");
    pod.remove().await;
}

#[tokio::test]
async fn websocket_exec_tty_shell() {
    let pod = sleeper("wstty").await;
    let url = pod.exec_url(&["sh"], true, true).await;
    let mut session = ws_client::connect(&url, &[V5]).await.unwrap();
    session.resize(100, 33).await;
    session.stdin(b"stty size; echo mark-$((40+2))\n").await;
    let seen = session.read_until("mark-42").await;
    assert!(seen.contains("mark-42"), "{seen}");
    assert!(seen.contains("33 100"), "terminal size not applied: {seen}");
    session.stdin(b"exit 7\n").await;
    let out = session.collect().await;
    assert_eq!(
        out.status()["details"]["causes"][0]["message"],
        "7",
        "{out:?}"
    );
    pod.remove().await;
}

#[tokio::test]
async fn expired_and_unknown_tokens_are_404() {
    let pod = pod_with(
        "wsexpiry",
        "[streaming]\ntoken_ttl_seconds = 1\n",
        container_config("sleeper", BUSYBOX, &["sleep", "600"]),
    )
    .await;
    let url = pod.exec_url(&["true"], false, false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(
        ws_client::connect(&url, &[V5]).await,
        Err(ConnectError::Status(404))
    ));
    let base = url.rsplit_once('/').unwrap().0;
    assert!(matches!(
        ws_client::connect(&format!("{base}/0123456789abcdef"), &[V5]).await,
        Err(ConnectError::Status(404))
    ));
    // An unknown subprotocol is refused, and the server keeps serving.
    let url = pod.exec_url(&["true"], false, false).await;
    assert!(matches!(
        ws_client::connect(&url, &["chat"]).await,
        Err(ConnectError::Status(400))
    ));
    let url = pod.exec_url(&["echo", "still"], false, false).await;
    let out = ws_client::connect(&url, &[V5])
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still\n");
    pod.remove().await;
}
