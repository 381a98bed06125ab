//! A tiny HTTP/1.1 server on loopback standing in for a registry that
//! misbehaves in ways the real one cannot be made to (wrong bytes, 401s), or
//! that counts requests.

use image_store::{RegistriesConfig, RegistryConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the fake registry answers: status, headers, body.
pub type Response = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A one-shot-per-connection HTTP server answering from `route`.
pub async fn serve(route: fn(&str) -> Response) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                // Slow enough that concurrent pulls overlap.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let (status, headers, body) = route(&path);
                let mut response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str("\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    address
}

/// A registry configuration reaching `address` over plain HTTP.
pub fn insecure(address: &str) -> RegistriesConfig {
    RegistriesConfig {
        registries: vec![RegistryConfig {
            prefix: address.into(),
            mirrors: vec![],
            insecure: true,
        }],
    }
}
