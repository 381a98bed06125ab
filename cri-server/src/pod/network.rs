//! A pod's network through CNI: the request `cni` needs, built from the pod
//! record the same way for ADD and for DEL (also after a restart).

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use sandbox_core::{Protocol, Sandbox};
use std::sync::Arc;

/// The CNI request for `sandbox` (its infra id, netns and port mappings).
pub fn request(sandbox: &Sandbox, dns: Option<cni::Dns>) -> cni::PodNetworkRequest {
    let mut request =
        cni::PodNetworkRequest::new(&sandbox.id, sandbox.netns_path.clone().unwrap_or_default());
    request.pod_name = sandbox.metadata.name.clone();
    request.pod_namespace = sandbox.metadata.namespace.clone();
    request.pod_uid = sandbox.metadata.uid.clone();
    request.dns = dns;
    request.port_mappings = sandbox
        .port_mappings
        .iter()
        .filter(|m| m.host_port != 0)
        .map(|m| cni::PortMapping {
            host_port: m.host_port,
            container_port: m.container_port,
            protocol: match m.protocol {
                Protocol::Udp => cni::Protocol::Udp,
                Protocol::Sctp => cni::Protocol::Sctp,
                Protocol::Tcp => cni::Protocol::Tcp,
            },
            host_ip: m.host_ip.parse().ok(),
        })
        .collect();
    request
}

/// Attaches the pod (CNI ADD) once one of the daemon's network setup
/// turns is free ([`crate::turns`]); returns its IPs.
pub async fn setup(
    daemon: &Arc<Daemon>,
    sandbox: &Sandbox,
    dns: Option<cni::Dns>,
) -> Result<Vec<std::net::IpAddr>> {
    if let Err(why) = daemon.network.status() {
        return Err(Error::FailedPrecondition(format!(
            "pod {}: network not ready: {}: {}",
            sandbox.name, why.reason, why.message
        )));
    }
    let started = std::time::Instant::now();
    let request = request(sandbox, dns);
    let (status, waited) = daemon
        .network_setups
        .run(daemon.network.setup(&request))
        .await;
    let status = status.map_err(|e| Error::internal(format!("pod {} network", sandbox.id), e))?;
    tracing::info!(pod = %sandbox.id, ips = ?status.ips, elapsed = ?started.elapsed(), ?waited, "CNI ADD");
    Ok(status.ips)
}

/// Detaches the pod (CNI DEL); idempotent.
pub async fn teardown(daemon: &Arc<Daemon>, sandbox: &Sandbox) -> Result<()> {
    let started = std::time::Instant::now();
    daemon
        .network
        .teardown(&request(sandbox, None))
        .await
        .map_err(|e| Error::internal(format!("pod {} network", sandbox.id), e))?;
    tracing::info!(pod = %sandbox.id, elapsed = ?started.elapsed(), "CNI DEL");
    Ok(())
}
