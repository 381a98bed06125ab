//! The daemon's TCP listeners have limits (issue #14): anything that
//! reaches them, a host-network pod included, can hold only so many
//! connections (32 on metrics, 256 on streaming; more are closed at once)
//! and only for so long without sending a whole request header (10 s on
//! metrics, 15 s on streaming), and the daemon keeps serving meanwhile.

use cri_api::v1 as cri;
use std::time::{Duration, Instant};
use tests::daemon::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// The streaming server's port, from the daemon's log.
fn streaming_port(daemon: &Daemon) -> u16 {
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("streaming server listening"))
        .unwrap_or_else(|| panic!("no streaming url in the log:\n{log}"));
    let url = line.split("url=").nth(1).expect("url=").trim();
    url.rsplit(':').next().unwrap().parse().expect("a port")
}

/// Reads until the peer closes; true when it did within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

/// First line of the answer to `GET path` sent on `stream`.
async fn status_line(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_string()
}

/// Holds `cap` connections to `port`, checks one more is closed at once
/// while a held one is still answered, then that half a request line and
/// an idle connection are closed after `header_timeout` (not before half of
/// it), and that a fresh connection is answered afterwards.
async fn check_listener(port: u16, cap: usize, header_timeout: Duration, path: &str, ok: &str) {
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await,
        "port {port}: connection {} beyond the cap was not closed",
        cap + 1
    );
    let answer = status_line(&mut held[0], path).await;
    assert!(
        answer.contains(ok),
        "port {port}: a held connection got {answer:?}"
    );

    let started = Instant::now();
    held[1].write_all(b"GET /metr").await.unwrap();
    let bound = header_timeout + Duration::from_secs(5);
    assert!(
        closed_within(&mut held[1], bound).await,
        "port {port}: slow header kept open"
    );
    assert!(
        closed_within(&mut held[2], bound).await,
        "port {port}: idle connection kept open"
    );
    assert!(
        started.elapsed() >= header_timeout / 2,
        "port {port}: closed too early"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fresh = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let answer = status_line(&mut fresh, path).await;
    assert!(answer.contains(ok), "port {port}: afterwards {answer:?}");
}

#[tokio::test]
async fn listeners_cap_connections_and_close_slow_headers() {
    let metrics = free_port();
    let daemon = Daemon::start(&format!("[metrics]\naddress = \"127.0.0.1:{metrics}\"\n")).await;
    let streaming = streaming_port(&daemon);
    tokio::join!(
        check_listener(metrics, 32, Duration::from_secs(10), "/metrics", "200"),
        // An unknown token is a 404: the server answers.
        check_listener(streaming, 256, Duration::from_secs(15), "/exec/none", "404"),
    );
    // The gRPC socket kept serving.
    let version = daemon
        .runtime()
        .await
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
    assert_eq!(version.into_inner().runtime_api_version, "v1");
}
