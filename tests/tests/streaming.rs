//! Exec, Attach and PortForward through the streaming server (issue 7), with
//! the tests crate's own WebSocket and SPDY clients.

use cri_api::v1 as cri;
use std::time::Duration;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX, HANDLERS};
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

    /// How many processes in the container run a command matching `pattern`.
    async fn count_running(&self, pattern: &str) -> String {
        let (_, out) = self
            .daemon
            .sh(
                &self.container,
                &format!("ps -o args | grep -c '^{pattern}' || true"),
            )
            .await;
        out.trim().to_string()
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
    session
        .stdin(b"sleep 1; stty size; echo mark-$((40+2))\n")
        .await;
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

use tests::spdy_client;

const SPDY_V4: &str = "v4.channel.k8s.io";

/// Opens the remotecommand streams a client of `protocol` opens.
async fn spdy_streams(
    client: &mut spdy_client::SpdyClient,
    kinds: &[&str],
) -> std::collections::HashMap<String, u32> {
    let mut ids = std::collections::HashMap::new();
    for kind in kinds {
        let id = client.open(&[("streamType", kind)]).await;
        ids.insert(kind.to_string(), id);
    }
    ids
}

#[tokio::test]
async fn spdy_exec_echo_and_exit_code() {
    let pod = sleeper("spdyecho").await;
    let url = pod.exec_url(&["echo", "over spdy"], false, false).await;
    let mut client = spdy_client::connect(&url, &[SPDY_V4, "channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(client.protocol, SPDY_V4);
    let ids = spdy_streams(&mut client, &["error", "stdout", "stderr"]).await;
    client.ping(9).await;
    let data = client
        .collect(&[ids["error"], ids["stdout"], ids["stderr"]])
        .await;
    assert_eq!(
        String::from_utf8_lossy(&data[&ids["stdout"]]),
        "over spdy\n"
    );
    let status: serde_json::Value =
        serde_json::from_slice(data.get(&ids["error"]).unwrap()).unwrap();
    assert_eq!(status["status"], "Success");

    let url = pod.exec_url(&["sh", "-c", "exit 3"], false, false).await;
    let mut client = spdy_client::connect(&url, &[SPDY_V4]).await.unwrap();
    let ids = spdy_streams(&mut client, &["error", "stdout", "stderr"]).await;
    let data = client
        .collect(&[ids["error"], ids["stdout"], ids["stderr"]])
        .await;
    let status: serde_json::Value =
        serde_json::from_slice(data.get(&ids["error"]).unwrap()).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    pod.remove().await;
}

/// What arrives on `stream` until `quiet` passes without a frame for it, or
/// the session ends.
async fn drain_for(
    client: &mut spdy_client::SpdyClient,
    stream: u32,
    quiet: Duration,
) -> (usize, bool) {
    let mut got = 0;
    loop {
        match tokio::time::timeout(quiet, client.next()).await {
            Ok(Some(spdy_client::Received::Data {
                stream: s,
                data,
                fin,
            })) if s == stream => {
                got += data.len();
                if fin {
                    return (got, true);
                }
            }
            Ok(Some(spdy_client::Received::GoAway)) | Ok(None) | Err(_) => return (got, false),
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test]
async fn spdy_output_obeys_the_windows_of_a_client_that_grants_them() {
    let pod = sleeper("spdyflow").await;
    const SIZE: usize = 300_000;
    let cmd = ["head", "-c", "300000", "/dev/zero"];
    // kubelet's SPDY library never grants credit: it still gets everything.
    let url = pod.exec_url(&cmd, false, false).await;
    let mut client = spdy_client::connect(&url, &[SPDY_V4]).await.unwrap();
    let ids = spdy_streams(&mut client, &["error", "stdout", "stderr"]).await;
    let data = client
        .collect(&[ids["error"], ids["stdout"], ids["stderr"]])
        .await;
    assert_eq!(data[&ids["stdout"]].len(), SIZE);
    // A client that does flow control, with a small stream window: the
    // server stops at the window and goes on as credit arrives.
    let url = pod.exec_url(&cmd, false, false).await;
    let mut client = spdy_client::connect(&url, &[SPDY_V4]).await.unwrap();
    client.initial_window(10_000).await;
    let ids = spdy_streams(&mut client, &["error", "stdout", "stderr"]).await;
    let stdout = ids["stdout"];
    let (first, fin) = drain_for(&mut client, stdout, Duration::from_secs(2)).await;
    assert_eq!((first, fin), (10_000, false), "held at the stream window");
    client.window_update(stdout, 50_000).await;
    let (second, _) = drain_for(&mut client, stdout, Duration::from_secs(2)).await;
    assert_eq!(second, 50_000, "released by the credit");
    // The session window (64 KiB) is nearly spent now: stream credit alone
    // releases only what is left of it (less the few bytes of the exit
    // status the error stream may have taken from it).
    client.window_update(stdout, 1_000_000).await;
    let (third, _) = drain_for(&mut client, stdout, Duration::from_secs(2)).await;
    assert!(
        (5_400..=65_536 - 60_000).contains(&third),
        "held at the session window: {third}"
    );
    client.window_update(0, 1_000_000).await;
    let (rest, fin) = drain_for(&mut client, stdout, Duration::from_secs(10)).await;
    assert!(fin, "the stream ends once everything is sent");
    assert_eq!(first + second + third + rest, SIZE);
    pod.remove().await;
}

#[tokio::test]
async fn a_stream_opened_after_the_command_ended_does_not_run_it_again() {
    let pod = sleeper("spdylate").await;
    let cmd = [
        "sh",
        "-c",
        "echo ran >> /tmp/runs; head -c 100000 /dev/zero",
    ];
    let url = pod.exec_url(&cmd, false, false).await;
    let mut client = spdy_client::connect(&url, &[SPDY_V4]).await.unwrap();
    // A small window holds the output back, so the session outlives the
    // command while the client still talks to it.
    client.initial_window(1000).await;
    let ids = spdy_streams(&mut client, &["error", "stdout", "stderr"]).await;
    let (held, _) = drain_for(&mut client, ids["stdout"], Duration::from_secs(2)).await;
    assert_eq!(held, 1000);
    // The command has ended by now; a late optional stream completes no set.
    let late = client.open(&[("streamType", "resize")]).await;
    let mut reset = false;
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_secs(2), client.next()).await {
            Ok(Some(spdy_client::Received::Reset(s, _))) if s == late => {
                reset = true;
                break;
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(reset, "the late stream is refused");
    client.window_update(ids["stdout"], 1_000_000).await;
    client.window_update(0, 1_000_000).await;
    let (rest, fin) = drain_for(&mut client, ids["stdout"], Duration::from_secs(10)).await;
    assert!(fin);
    assert_eq!(held + rest, 100_000);
    let (_, runs) = pod.daemon.sh(&pod.container, "cat /tmp/runs").await;
    assert_eq!(runs, "ran\n", "the command ran once");
    pod.remove().await;
}

#[tokio::test]
async fn spdy_exec_tty_with_stdin() {
    let pod = sleeper("spdytty").await;
    let url = pod.exec_url(&["sh"], true, true).await;
    let mut client = spdy_client::connect(&url, &[SPDY_V4]).await.unwrap();
    let ids = spdy_streams(&mut client, &["error", "stdin", "stdout", "resize"]).await;
    client
        .send(ids["resize"], br#"{"Width":90,"Height":21}"#, false)
        .await;
    client
        .send(
            ids["stdin"],
            b"sleep 1; stty size; echo sp-$((6*7))\n",
            false,
        )
        .await;
    let seen = client.read_until(ids["stdout"], "sp-42").await;
    assert!(seen.contains("sp-42"), "{seen}");
    assert!(seen.contains("21 90"), "{seen}");
    client.send(ids["stdin"], b"exit\n", false).await;
    let data = client.collect(&[ids["error"], ids["stdout"]]).await;
    let status: serde_json::Value =
        serde_json::from_slice(data.get(&ids["error"]).unwrap()).unwrap();
    assert_eq!(status["status"], "Success", "{status}");
    pod.remove().await;
}

#[tokio::test]
async fn spdy_refuses_bad_input_and_keeps_serving() {
    let pod = sleeper("spdybad").await;
    // Unknown protocol version: 403.
    let url = pod.exec_url(&["true"], false, false).await;
    assert!(matches!(
        spdy_client::connect(&url, &["v9.channel.k8s.io"]).await,
        Err(403)
    ));
    // Garbage after the upgrade ends the session, killing nothing else.
    let url = pod.exec_url(&["sleep", "300"], false, true).await;
    let mut client = spdy_client::connect(&url, &[SPDY_V4]).await.unwrap();
    let _ = spdy_streams(&mut client, &["error", "stdin", "stdout", "stderr"]).await;
    client.raw(&[0x80, 2, 0, 1, 0, 0, 0, 0]).await; // a SPDY/2 frame
    let mut ended = false;
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
            Ok(Some(spdy_client::Received::GoAway)) | Ok(None) => {
                ended = true;
                break;
            }
            Ok(Some(_)) => {}
            Err(_) => break,
        }
    }
    assert!(ended, "a protocol violation must end the session");
    // The exec'd sleep was killed with the session.
    let mut left = String::new();
    for _ in 0..50 {
        left = pod.count_running("sleep 300").await;
        if left == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, "0", "the exec'd process outlived its session");
    let url = pod.exec_url(&["echo", "fine"], false, false).await;
    let mut client = spdy_client::connect(&url, &[SPDY_V4]).await.unwrap();
    let ids = spdy_streams(&mut client, &["error", "stdout", "stderr"]).await;
    let data = client
        .collect(&[ids["error"], ids["stdout"], ids["stderr"]])
        .await;
    assert_eq!(String::from_utf8_lossy(&data[&ids["stdout"]]), "fine\n");
    pod.remove().await;
}

async fn port_forward_url(daemon: &Daemon, pod: &str, port: i32) -> String {
    daemon
        .runtime()
        .await
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.to_string(),
            port: vec![port],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url
}

/// Two concurrent HTTP GETs through one port-forward session.
async fn fetch_twice(url: &str, port: u16) -> Vec<String> {
    let mut client = spdy_client::connect(url, &["portforward.k8s.io"])
        .await
        .unwrap();
    assert_eq!(client.protocol, "portforward.k8s.io");
    let port = port.to_string();
    let mut data_ids = Vec::new();
    for request in ["0", "1"] {
        let _error = client
            .open(&[
                ("streamType", "error"),
                ("port", &port),
                ("requestID", request),
            ])
            .await;
        let data = client
            .open(&[
                ("streamType", "data"),
                ("port", &port),
                ("requestID", request),
            ])
            .await;
        data_ids.push(data);
    }
    for id in &data_ids {
        client
            .send(*id, b"GET /index.html HTTP/1.0\r\n\r\n", false)
            .await;
    }
    let got = client.collect(&data_ids).await;
    data_ids
        .iter()
        .map(|id| {
            String::from_utf8_lossy(got.get(id).map(Vec::as_slice).unwrap_or(b"")).into_owned()
        })
        .collect()
}

/// Waits until httpd in container `id` answers on `port`.
async fn wait_for_httpd(daemon: &Daemon, id: &str, port: u16) {
    let probe = format!("wget -q -O - http://127.0.0.1:{port}/index.html");
    for _ in 0..100 {
        if daemon.sh(id, &probe).await.1.contains("hello-pf") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("httpd never answered on port {port}");
}

fn httpd(port: u16) -> cri::ContainerConfig {
    let script = format!(
        "mkdir -p /tmp/www && echo hello-pf > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /tmp/www"
    );
    container_config("httpd", BUSYBOX, &["sh", "-c", &script])
}

/// critest "Streaming: portforward" serves on port 80: the same on both
/// handlers (gVisor's low ports: see cri-server/src/gvisor.rs).
#[tokio::test]
async fn spdy_port_forward_to_port_80_on_both_handlers() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    for handler in HANDLERS {
        let pod = daemon
            .run_pod(pod_config(&format!("pf80-{handler}")), handler)
            .await;
        daemon.create_started(&pod, httpd(80)).await;
        let bodies = fetch_through_port_forward(&daemon, &pod, 80).await;
        for body in &bodies {
            assert!(body.contains("hello-pf"), "{handler}: {bodies:?}");
        }
        daemon.remove_pod(&pod).await;
    }
}

/// Two fetches of httpd's page on `port` of `pod` through a port-forward,
/// retried until httpd is up (busybox's wget inside gVisor cannot probe it:
/// EAGAIN on its host sockets).
async fn fetch_through_port_forward(daemon: &Daemon, pod: &str, port: u16) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..50 {
        let url = port_forward_url(daemon, pod, i32::from(port)).await;
        bodies = fetch_twice(&url, port).await;
        if bodies.iter().all(|b| b.contains("hello-pf")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bodies
}

#[tokio::test]
async fn spdy_port_forward_to_httpd_in_a_pod() {
    let pod = pod_with("pfpod", "", httpd(8080)).await;
    wait_for_httpd(&pod.daemon, &pod.container, 8080).await;
    let url = port_forward_url(&pod.daemon, &pod.id, 8080).await;
    let bodies = fetch_twice(&url, 8080).await;
    for body in &bodies {
        assert!(body.contains("hello-pf"), "{bodies:?}");
    }
    // The same over WebSocket: the port opens each channel, then data.
    let url = port_forward_url(&pod.daemon, &pod.id, 8080).await;
    let mut session = ws_client::connect(&url, &["v4.channel.k8s.io"])
        .await
        .unwrap();
    let mut prefixes = Vec::new();
    for _ in 0..2 {
        prefixes.push(session.next().await.unwrap());
    }
    assert_eq!(
        prefixes,
        [
            (0, 8080u16.to_le_bytes().to_vec()),
            (1, 8080u16.to_le_bytes().to_vec())
        ]
    );
    session.stdin(b"GET /index.html HTTP/1.0\r\n\r\n").await;
    let mut body = Vec::new();
    while !String::from_utf8_lossy(&body).contains("hello-pf") {
        match tokio::time::timeout(Duration::from_secs(10), session.next()).await {
            Ok(Some((0, data))) => body.extend(data),
            Ok(Some((channel, data))) => {
                panic!("channel {channel}: {}", String::from_utf8_lossy(&data))
            }
            _ => break,
        }
    }
    assert!(String::from_utf8_lossy(&body).contains("hello-pf"));
    // A closed port reports an error, not a hang.
    let url = port_forward_url(&pod.daemon, &pod.id, 8081).await;
    let mut client = spdy_client::connect(&url, &["portforward.k8s.io"])
        .await
        .unwrap();
    let error = client
        .open(&[
            ("streamType", "error"),
            ("port", "8081"),
            ("requestID", "0"),
        ])
        .await;
    let data = client
        .open(&[("streamType", "data"), ("port", "8081"), ("requestID", "0")])
        .await;
    let got = tokio::time::timeout(Duration::from_secs(20), client.collect(&[error, data]))
        .await
        .expect("no hang on a closed port");
    let message = String::from_utf8_lossy(got.get(&error).map(Vec::as_slice).unwrap_or(b""));
    assert!(message.contains("8081"), "{message}");
    pod.remove().await;
}

#[tokio::test]
async fn spdy_port_forward_to_a_host_network_pod() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    for (i, handler) in HANDLERS.into_iter().enumerate() {
        let port = 20000 + (std::process::id() % 20000) as u16 + i as u16;
        port_forward_to_a_host_network_pod_on(&daemon, handler, port).await;
    }
}

async fn port_forward_to_a_host_network_pod_on(daemon: &Daemon, handler: &str, port: u16) {
    let mut config = pod_config(&format!("pfhost-{handler}"));
    config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = daemon.run_pod(config, handler).await;
    daemon.create_started(&id, httpd(port)).await;
    let bodies = fetch_through_port_forward(daemon, &id, port).await;
    for body in &bodies {
        assert!(body.contains("hello-pf"), "{handler}: {bodies:?}");
    }
    daemon.remove_pod(&id).await;
}

async fn attach_url(pod: &Pod, stdin: bool) -> String {
    pod.daemon
        .runtime()
        .await
        .attach(cri::AttachRequest {
            container_id: pod.container.clone(),
            stdin,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url
}

fn echoer() -> cri::ContainerConfig {
    let mut config = container_config(
        "echoer",
        BUSYBOX,
        &["sh", "-c", "while read line; do echo \"got: $line\"; done"],
    );
    config.stdin = true;
    config
}

#[tokio::test]
async fn attach_to_a_process_that_echoes_stdin() {
    let pod = pod_with("attach", "", echoer()).await;
    // WebSocket.
    let url = attach_url(&pod, true).await;
    let mut session = ws_client::connect(&url, &[V5]).await.unwrap();
    session.stdin(b"one\n").await;
    let seen = session.read_until("got: one").await;
    assert!(seen.contains("got: one"), "{seen}");
    session.abandon();
    // SPDY, after the first client left: the container still runs.
    let url = attach_url(&pod, true).await;
    let mut client = spdy_client::connect(&url, &[SPDY_V4]).await.unwrap();
    let ids = spdy_streams(&mut client, &["error", "stdin", "stdout", "stderr"]).await;
    client.send(ids["stdin"], b"two\n", false).await;
    let seen = client.read_until(ids["stdout"], "got: two").await;
    assert!(seen.contains("got: two"), "{seen}");
    let status = pod.daemon.container_status(&pod.container).await;
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
    pod.remove().await;
}

#[tokio::test]
async fn runsc_exec_attach_and_port_forward() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let id = daemon.run_pod(pod_config("gvisor"), "runsc").await;
    let container = daemon.create_started(&id, echoer()).await;
    let pod = Pod {
        daemon,
        id,
        container,
    };
    // Exec without a terminal: output and exit code.
    let url = pod
        .exec_url(&["sh", "-c", "echo in-gvisor; exit 3"], false, false)
        .await;
    let out = ws_client::connect(&url, &[V5])
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in-gvisor\n",
        "{out:?}"
    );
    assert_eq!(
        out.status()["details"]["causes"][0]["message"],
        "3",
        "{out:?}"
    );
    // Exec on a terminal with stdin.
    let url = pod.exec_url(&["sh"], true, true).await;
    let mut session = ws_client::connect(&url, &[V5]).await.unwrap();
    session.stdin(b"echo tty-$((1+1))\n").await;
    let seen = session.read_until("tty-2").await;
    assert!(seen.contains("tty-2"), "{seen}");
    session.stdin(b"exit\n").await;
    let _ = tokio::time::timeout(Duration::from_secs(20), session.collect())
        .await
        .expect("tty exec ends");
    // A client that vanishes takes the whole exec'd tree with it, children
    // included, although gVisor hides them from the host's /proc.
    let url = pod
        .exec_url(&["sh", "-c", "sleep 301 & sleep 302"], false, false)
        .await;
    let session = ws_client::connect(&url, &[V5]).await.unwrap();
    let mut running = String::new();
    for _ in 0..50 {
        running = pod.count_running("sleep 30[12]").await;
        if running == "2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(running, "2", "both sleeps run before the client leaves");
    session.abandon();
    let mut left = String::new();
    for _ in 0..100 {
        left = pod.count_running("sleep 30[12]").await;
        if left == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, "0", "the exec'd tree outlived its session");
    // Attach.
    let url = attach_url(&pod, true).await;
    let mut session = ws_client::connect(&url, &[V5]).await.unwrap();
    session.stdin(b"three\n").await;
    let seen = session.read_until("got: three").await;
    assert!(seen.contains("got: three"), "{seen}");
    session.abandon();
    // Port-forward into the gVisor pod.
    let _httpd = pod.daemon.create_started(&pod.id, httpd(8080)).await;
    // Until httpd listens, a forwarded connection is refused; then both
    // concurrent requests must succeed.
    let mut bodies = Vec::new();
    for _ in 0..50 {
        let url = port_forward_url(&pod.daemon, &pod.id, 8080).await;
        bodies = fetch_twice(&url, 8080).await;
        if bodies.iter().all(|b| b.contains("hello-pf")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(bodies.iter().all(|b| b.contains("hello-pf")), "{bodies:?}");
    pod.remove().await;
}

/// A self-signed certificate for `localhost`, written into `dir`.
fn tls_files(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
    (cert.cert.pem(), c, k)
}

#[tokio::test]
async fn streaming_over_tls_hands_out_https_urls_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let pod = pod_with(
        "tlsexec",
        &format!(
            "[streaming]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        container_config("sleeper", BUSYBOX, &["sleep", "600"]),
    )
    .await;
    let url = pod.exec_url(&["echo", "over tls"], false, false).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let mut client = spdy_client::connect_tls(&url, &[SPDY_V4], &ca, "localhost")
        .await
        .expect("TLS + SPDY upgrade");
    let ids = spdy_streams(&mut client, &["error", "stdout", "stderr"]).await;
    let data = client
        .collect(&[ids["error"], ids["stdout"], ids["stderr"]])
        .await;
    assert_eq!(String::from_utf8_lossy(&data[&ids["stdout"]]), "over tls\n");
    // A client that does not trust the certificate gets nowhere, and plain
    // HTTP to the TLS port is not served.
    let url = pod.exec_url(&["true"], false, false).await;
    let (other_ca, _, _) = tls_files(tempfile::tempdir().unwrap().path());
    assert!(
        spdy_client::connect_tls(&url, &[SPDY_V4], &other_ca, "localhost")
            .await
            .is_err()
    );
    let plain = url.replacen("https://", "http://", 1);
    assert!(spdy_client::connect(&plain, &[SPDY_V4]).await.is_err());
    pod.remove().await;
}

#[test]
fn an_unusable_tls_key_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = tls_files(dir.path());
    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "not a key").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "socket = \"{0}/cri.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             [streaming]\ntls_cert = \"{1}\"\ntls_key = \"{2}\"\n",
            dir.path().display(),
            cert.display(),
            bad_key.display()
        ),
    )
    .unwrap();
    let out = tests::daemon::run_cli(&["--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.contains(bad_key.to_str().unwrap()), "{stderr}");
    assert!(
        !dir.path().join("cri.sock").exists(),
        "no socket left behind"
    );
    tests::daemon::unmount_pin_dir(dir.path());
}
