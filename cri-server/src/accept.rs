//! The accept loop of the daemon's TCP listeners (streaming, metrics): one
//! task per connection, and a pause instead of a spin when accepting fails.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long to wait after a failed accept (EMFILE and friends) before the
/// next one, so a full descriptor table does not become a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` forever, handing each to `serve` on a
/// task of its own; `what` names the listener in the log.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// cri_server::accept::serve_forever(listener, "example", |stream, peer| async move {
///     let _ = (stream, peer); // speak the protocol here
/// })
/// .await;
/// # Ok(()) }
/// ```
pub async fn serve_forever<F, Fut>(listener: TcpListener, what: &'static str, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(serve(stream, peer));
            }
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
