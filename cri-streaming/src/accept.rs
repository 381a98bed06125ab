//! The accept loop of a TCP listener with limits (the streaming server's,
//! and any other a runtime serves, such as a metrics endpoint): one task per
//! connection, a cap on how many are open at once, and a pause instead of a
//! spin when accepting fails.
//!
//! Anything that reaches the port can connect, including a host-network pod.
//! Each listener therefore holds at most [`Limits::max_connections`]
//! connections (a connection beyond it is closed at once, so the process's
//! descriptors cannot be exhausted through it), and its HTTP server closes
//! a connection that takes longer than [`Limits::header_timeout`] to send a
//! request's headers: slow headers (slowloris) and idle keep-alive
//! connections both end there.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long to wait after a failed accept (EMFILE and friends) before the
/// next one, so a full descriptor table does not become a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How many connections a listener holds, and how long a client may take to
/// send a request's headers (or stay idle between requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, upgraded streams included; one more is
    /// closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time from the start of waiting for a request to its last header line.
    pub header_timeout: Duration,
}

impl Limits {
    /// The streaming server: kubelet opens one connection per exec, attach
    /// or port-forward session, and sessions live as long as they are used.
    pub const STREAMING: Limits = Limits {
        max_connections: 256,
        header_timeout: Duration::from_secs(15),
    };

    /// An HTTP/1.1 server builder that enforces [`Limits::header_timeout`].
    pub fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        builder
    }
}

/// An accepted connection holding its place under
/// [`Limits::max_connections`]; the place is freed when the stream is
/// dropped, wherever it went (an upgraded exec stream keeps it).
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
}

impl<S> Limited<S> {
    /// The connection itself.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` forever, handing each to `serve` on a
/// task of its own while fewer than `limits.max_connections` are open;
/// `what` names the listener in the log.
///
/// # Examples
///
/// ```no_run
/// use cri_streaming::accept::Limits;
/// use std::time::Duration;
///
/// # async fn demo() -> std::io::Result<()> {
/// let limits = Limits { max_connections: 32, header_timeout: Duration::from_secs(10) };
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// cri_streaming::accept::serve_forever(listener, "example", limits, |stream, peer| async move {
///     let _ = (stream, peer); // speak the protocol here
/// })
/// .await;
/// # Ok(()) }
/// ```
pub async fn serve_forever<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    limits: Limits,
    serve: F,
) where
    F: Fn(Limited<TcpStream>, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let places = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => match Arc::clone(&places).try_acquire_owned() {
                Ok(permit) => {
                    let stream = Limited {
                        inner: stream,
                        _permit: permit,
                    };
                    tokio::spawn(serve(stream, peer));
                }
                // Closed at once: a queue would hold descriptors too.
                Err(_) => {
                    tracing::debug!(listener = what, %peer, max = limits.max_connections, "connection refused: too many open");
                    drop(stream);
                }
            },
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A listener serving "ok" over HTTP/1.1 under `limits`.
    async fn server(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve_forever(
            listener,
            "test",
            limits,
            move |stream, _| async move {
                let service = hyper::service::service_fn(|_| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
                });
                let _ = limits
                    .http1()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            },
        ));
        address
    }

    /// Reads until the peer closes; true when it did within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
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

    async fn get(address: SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn half_a_request_line_is_closed_after_the_header_timeout() {
        let limits = Limits {
            max_connections: 8,
            header_timeout: Duration::from_millis(300),
        };
        let address = server(limits).await;
        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET /met").await.unwrap();
        let mut idle = TcpStream::connect(address).await.unwrap();
        let started = Instant::now();
        assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
        assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
        assert!(started.elapsed() >= Duration::from_millis(250));
        // And the server still answers.
        assert!(get(address).await.ends_with("ok"));
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_while_earlier_ones_live() {
        let limits = Limits {
            max_connections: 3,
            header_timeout: Duration::from_secs(30),
        };
        let address = server(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(address).await.unwrap());
        }
        // Give the accept loop time to take all three.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(address).await.unwrap();
        assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
        // The earlier ones are still served.
        let mut first = held.remove(0);
        first
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        first.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with("ok"), "{answer}");
        drop(first);
        // Its place is free again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(get(address).await.ends_with("ok"));
    }
}
