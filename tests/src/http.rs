//! Plain HTTP GETs: on loopback for the daemon's `/metrics` endpoint, and
//! to servers in pods.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP/1.0 `GET /` to `addr` (`ip:port`), retried for up to ten
/// seconds until something answers; the whole answer. Blocking: for a
/// server just started in a pod.
pub fn get_blocking(addr: &str) -> String {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().expect("an ip:port");
    for _ in 0..100 {
        let timeout = std::time::Duration::from_secs(2);
        if let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) {
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("read timeout");
            let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut body = String::new();
            let _ = stream.read_to_string(&mut body);
            if !body.is_empty() {
                return body;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing answered on {addr}");
}

/// A loopback port nothing listens on (bound and let go).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// `GET path` on 127.0.0.1:`port`: the status code and the body; `Err`
/// when nothing accepts the connection.
pub async fn try_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    Ok((status, body.to_string()))
}

/// [`try_get`], panicking when nothing listens.
pub async fn get(port: u16, path: &str) -> (u16, String) {
    try_get(port, path)
        .await
        .unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}{path}: {e}"))
}
