//! The running `/metrics` endpoint, which a reload may open, move or close
//! (`[metrics] address`): the new address is bound before anything is
//! swapped, so a taken port fails the reload and the old endpoint serves on.

use super::server::{MetricsError, MetricsServer};
use crate::daemon::Daemon;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The endpoint in force: where it listens, and the task serving it.
pub struct MetricsEndpoint {
    address: Option<SocketAddr>,
    task: Option<JoinHandle<()>>,
}

/// A new address bound and not yet serving; dropping it closes the socket.
pub struct Prepared {
    address: Option<SocketAddr>,
    server: Option<MetricsServer>,
}

impl MetricsEndpoint {
    /// Serves `server` (bound at start, at `address`) for `daemon`.
    pub fn serve(
        address: Option<SocketAddr>,
        server: Option<MetricsServer>,
        daemon: &Arc<Daemon>,
    ) -> Self {
        MetricsEndpoint {
            address,
            task: server.map(|s| s.spawn(super::collector::registry(daemon))),
        }
    }

    /// Binds `address` if it is not where the endpoint listens already;
    /// `None` when nothing changes.
    pub async fn prepare(
        &self,
        address: Option<SocketAddr>,
    ) -> Result<Option<Prepared>, MetricsError> {
        if address == self.address {
            return Ok(None);
        }
        let server = match address {
            Some(a) => Some(MetricsServer::bind(a).await?),
            None => None,
        };
        Ok(Some(Prepared { address, server }))
    }

    /// Stops the old endpoint and serves the prepared one.
    pub fn switch(&mut self, prepared: Prepared, daemon: &Arc<Daemon>) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if prepared.server.is_none() {
            tracing::info!("metrics endpoint closed");
        }
        *self = MetricsEndpoint::serve(prepared.address, prepared.server, daemon);
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        // The serving task would outlive a dropped JoinHandle.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
