//! Port forwarding: a TCP connection to a port inside the pod's network
//! namespace per client request.
//!
//! The connection is dialled on a dedicated thread that entered the pod's
//! namespace (through `netns`), never on a tokio worker; the connected socket
//! then moves to tokio, since a socket stays in the namespace it was made in.

use crate::daemon::Daemon;
use std::time::Duration;

/// How long dialling a pod port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `127.0.0.1:port` in pod `sandbox_id`'s network (the host's
/// for a host-network pod).
pub async fn dial(
    daemon: &Daemon,
    sandbox_id: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, String> {
    let sandbox = daemon
        .sandboxes
        .get(sandbox_id)
        .map_err(|e| e.to_string())?;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let std_stream = match sandbox.netns_path.clone() {
        None => {
            // Host network: no namespace to enter.
            return tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(address))
                .await
                .map_err(|_| format!("pod {sandbox_id}: port {port}: connect timed out"))?
                .map_err(|e| format!("pod {sandbox_id}: port {port}: {e}"));
        }
        Some(path) => {
            // `run_in` blocks while its own thread works inside the namespace.
            let joined = tokio::task::spawn_blocking(move || {
                let ns = netns::NetNs::open(&path).map_err(|e| e.to_string())?;
                ns.run_in(|| std::net::TcpStream::connect_timeout(&address, DIAL_TIMEOUT))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?;
            joined.map_err(|e| format!("pod {sandbox_id}: port {port}: {e}"))?
        }
    };
    let fail = |e: std::io::Error| format!("pod {sandbox_id}: port {port}: {e}");
    std_stream.set_nonblocking(true).map_err(fail)?;
    tokio::net::TcpStream::from_std(std_stream).map_err(fail)
}
