//! The CRI RuntimeService: pods, containers and runtime status.
//!
//! RPCs whose behaviour arrives with later work answer `Unimplemented` with the
//! RPC's name; none of them panics.

use crate::daemon::Daemon;
use crate::list_stream::{self, ListStream};
use crate::{container, pod};
use cgroups::CgroupDriver;
use cri_api::v1 as cri;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// The CRI API version this daemon speaks.
pub const CRI_API_VERSION: &str = "v1";
/// The name Version reports.
pub const RUNTIME_NAME: &str = "cri-server";

/// Implements `runtime.v1.RuntimeService`.
pub struct RuntimeService {
    daemon: Arc<Daemon>,
}

impl RuntimeService {
    /// A service over the daemon's shared state.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        RuntimeService { daemon }
    }
}

impl RuntimeService {
    /// A single-use URL on the streaming server for `request`.
    fn streaming_url(
        &self,
        request: impl Into<cri_streaming::StreamRequest>,
    ) -> Result<String, Status> {
        self.daemon
            .streaming
            .url(request)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// Whether a pod made earlier is still one a retried RunPodSandbox may get.
fn ready_pod(daemon: &Daemon) -> impl Fn(&str) -> bool + '_ {
    |id| daemon.sandboxes.get(id).is_ok_and(|s| !s.is_stopped())
}

/// Whether a container made earlier is still one a retried CreateContainer
/// may get.
fn existing_container(daemon: &Daemon) -> impl Fn(&str) -> bool + '_ {
    |id| daemon.containers.contains(id)
}

/// Runs a mutating verb to its end in a task of its own: a client that
/// cancels (kubelet at its deadline) must not cut it short halfway, with its
/// undo never run. A graceful shutdown waits for it
/// ([`crate::in_flight::VERBS`]).
pub async fn detached<T, F>(verb: F) -> Result<T, Status>
where
    F: std::future::Future<Output = crate::error::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let entered = crate::in_flight::VERBS.enter();
    run_to_end(async move {
        let _entered = entered;
        verb.await
    })
    .await
}

/// Like [`detached`], but not waited for at shutdown: for work an
/// interruption cannot harm (a pull removes its staging data and is
/// simply repeated).
pub async fn run_to_end<T, F>(verb: F) -> Result<T, Status>
where
    F: std::future::Future<Output = crate::error::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(verb).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(Status::internal(format!("the call's task failed: {e}"))),
    }
}

/// Status's handler list: each handler whose binary is present, with what
/// its runtime can do. kubelet schedules recursive read-only mounts and
/// user-namespaced pods by these.
fn runtime_handlers(handlers: &crate::handlers::HandlerSet) -> Vec<cri::RuntimeHandler> {
    handlers
        .iter()
        .filter(|(_, h)| h.settings.path.is_file())
        .map(|(name, h)| cri::RuntimeHandler {
            name: name.clone(),
            features: Some(cri::RuntimeHandlerFeatures {
                recursive_read_only_mounts: h.features.recursive_read_only(),
                user_namespaces: h.user_namespaces(),
            }),
        })
        .collect()
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented yet"))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl cri::runtime_service_server::RuntimeService for RuntimeService {
    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            // kubelet reads `version` as the kubelet-runtime API version.
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let handlers = self.daemon.handlers();
        let missing = handlers.missing_binaries();
        let runtime_ready = cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: if missing.is_empty() {
                String::new()
            } else {
                format!("runtime handlers unavailable: {}", missing.join(", "))
            },
        };
        let network_ready = match self.daemon.network.status() {
            Ok(()) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Err(why) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: why.reason.to_string(),
                message: why.message,
            },
        };
        let mut info = std::collections::HashMap::new();
        if request.get_ref().verbose {
            // Clients (crictl info) parse every value as JSON.
            let config = serde_json::to_string(&self.daemon.config).unwrap_or_default();
            info.insert("config".to_string(), config);
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            runtime_handlers: runtime_handlers(&handlers),
            features: Some(cri::RuntimeFeatures {
                // Strict leaves the image's /etc/group out, and
                // ContainerStatus.user reports the process's identity.
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
            }),
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: match self.daemon.config.runtime.cgroup_driver {
                    CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs as i32,
                    CgroupDriver::Systemd => cri::CgroupDriver::Systemd as i32,
                },
            }),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let deadline = crate::creations::deadline_of(request.metadata());
        let request = request.into_inner();
        let Some(meta) = request.config.as_ref().and_then(|c| c.metadata.clone()) else {
            // Refused by the verb, with the field at fault.
            return Ok(Response::new(cri::RunPodSandboxResponse {
                pod_sandbox_id: pod::run::run(&self.daemon, request).await?,
            }));
        };
        let key = format!(
            "pod {}/{} (uid {}, attempt {})",
            meta.namespace, meta.name, meta.uid, meta.attempt
        );
        let fingerprint = crate::creations::fingerprint(&request);
        let daemon = Arc::clone(&self.daemon);
        let id = self
            .daemon
            .pod_creations
            .create_once(
                &key,
                fingerprint,
                deadline,
                ready_pod(&self.daemon),
                async move { Ok(pod::run::run(&daemon, request).await?) },
            )
            .await?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        tracing::info!(pod = %request.get_ref().pod_sandbox_id);
        let (daemon, id) = (
            Arc::clone(&self.daemon),
            request.into_inner().pod_sandbox_id,
        );
        detached(async move { pod::stop::stop(&daemon, &id).await }).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        tracing::info!(pod = %request.get_ref().pod_sandbox_id);
        let (daemon, id) = (
            Arc::clone(&self.daemon),
            request.into_inner().pod_sandbox_id,
        );
        detached(async move { pod::remove::remove(&daemon, &id).await }).await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            pod::status::status(&self.daemon, &r.pod_sandbox_id, r.verbose).await?,
        ))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let items = pod::list::list(&self.daemon, request.into_inner().filter);
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let deadline = crate::creations::deadline_of(request.metadata());
        let request = request.into_inner();
        tracing::info!(pod = %request.pod_sandbox_id);
        let Some(meta) = request.config.as_ref().and_then(|c| c.metadata.clone()) else {
            // Refused by the verb, with the field at fault.
            return Ok(Response::new(cri::CreateContainerResponse {
                container_id: container::create::create(&self.daemon, request).await?,
            }));
        };
        let key = format!(
            "container {} in pod {} (attempt {})",
            meta.name, request.pod_sandbox_id, meta.attempt
        );
        let fingerprint = crate::creations::fingerprint(&request);
        let daemon = Arc::clone(&self.daemon);
        let id = self
            .daemon
            .container_creations
            .create_once(
                &key,
                fingerprint,
                deadline,
                existing_container(&self.daemon),
                async move { Ok(container::create::create(&daemon, request).await?) },
            )
            .await?;
        tracing::info!(container = %id, "created");
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        tracing::info!(container = %request.get_ref().container_id);
        let (daemon, id) = (Arc::clone(&self.daemon), request.into_inner().container_id);
        detached(async move { container::start::start(&daemon, &id).await }).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let r = request.into_inner();
        tracing::info!(container = %r.container_id, timeout = r.timeout);
        let daemon = Arc::clone(&self.daemon);
        detached(async move { container::stop::stop(&daemon, &r.container_id, r.timeout).await })
            .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        tracing::info!(container = %request.get_ref().container_id);
        let (daemon, id) = (Arc::clone(&self.daemon), request.into_inner().container_id);
        detached(async move { container::remove::remove(&daemon, &id).await }).await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let containers = container::list::list(&self.daemon, request.into_inner().filter);
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            container::status::status(&self.daemon, &r.container_id, r.verbose).await?,
        ))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        tracing::info!(container = %request.get_ref().container_id);
        let (daemon, r) = (Arc::clone(&self.daemon), request.into_inner());
        detached(async move { container::update::update(&daemon, r).await }).await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        tracing::info!(container = %request.get_ref().container_id);
        container::reopen_log::reopen_log(&self.daemon, &request.get_ref().container_id).await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        tracing::info!(container = %request.get_ref().container_id, cmd = ?request.get_ref().cmd);
        Ok(Response::new(
            container::exec_sync::exec_sync(&self.daemon, request.into_inner()).await?,
        ))
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let r = request.into_inner();
        tracing::info!(container = %r.container_id, cmd = ?r.cmd, tty = r.tty, stdin = r.stdin);
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("Exec: cmd is empty"));
        }
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(Status::invalid_argument(
                "Exec: one of stdin, stdout and stderr must be set",
            ));
        }
        // Only a container that exists gets a URL; its state is checked
        // again when the URL is used.
        let container = self
            .daemon
            .containers
            .get(&r.container_id)
            .map_err(crate::error::Error::from)?;
        let url = self.streaming_url(cri_streaming::ExecRequest {
            container_id: container.id.clone(),
            cmd: r.cmd,
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            // On a terminal, stderr is merged into stdout.
            stderr: r.stderr && !r.tty,
        })?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let r = request.into_inner();
        tracing::info!(container = %r.container_id, tty = r.tty, stdin = r.stdin);
        let container = self
            .daemon
            .containers
            .get(&r.container_id)
            .map_err(crate::error::Error::from)?;
        let url = self.streaming_url(cri_streaming::AttachRequest {
            container_id: container.id.clone(),
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr && !r.tty,
        })?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let r = request.into_inner();
        tracing::info!(pod = %r.pod_sandbox_id, ports = ?r.port);
        let sandbox = self
            .daemon
            .sandboxes
            .get(&r.pod_sandbox_id)
            .map_err(crate::error::Error::from)?;
        let mut ports = Vec::with_capacity(r.port.len());
        for port in &r.port {
            match u16::try_from(*port) {
                Ok(p) if p > 0 => ports.push(p),
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "PortForward: port {port} is out of range"
                    )))
                }
            }
        }
        let url = self.streaming_url(cri_streaming::PortForwardRequest {
            pod_sandbox_id: sandbox.id.clone(),
            ports,
        })?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let container = self
            .daemon
            .containers
            .get(&request.get_ref().container_id)
            .map_err(crate::error::Error::from)?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(crate::stats::container(&self.daemon, container).await?),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        Ok(Response::new(cri::ListContainerStatsResponse {
            stats: crate::stats::containers(&self.daemon, request.into_inner().filter).await?,
        }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let sandbox = self
            .daemon
            .sandboxes
            .get(&request.get_ref().pod_sandbox_id)
            .map_err(crate::error::Error::from)?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(crate::stats::pod(&self.daemon, &sandbox).await?),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        Ok(Response::new(cri::ListPodSandboxStatsResponse {
            stats: crate::stats::pods(&self.daemon, request.into_inner().filter).await?,
        }))
    }

    async fn update_runtime_config(
        &self,
        _r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        // kubelet sends the pod CIDR here; CNI configuration owns it, so there
        // is nothing to apply and succeeding is what kubelet expects.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn checkpoint_container(
        &self,
        _r: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(unimplemented("CheckpointContainer"))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let _ = request;
        let receiver = self.daemon.events.subscribe();
        let stream = tokio_stream::wrappers::BroadcastStream::new(receiver).filter_map(|event| {
            // A subscriber that fell behind skips what it missed rather
            // than ending the stream.
            event.ok().map(Ok)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: crate::stats::cri_metrics::descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics: crate::stats::pod_metrics(&self.daemon).await?,
        }))
    }

    type StreamPodSandboxesStream = ListStream<cri::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        request: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let items = pod::list::list(&self.daemon, request.into_inner().filter);
        Ok(Response::new(list_stream::stream(items, |pod_sandboxes| {
            cri::StreamPodSandboxesResponse { pod_sandboxes }
        })))
    }

    type StreamContainersStream = ListStream<cri::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        request: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let items = container::list::list(&self.daemon, request.into_inner().filter);
        Ok(Response::new(list_stream::stream(items, |containers| {
            cri::StreamContainersResponse { containers }
        })))
    }

    type StreamContainerStatsStream = ListStream<cri::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        request: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let items = crate::stats::containers(&self.daemon, request.into_inner().filter).await?;
        Ok(Response::new(list_stream::stream(
            items,
            |container_stats| cri::StreamContainerStatsResponse { container_stats },
        )))
    }

    type StreamPodSandboxStatsStream = ListStream<cri::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let items = crate::stats::pods(&self.daemon, request.into_inner().filter).await?;
        Ok(Response::new(list_stream::stream(
            items,
            |pod_sandbox_stats| cri::StreamPodSandboxStatsResponse { pod_sandbox_stats },
        )))
    }

    type StreamPodSandboxMetricsStream = ListStream<cri::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _r: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        let items = crate::stats::pod_metrics(&self.daemon).await?;
        Ok(Response::new(list_stream::stream(
            items,
            |pod_sandbox_metrics| cri::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            },
        )))
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        pod::update_resources::update_resources(&self.daemon, request.get_ref())?;
        Ok(Response::new(cri::UpdatePodSandboxResourcesResponse {}))
    }
}
