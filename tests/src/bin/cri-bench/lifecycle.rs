//! One pod + container lifecycle against the daemon, every RPC timed from
//! the client's side.

use crate::stats::Samples;
use anyhow::{Context, Result};
use cri_api::v1 as cri;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use std::path::Path;
use std::time::{Duration, Instant};
use tests::fixtures::{container_config, pod_config, BUSYBOX};
use tonic::transport::Channel;

/// The RPCs of one lifecycle, in the order they are made.
pub const RPCS: [&str; 7] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// Latencies of each RPC of [`RPCS`] (same order), plus CreateContainer +
/// StartContainer per lifecycle.
#[derive(Debug, Default, Clone)]
pub struct LifecycleSamples {
    /// One entry per RPC of [`RPCS`].
    pub rpcs: [Samples; 7],
    /// CreateContainer + StartContainer of the same lifecycle.
    pub create_start: Samples,
}

impl LifecycleSamples {
    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: &LifecycleSamples) {
        for (mine, theirs) in self.rpcs.iter_mut().zip(&other.rpcs) {
            mine.extend(theirs);
        }
        self.create_start.extend(&other.create_start);
    }
}

/// Awaits the RPC `f`, adds its latency to `out`, and returns its response
/// with that latency.
pub async fn timed<T, F>(what: &str, out: &mut Samples, f: F) -> Result<(T, Duration)>
where
    F: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let start = Instant::now();
    let r = f.await.with_context(|| what.to_string())?;
    let took = start.elapsed();
    out.push(took);
    Ok((r.into_inner(), took))
}

/// A pod config named `name` whose containers log under `logs`, with the
/// namespaces kubelet asks for by default; with `host_network` the pod uses
/// the host's network, so no CNI runs for it.
pub fn pod(name: &str, logs: &Path, host_network: bool) -> cri::PodSandboxConfig {
    let mut config = pod_config(name);
    config.log_directory = logs.join(name).to_string_lossy().into_owned();
    tests::fixtures::with_kubelet_namespaces(config, host_network)
}

/// Runs pod `name` with one busybox `sleep` container through to removal,
/// adding each RPC's latency to `out`.
pub async fn run(
    rt: &mut RuntimeServiceClient<Channel>,
    name: &str,
    logs: &Path,
    host_network: bool,
    out: &mut LifecycleSamples,
) -> Result<()> {
    let config = pod(name, logs, host_network);
    let [run_pod, create, start, stop, remove, stop_pod, remove_pod] = &mut out.rpcs;
    let pod_id = timed(
        "RunPodSandbox",
        run_pod,
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await?
    .0
    .pod_sandbox_id;
    let (created, create_took) = timed(
        "CreateContainer",
        create,
        rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(container_config("sleeper", BUSYBOX, &["sleep", "3600"])),
            sandbox_config: Some(config),
        }),
    )
    .await?;
    let ctr = created.container_id;
    let (_, start_took) = timed(
        "StartContainer",
        start,
        rt.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        }),
    )
    .await?;
    out.create_start.push(create_took + start_took);
    timed(
        "StopContainer",
        stop,
        rt.stop_container(cri::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 0,
        }),
    )
    .await?;
    timed(
        "RemoveContainer",
        remove,
        rt.remove_container(cri::RemoveContainerRequest { container_id: ctr }),
    )
    .await?;
    timed(
        "StopPodSandbox",
        stop_pod,
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        }),
    )
    .await?;
    timed(
        "RemovePodSandbox",
        remove_pod,
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        }),
    )
    .await?;
    Ok(())
}

/// Stops and removes every pod the daemon knows (their containers go with
/// them), so that nothing outlives the benchmark.
pub async fn remove_all(rt: &mut RuntimeServiceClient<Channel>) -> Result<usize> {
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .context("ListPodSandbox")?
        .into_inner()
        .items;
    for p in &pods {
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await
        .with_context(|| format!("StopPodSandbox {}", p.id))?;
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await
        .with_context(|| format!("RemovePodSandbox {}", p.id))?;
    }
    Ok(pods.len())
}
