//! The real server against the echo backend: Exec and Attach over
//! WebSocket and SPDY, PortForward to a local port, tokens, TLS and the
//! listener's limits. No root, no containers, no daemon.

mod common;

use common::{Spdy, Ws};
use cri_streaming::spdy::frame::Frame;
use cri_streaming::testing::EchoBackend;
use cri_streaming::{
    AttachRequest, ExecRequest, Limits, PortForwardRequest, ServerConfig, StreamingServer,
    TerminalSize, TlsPaths,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const V4_BASE64: &str = "v4.base64.channel.k8s.io";

async fn serve(config: ServerConfig) -> (StreamingServer, EchoBackend) {
    let server = StreamingServer::bind(&config).await.unwrap();
    let echo = EchoBackend::default();
    server.spawn(Arc::new(echo.clone())).expect("first spawn");
    (server, echo)
}

fn exec(cmd: &[&str], stdin: bool) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin,
        stdout: true,
        stderr: true,
    }
}

fn error_status(error: Option<&Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(error.map(Vec::as_slice).unwrap_or(b"null")).unwrap()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}");
}

#[tokio::test]
async fn websocket_exec_echoes_and_its_url_is_single_use() {
    let (server, _) = serve(ServerConfig::default()).await;
    let url = server.url(exec(&["echo", "hello", "ws"], false)).unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/exec/"));
    let (mut ws, protocol) = common::ws(&url, &[V4, V5]).await.unwrap();
    assert_eq!(protocol, V5, "the newest protocol offered");
    let seen = common::ws_collect(&mut ws).await;
    assert_eq!(seen[&1], b"hello ws\n");
    assert_eq!(error_status(seen.get(&3))["status"], "Success");
    assert_eq!(common::ws(&url, &[V5]).await.err(), Some(404));
}

#[tokio::test]
async fn websocket_exec_reports_the_exit_code_and_stderr() {
    let (server, _) = serve(ServerConfig::default()).await;
    let url = server.url(exec(&["exit", "3"], false)).unwrap();
    let (mut ws, _) = common::ws(&url, &[V4]).await.unwrap();
    let seen = common::ws_collect(&mut ws).await;
    assert_eq!(seen[&2], b"exiting with 3\n");
    let status = error_status(seen.get(&3));
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    // A command that cannot start is a failure, not a hang.
    let url = server.url(exec(&["/no/such/binary"], false)).unwrap();
    let (mut ws, _) = common::ws(&url, &[V4]).await.unwrap();
    let seen = common::ws_collect(&mut ws).await;
    let status = error_status(seen.get(&3));
    assert_eq!(status["status"], "Failure", "{status}");
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("/no/such/binary"));
}

#[tokio::test]
async fn websocket_base64_stdin_and_a_client_that_leaves_stops_the_exec() {
    let (server, echo) = serve(ServerConfig::default()).await;
    let url = server.url(exec(&["cat"], true)).unwrap();
    let (mut ws, protocol) = common::ws(&url, &[V4_BASE64]).await.unwrap();
    assert_eq!(protocol, V4_BASE64);
    let message = cri_streaming::websocket::encode(
        cri_streaming::websocket::WsProtocol::V4Base64,
        0,
        b"line one\n",
    );
    futures_util::SinkExt::send(&mut ws, message).await.unwrap();
    let reply = futures_util::StreamExt::next(&mut ws)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "1bGluZSBvbmUK");
    drop(ws);
    wait_for("the exec is stopped", || echo.kills() == 1).await;
}

#[tokio::test]
async fn websocket_v5_closes_stdin_and_forwards_terminal_sizes() {
    let (server, echo) = serve(ServerConfig::default()).await;
    let mut request = exec(&["cat"], true);
    request.tty = true;
    let url = server.url(request).unwrap();
    let (mut ws, _) = common::ws(&url, &[V5]).await.unwrap();
    common::ws_send(&mut ws, 4, br#"{"Width":100,"Height":33}"#).await;
    common::ws_send(&mut ws, 0, b"typed").await;
    assert_eq!(common::ws_next(&mut ws).await, Some((1, b"typed".to_vec())));
    // v5's close signal on stdin: on a terminal, EOF is ^D, then the close.
    common::ws_send(&mut ws, 255, &[0]).await;
    let seen = common::ws_collect(&mut ws).await;
    assert_eq!(seen[&1], [4]);
    assert_eq!(error_status(seen.get(&3))["status"], "Success");
    let size = TerminalSize {
        width: 100,
        height: 33,
    };
    assert_eq!(echo.sizes().first(), Some(&size));
}

async fn spdy_exec(
    server: &StreamingServer,
    cmd: &[&str],
) -> (Spdy, std::collections::HashMap<String, u32>) {
    let url = server.url(exec(cmd, false)).unwrap();
    let mut client = common::spdy(&url, &[V4, "channel.k8s.io"]).await.unwrap();
    assert_eq!(client.protocol, V4);
    let ids = client.open_kinds(&["error", "stdout", "stderr"]).await;
    (client, ids)
}

#[tokio::test]
async fn spdy_exec_output_and_exit_codes() {
    let (server, _) = serve(ServerConfig::default()).await;
    let (mut client, ids) = spdy_exec(&server, &["echo", "over", "spdy"]).await;
    let data = client
        .collect(&[ids["error"], ids["stdout"], ids["stderr"]])
        .await;
    assert_eq!(data[&ids["stdout"]], b"over spdy\n");
    assert_eq!(error_status(data.get(&ids["error"]))["status"], "Success");

    let (mut client, ids) = spdy_exec(&server, &["exit", "7"]).await;
    let data = client
        .collect(&[ids["error"], ids["stdout"], ids["stderr"]])
        .await;
    assert_eq!(data[&ids["stderr"]], b"exiting with 7\n");
    let status = error_status(data.get(&ids["error"]));
    assert_eq!(status["details"]["causes"][0]["message"], "7", "{status}");
}

/// What arrives on `stream` until `quiet` passes without a frame for it:
/// the bytes, and whether FIN came.
async fn drain_for(client: &mut Spdy, stream: u32, quiet: Duration) -> (usize, bool) {
    let mut got = 0;
    loop {
        match tokio::time::timeout(quiet, client.next()).await {
            Ok(Some(Frame::Data {
                stream_id,
                flags,
                data,
            })) if stream_id == stream => {
                got += data.len();
                if flags & cri_streaming::spdy::frame::FLAG_FIN != 0 {
                    return (got, true);
                }
            }
            Ok(Some(Frame::GoAway { .. })) | Ok(None) | Err(_) => return (got, false),
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test]
async fn spdy_windows_hold_only_clients_that_grant_them() {
    let (server, _) = serve(ServerConfig::default()).await;
    // A client that never grants credit (kubelet's) still gets everything.
    let (mut client, ids) = spdy_exec(&server, &["zeros", "300000"]).await;
    let data = client.collect(&[ids["stdout"], ids["error"]]).await;
    assert_eq!(data[&ids["stdout"]].len(), 300_000);
    // One that sets a small stream window is held to it, then released.
    let url = server.url(exec(&["zeros", "100000"], false)).unwrap();
    let mut client = common::spdy(&url, &[V4]).await.unwrap();
    client
        .write(Frame::Settings {
            flags: 0,
            entries: vec![(0, 7, 10_000)],
        })
        .await;
    let ids = client.open_kinds(&["error", "stdout", "stderr"]).await;
    let stdout = ids["stdout"];
    let quiet = Duration::from_millis(500);
    assert_eq!(drain_for(&mut client, stdout, quiet).await, (10_000, false));
    let credit = |stream_id, delta| Frame::WindowUpdate { stream_id, delta };
    client.write(credit(stdout, 50_000)).await;
    assert_eq!(drain_for(&mut client, stdout, quiet).await, (50_000, false));
    client.write(credit(stdout, 1_000_000)).await;
    client.write(credit(0, 1_000_000)).await;
    let (rest, fin) = drain_for(&mut client, stdout, Duration::from_secs(5)).await;
    assert_eq!((rest, fin), (40_000, true));
}

#[tokio::test]
async fn spdy_tty_exec_with_stdin_and_resize() {
    let (server, echo) = serve(ServerConfig::default()).await;
    let mut request = exec(&["cat"], true);
    (request.tty, request.stderr) = (true, false);
    let url = server.url(request).unwrap();
    let mut client = common::spdy(&url, &[V4]).await.unwrap();
    let ids = client
        .open_kinds(&["error", "stdin", "stdout", "resize"])
        .await;
    client
        .send(ids["resize"], br#"{"Width":90,"Height":21}"#, false)
        .await;
    client.send(ids["stdin"], b"hello tty", false).await;
    let seen = client.read_until(ids["stdout"], "hello tty").await;
    assert_eq!(seen, "hello tty");
    client.send(ids["stdin"], b"", true).await;
    let data = client.collect(&[ids["error"], ids["stdout"]]).await;
    assert_eq!(error_status(data.get(&ids["error"]))["status"], "Success");
    let sizes = echo.sizes();
    assert_eq!((sizes[0].width, sizes[0].height), (90, 21));
}

#[tokio::test]
async fn attach_carries_stdin_and_a_client_that_leaves_stops_nothing() {
    let (server, echo) = serve(ServerConfig::default()).await;
    let attach = || AttachRequest {
        container_id: "c1".into(),
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let url = server.url(attach()).unwrap();
    let (mut ws, _) = common::ws(&url, &[V5]).await.unwrap();
    common::ws_send(&mut ws, 0, b"one").await;
    assert_eq!(common::ws_next(&mut ws).await, Some((1, b"one".to_vec())));
    drop(ws);
    let url = server.url(attach()).unwrap();
    let mut client = common::spdy(&url, &[V4]).await.unwrap();
    let ids = client
        .open_kinds(&["error", "stdin", "stdout", "stderr"])
        .await;
    client.send(ids["stdin"], b"two", false).await;
    assert_eq!(client.read_until(ids["stdout"], "two").await, "two");
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(echo.kills(), 0, "an attach never stops the container");
    // An attach to a container that does not exist says so.
    let url = server
        .url(AttachRequest {
            container_id: "missing-1".into(),
            ..attach()
        })
        .unwrap();
    let (mut ws, _) = common::ws(&url, &[V5]).await.unwrap();
    let message = error_status(common::ws_collect(&mut ws).await.get(&3))["message"].clone();
    assert_eq!(message, "container missing-1: not found");
}

#[tokio::test]
async fn tokens_are_404_when_unknown_expired_or_for_another_verb() {
    let config = ServerConfig {
        token_ttl: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let (server, _) = serve(config).await;
    let url = server.url(exec(&["echo"], false)).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(common::ws(&url, &[V5]).await.err(), Some(404), "expired");
    let unknown = format!("{}/exec/0123456789abcdef", server.base_url());
    assert_eq!(common::ws(&unknown, &[V5]).await.err(), Some(404));
    let url = server.url(exec(&["echo"], false)).unwrap();
    let other_verb = url.replacen("/exec/", "/attach/", 1);
    assert_eq!(common::ws(&other_verb, &[V5]).await.err(), Some(404));
    // The wrong verb spent the token.
    assert_eq!(common::ws(&url, &[V5]).await.err(), Some(404));
}

#[tokio::test]
async fn unknown_protocols_are_refused_and_the_server_keeps_serving() {
    let (server, echo) = serve(ServerConfig::default()).await;
    let url = server.url(exec(&["echo"], false)).unwrap();
    assert_eq!(common::ws(&url, &["chat"]).await.err(), Some(400));
    let url = server.url(exec(&["echo"], false)).unwrap();
    assert_eq!(
        common::spdy(&url, &["v9.channel.k8s.io"]).await.err(),
        Some(403)
    );
    // Garbage after the upgrade (a SPDY/2 frame) ends that session only,
    // and stops its command.
    let url = server.url(exec(&["sleep"], true)).unwrap();
    let mut client = common::spdy(&url, &[V4]).await.unwrap();
    client
        .open_kinds(&["error", "stdin", "stdout", "stderr"])
        .await;
    client.write(Frame::Ping { id: 1 }).await;
    let mut ponged = false;
    while !ponged {
        ponged = matches!(client.next().await, Some(Frame::Ping { id: 1 }));
    }
    client.raw(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]).await;
    let mut rest = Vec::new();
    while let Some(frame) = client.next().await {
        rest.push(frame);
    }
    assert!(matches!(rest[..], [Frame::GoAway { .. }, ..]), "{rest:?}");
    wait_for("the command is stopped", || echo.kills() == 1).await;
    let url = server.url(exec(&["echo", "still"], false)).unwrap();
    let (mut ws, _) = common::ws(&url, &[V5]).await.unwrap();
    assert_eq!(common::ws_collect(&mut ws).await[&1], b"still\n");
}

#[tokio::test]
async fn port_forward_over_websocket_and_spdy_reaches_the_port() {
    let (server, _) = serve(ServerConfig::default()).await;
    let port = common::echo_server().await;
    let forward = |ports: Vec<u16>| PortForwardRequest {
        pod_sandbox_id: "p1".into(),
        ports,
    };
    // WebSocket: the port from the query.
    let url = server.url(forward(vec![])).unwrap();
    let (mut ws, protocol) = common::ws(&format!("{url}?port={port}"), &["v4.channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(protocol, "v4.channel.k8s.io");
    let prefix = port.to_le_bytes().to_vec();
    assert_eq!(common::ws_next(&mut ws).await, Some((0, prefix.clone())));
    assert_eq!(common::ws_next(&mut ws).await, Some((1, prefix)));
    common::ws_send(&mut ws, 0, b"ping over ws").await;
    assert_eq!(
        common::ws_next(&mut ws).await,
        Some((0, b"ping over ws".to_vec()))
    );
    // SPDY: the port on each stream.
    let url = server.url(forward(vec![port])).unwrap();
    let mut client: Spdy = common::spdy(&url, &["portforward.k8s.io"]).await.unwrap();
    let p = port.to_string();
    let _error = client
        .open(&[("streamType", "error"), ("port", &p), ("requestID", "0")])
        .await;
    let data = client
        .open(&[("streamType", "data"), ("port", &p), ("requestID", "0")])
        .await;
    client.send(data, b"ping over spdy", false).await;
    assert_eq!(
        client.read_until(data, "ping over spdy").await,
        "ping over spdy"
    );
    // A closed port is reported on the error stream, naming it.
    let closed = common::closed_port().to_string();
    let url = server.url(forward(vec![])).unwrap();
    let mut client = common::spdy(&url, &["portforward.k8s.io"]).await.unwrap();
    let error = client
        .open(&[
            ("streamType", "error"),
            ("port", &closed),
            ("requestID", "1"),
        ])
        .await;
    let data = client
        .open(&[
            ("streamType", "data"),
            ("port", &closed),
            ("requestID", "1"),
        ])
        .await;
    let got = client.collect(&[error, data]).await;
    let message = String::from_utf8_lossy(&got[&error]).into_owned();
    assert!(
        message.starts_with(&format!("pod p1: port {closed}: ")),
        "{message}"
    );
}

#[tokio::test]
async fn tls_hands_out_https_urls_for_clients_that_trust_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = common::certificate();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let config = ServerConfig {
        tls: Some(TlsPaths { cert, key }),
        ..ServerConfig::default()
    };
    let (server, _) = serve(config).await;
    let url = server.url(exec(&["echo", "over tls"], false)).unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let (host, path) = common::split_url(&url);
    let io = common::tls(&host, &cert_pem).await.unwrap();
    let mut client = common::spdy_on(io, &path, &[V4]).await.unwrap();
    let ids = client.open_kinds(&["error", "stdout", "stderr"]).await;
    let data = client.collect(&[ids["error"], ids["stdout"]]).await;
    assert_eq!(data[&ids["stdout"]], b"over tls\n");
    // A client trusting another certificate gets nowhere; plain HTTP to the
    // TLS port is not served.
    let (other, _) = common::certificate();
    assert!(common::tls(&host, &other).await.is_err());
    let url = server.url(exec(&["echo"], false)).unwrap();
    let plain = url.replacen("https://", "http://", 1);
    assert!(common::spdy(&plain, &[V4]).await.is_err());
    // A key that does not go with the certificate refuses to start, naming it.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not a key").unwrap();
    let config = ServerConfig {
        tls: Some(TlsPaths {
            cert: dir.path().join("tls.crt"),
            key: bad.clone(),
        }),
        ..ServerConfig::default()
    };
    let err = StreamingServer::bind(&config).await.unwrap_err();
    assert!(err.to_string().contains(bad.to_str().unwrap()), "{err}");
}

/// Reads until the peer closes; true when it did within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = async { while let Ok(1..) = stream.read(&mut buf).await {} };
    tokio::time::timeout(within, read).await.is_ok()
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_slow_headers_time_out() {
    let limits = Limits {
        max_connections: 3,
        header_timeout: Duration::from_millis(300),
    };
    let config = ServerConfig {
        limits,
        ..ServerConfig::default()
    };
    let (server, _) = serve(config).await;
    let address = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(address).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
    // A held connection is answered: an unknown token is 404.
    held[0]
        .write_all(b"GET /exec/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    held[0].read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    // Half a request line, or nothing at all, is closed after the timeout.
    let started = Instant::now();
    held[1].write_all(b"GET /ex").await.unwrap();
    assert!(closed_within(&mut held[1], Duration::from_secs(5)).await);
    assert!(closed_within(&mut held[2], Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(150));
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Places are free again.
    let url = server.url(exec(&["echo", "again"], false)).unwrap();
    let (mut ws, _): (Ws, _) = common::ws(&url, &[V5]).await.unwrap();
    assert_eq!(common::ws_collect(&mut ws).await[&1], b"again\n");
}
