//! PodSandboxStatus: the pod's state, network, namespaces and, when verbose,
//! the trust decision and the record itself.

use crate::daemon::Daemon;
use crate::error::Result;
use cri_api::v1 as cri;
use cri_spec::convert;
use sandbox_core::Sandbox;
use std::collections::HashMap;
use std::sync::Arc;

/// The CRI status of `sandbox`.
pub fn cri_status(sandbox: &Sandbox) -> cri::PodSandboxStatus {
    let mut ips = sandbox.pod_ips.iter().map(|ip| ip.to_string());
    cri::PodSandboxStatus {
        id: sandbox.id.clone(),
        metadata: Some(cri_metadata(sandbox)),
        state: convert::cri_sandbox_state(sandbox.state),
        created_at: sandbox.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: ips.next().unwrap_or_default(),
            additional_ips: ips.map(|ip| cri::PodIp { ip }).collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(convert::cri_namespace_options(&sandbox.namespace_options)),
            }),
        }),
        labels: convert::cri_map(&sandbox.labels),
        annotations: convert::cri_map(&sandbox.annotations),
        runtime_handler: sandbox.runtime_handler.clone(),
    }
}

/// The CRI metadata of `sandbox`.
pub fn cri_metadata(sandbox: &Sandbox) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: sandbox.metadata.name.clone(),
        uid: sandbox.metadata.uid.clone(),
        namespace: sandbox.metadata.namespace.clone(),
        attempt: sandbox.metadata.attempt,
    }
}

/// Answers PodSandboxStatus for `id_or_prefix`.
pub async fn status(
    daemon: &Arc<Daemon>,
    id_or_prefix: &str,
    verbose: bool,
) -> Result<cri::PodSandboxStatusResponse> {
    let sandbox = daemon.sandboxes.get(id_or_prefix)?;
    let mut info = HashMap::new();
    if verbose {
        info.insert(
            "trust".to_string(),
            trust_info(daemon, &sandbox).to_string(),
        );
        info.insert(
            "info".to_string(),
            serde_json::to_string(&*sandbox).unwrap_or_default(),
        );
    }
    Ok(cri::PodSandboxStatusResponse {
        status: Some(cri_status(&sandbox)),
        info,
        containers_statuses: Vec::new(),
        timestamp: sandbox_core::timestamp::now(),
    })
}

/// The pod's trust decision and, for each of its containers, why its image
/// may run there and on what evidence.
fn trust_info(daemon: &Daemon, sandbox: &Sandbox) -> serde_json::Value {
    let filter = sandbox_core::ContainerFilter {
        sandbox_id_prefix: Some(sandbox.id.clone()),
        ..Default::default()
    };
    let mut own = daemon.containers.list(&filter);
    own.retain(|c| c.sandbox_id == sandbox.id);
    own.sort_by(|a, b| a.id.cmp(&b.id));
    let containers: Vec<serde_json::Value> = own
        .iter()
        .map(|c| {
            let trust = c.image_trust.clone().unwrap_or_default();
            serde_json::json!({
                "id": c.id,
                "name": c.metadata.name,
                "image": c.image,
                "verified": trust.verified,
                "evidence": trust.evidence,
                "reason": trust.reason,
            })
        })
        .collect();
    serde_json::json!({
        "handler": sandbox.runtime_handler,
        "trusted": sandbox.trusted,
        "reason": sandbox.trust_reason,
        "trustedImages": daemon.policy().config().trusted_images.as_str(),
        "containers": containers,
    })
}
