//! The daemon's shared state: the stores, the trust policy, the runtimes, and
//! what it takes to build them at start and restore them after a restart.

use crate::config::{Config, HandlerConfig};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::locks::KeyedLocks;
use crate::records::RecordDir;
use cgroups::CgroupDriver;
use k8s_cri::v1 as cri;
use netns::PinDir;
use oci_shim::monitor::{Monitor, MonitorStatus};
use oci_shim::runtime::{CliRuntime, RuntimeHandlerConfig, RuntimeKind};
use oci_shim::spec::HostLimits;
use sandbox_core::{
    Container, ContainerState, ContainerStore, NameRegistrar, Sandbox, SandboxState, SandboxStore,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::broadcast;
use trust_policy::TrustPolicy;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct StartError {
    what: String,
    cause: String,
}

impl StartError {
    fn new(what: impl std::fmt::Display, cause: impl std::fmt::Display) -> StartError {
        StartError {
            what: what.to_string(),
            cause: cause.to_string(),
        }
    }
}

/// Exists exactly when systemd is the running init (sd_booted(3)).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// Everything request handlers share.
pub struct Daemon {
    /// The effective configuration.
    pub config: Config,
    /// Where things live on disk.
    pub layout: Layout,
    /// Pods.
    pub sandboxes: SandboxStore,
    /// Workload containers (infra containers live inside their sandbox).
    pub containers: ContainerStore,
    /// Pod names (`k8s_POD_…`) to pod ids.
    pub pod_names: NameRegistrar,
    /// Container names (`k8s_<container>_…`) to container ids.
    pub container_names: NameRegistrar,
    /// Which handler a pod runs on.
    pub policy: TrustPolicy,
    /// The configured handlers, as the runtime driver needs them.
    pub handlers: BTreeMap<String, RuntimeHandlerConfig>,
    /// The private network namespace pin directory.
    pub pins: PinDir,
    /// Pod records on disk.
    pub sandbox_records: RecordDir,
    /// Container records on disk.
    pub container_records: RecordDir,
    /// The image store.
    pub images: image_store::ImageStore,
    /// Pod networking (CNI).
    pub network: Arc<dyn cni::PodNetwork>,
    /// What the host lets containers have (capabilities, oom_score_adj).
    pub host: HostLimits,
    /// The infra containers' root filesystem.
    pub pause_rootfs: PathBuf,
    /// The per-container monitor executable.
    pub monitor_binary: PathBuf,
    /// Per-pod and per-container request serialisation.
    pub locks: KeyedLocks,
    /// The previous CPU readings, for CPU rates in stats.
    pub cpu_rates: cgroups::CpuRates,
    /// Container lifecycle events for GetContainerEvents.
    pub events: broadcast::Sender<cri::ContainerEventResponse>,
    /// The Exec/Attach/PortForward streaming server and its tokens.
    pub streaming: cri_streaming::StreamingServer,
    /// The daemon's own counters, served by the `/metrics` endpoint.
    pub metrics: crate::metrics::Metrics,
}

/// Infers the runtime family from the binary's name, which decides how
/// containers join a pod (gVisor runs a pod in one sandbox).
fn runtime_kind(handler: &HandlerConfig) -> RuntimeKind {
    let name = handler
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.contains("runsc") {
        RuntimeKind::Runsc
    } else {
        RuntimeKind::Runc
    }
}

impl Daemon {
    /// Prepares directories, the pause root, the pin directory and the image
    /// store, then restores every pod and container recorded on disk.
    pub async fn open(config: Config) -> std::result::Result<Arc<Daemon>, StartError> {
        let layout = Layout::new(&config.root, &config.state);
        if config.runtime.cgroup_driver == CgroupDriver::Systemd
            && !std::path::Path::new(SYSTEMD_RUNNING).exists()
        {
            return Err(StartError::new(
                "runtime.cgroup_driver",
                format!("\"systemd\" needs a running systemd, and there is none here (no {SYSTEMD_RUNNING}); use \"cgroupfs\""),
            ));
        }
        let policy = TrustPolicy::new(
            config.runtime.trust_config(),
            config.runtime.handlers.keys().cloned(),
        )
        .map_err(|e| StartError::new("runtime configuration", e))?;
        let handlers = config
            .runtime
            .handlers
            .iter()
            .map(|(name, h)| {
                let mut args = h.args.clone();
                // runc and runsc both take it; a handler's own args may too.
                if let Some(flag) = config.runtime.cgroup_driver.runtime_flag() {
                    if !args.iter().any(|a| a == flag) {
                        args.insert(0, flag.to_owned());
                    }
                }
                let cfg = RuntimeHandlerConfig {
                    name: name.clone(),
                    path: h.path.clone(),
                    args,
                    root: layout.runtime_root(name),
                    kind: runtime_kind(h),
                };
                (name.clone(), cfg)
            })
            .collect();
        let pause_rootfs = crate::pause::install(&layout.pause_rootfs())
            .map_err(|e| StartError::new(layout.pause_rootfs().display(), e))?;
        let pins = PinDir::prepare(layout.netns())
            .map_err(|e| StartError::new("network namespace directory", e))?;
        let sandbox_records = RecordDir::open(layout.sandbox_records())
            .map_err(|e| StartError::new("pod records", e))?;
        let container_records = RecordDir::open(layout.container_records())
            .map_err(|e| StartError::new("container records", e))?;
        let registries = image_store::RegistriesConfig {
            registries: config.image.registries.clone(),
        };
        let images = image_store::ImageStore::open(layout.images(), registries)
            .await
            .map_err(|e| StartError::new("image store", e))?;
        let mut cni_config =
            cni::CniManagerConfig::new(&config.network.conf_dir, layout.cni_cache());
        cni_config.plugin_dirs = config.network.plugin_dirs.clone();
        let network: Arc<dyn cni::PodNetwork> =
            Arc::new(cni::CniManager::new(cni_config).map_err(|e| StartError::new("CNI", e))?);
        let host = HostLimits::of_current_process()
            .map_err(|e| StartError::new("reading the daemon's capabilities", e))?;
        let monitor_binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("oci-monitor")))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                StartError::new(
                    "oci-monitor",
                    "not found beside the cri-server executable; install both together",
                )
            })?;
        let streaming = cri_streaming::StreamingServer::bind(&config.streaming.server_config())
            .await
            .map_err(|e| StartError::new("streaming server", e))?;
        let (events, _) = broadcast::channel(1024);
        let daemon = Arc::new(Daemon {
            layout,
            sandboxes: SandboxStore::new(),
            containers: ContainerStore::new(),
            pod_names: NameRegistrar::new(),
            container_names: NameRegistrar::new(),
            policy,
            handlers,
            pins,
            sandbox_records,
            container_records,
            images,
            network,
            host,
            pause_rootfs,
            monitor_binary,
            locks: KeyedLocks::default(),
            cpu_rates: cgroups::CpuRates::default(),
            events,
            streaming,
            metrics: crate::metrics::Metrics::default(),
            config,
        });
        daemon.restore().await;
        Ok(daemon)
    }

    /// The runtime driver for handler `name`, running execs under our
    /// `oci-monitor`'s reaper.
    pub fn runtime(&self, name: &str) -> Result<CliRuntime> {
        self.handlers
            .get(name)
            .cloned()
            .map(|h| CliRuntime::new(h).with_monitor_binary(&self.monitor_binary))
            .ok_or_else(|| Error::Internal(format!("runtime handler {name:?} is not configured")))
    }

    /// The handler configuration for `name`.
    pub fn handler(&self, name: &str) -> Result<RuntimeHandlerConfig> {
        self.handlers
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("runtime handler {name:?} is not configured")))
    }

    /// Which annotations handler `name` may receive in `config.json`
    /// (none for a handler that is not configured).
    pub fn allowed_annotations(&self, name: &str) -> crate::annotations::AllowList {
        self.config
            .runtime
            .handlers
            .get(name)
            .map(crate::config::HandlerConfig::allow_list)
            .unwrap_or_default()
    }

    /// The OCI `linux.cgroupsPath` of `id` under a pod's `parent`, as the
    /// configured cgroup driver spells it.
    pub fn cgroup_path(&self, parent: &str, id: &str) -> Result<String> {
        self.config
            .runtime
            .cgroup_driver
            .runtime_path(parent, id)
            .map_err(|e| Error::InvalidArgument(format!("linux.{e}")))
    }

    /// Where `id`'s cgroup is below each hierarchy's root, for reading its
    /// stats. A parent the driver refuses can only come from a pod made
    /// before the driver was changed, when it was a cgroupfs path.
    pub fn cgroup_dir(&self, parent: &str, id: &str) -> String {
        let driver = self.config.runtime.cgroup_driver;
        driver
            .fs_path(parent, id)
            .or_else(|_| CgroupDriver::Cgroupfs.fs_path(parent, id))
            .unwrap_or_default()
    }

    /// Saves pod `sandbox`'s record.
    pub fn save_sandbox(&self, sandbox: &Sandbox) -> Result<()> {
        self.sandbox_records
            .save(&sandbox.id, sandbox)
            .map_err(|e| Error::internal(format!("pod {}", sandbox.id), e))
    }

    /// Saves container `container`'s record.
    pub fn save_container(&self, container: &Container) -> Result<()> {
        self.container_records
            .save(&container.id, container)
            .map_err(|e| Error::internal(format!("container {}", container.id), e))
    }

    /// Brings back every recorded pod and container: names reserved again,
    /// network namespaces reopened, monitors reconnected, and exits that
    /// happened while the daemon was away recorded with their real codes.
    async fn restore(self: &Arc<Self>) {
        let sandboxes: Vec<Sandbox> = self.sandbox_records.load_all();
        let containers: Vec<Container> = self.container_records.load_all();
        let recorded_pods: std::collections::HashSet<String> =
            sandboxes.iter().map(|s| s.id.clone()).collect();
        let recorded_containers: std::collections::HashSet<String> =
            containers.iter().map(|c| c.id.clone()).collect();
        let (mut kept_pins, mut restored_pods, mut restored_containers) = (Vec::new(), 0, 0);
        for mut sandbox in sandboxes {
            if let Some(path) = sandbox.netns_path.clone() {
                match netns::NetNs::open(&path) {
                    Ok(_) => kept_pins.push(sandbox.id.clone()),
                    Err(e) if sandbox.state == SandboxState::Ready => {
                        tracing::warn!(pod = %sandbox.id, error = %e, "network namespace lost");
                    }
                    Err(_) => {}
                }
            }
            if let Some(infra) = sandbox.infra_container.clone() {
                let dir = self.layout.sandbox_dir(&sandbox.id);
                match self.reconnect(&infra, &dir).await {
                    Some(exit) if sandbox.state == SandboxState::Ready => {
                        tracing::info!(pod = %sandbox.id, code = exit.exit_code, "infra container exited while the daemon was away");
                        sandbox.mark_stopped(exit.finished_at_unix_nanos as i64);
                    }
                    None if sandbox.state == SandboxState::Ready => {
                        self.watch_infra(&sandbox.id);
                    }
                    _ => {}
                }
            }
            if let Err(e) = self.pod_names.reserve(&sandbox.name, &sandbox.id) {
                tracing::error!(pod = %sandbox.id, error = %e, "pod name taken twice on disk");
            }
            let _ = self.save_sandbox(&sandbox);
            if let Err(e) = self.sandboxes.add(sandbox) {
                tracing::error!(error = %e, "duplicate pod record");
            } else {
                restored_pods += 1;
            }
        }
        for mut container in containers {
            if !self.sandboxes.contains(&container.sandbox_id) {
                tracing::warn!(container = %container.id, pod = %container.sandbox_id, "container of an unknown pod kept for removal");
            }
            if container.state == ContainerState::Running
                || container.state == ContainerState::Created
            {
                let dir = self.layout.container_dir(&container.id);
                match self.reconnect(&container, &dir).await {
                    Some(exit) => {
                        let _ = container.mark_exited(
                            exit.finished_at_unix_nanos as i64,
                            exit.exit_code,
                            crate::container::exit_reason(exit.exit_code, false),
                            String::new(),
                        );
                    }
                    None if container.state == ContainerState::Running => {
                        self.watch_container(&container.id);
                    }
                    None => {}
                }
            }
            let _ = self.container_names.reserve(&container.name, &container.id);
            let _ = self.save_container(&container);
            if self.containers.add(container).is_ok() {
                restored_containers += 1;
            }
        }
        // Before the pins go: a half-made pod's CNI DEL runs in its namespace.
        let half_made = crate::orphans::sweep(self, &recorded_pods, &recorded_containers).await;
        // Pins no record claims belong to pods that died half-made.
        let report = self
            .pins
            .cleanup_stale(|name| kept_pins.iter().any(|k| k == name));
        tracing::info!(
            pods = restored_pods,
            containers = restored_containers,
            stale_pins = ?report,
            half_made_pods = ?half_made.pods,
            half_made_containers = ?half_made.containers,
            "state restored"
        );
    }

    /// Reconnects to `container`'s monitor: `None` while it runs, the exit
    /// record once it has exited. A monitor that is gone without a record
    /// (the machine rebooted) counts as an exit with code 255.
    async fn reconnect(
        &self,
        container: &Container,
        dir: &Path,
    ) -> Option<oci_shim::monitor::protocol::ExitRecord> {
        let _ = self;
        match Monitor::reconnect(&container.id, Layout::monitor(dir)).await {
            Ok(MonitorStatus::Running(_)) => None,
            Ok(MonitorStatus::Exited(exit)) => Some(exit),
            Err(e) => {
                tracing::warn!(container = %container.id, error = %e, "monitor gone without an exit record");
                Some(oci_shim::monitor::protocol::ExitRecord {
                    exit_code: 255,
                    signal: 0,
                    finished_at_unix_nanos: sandbox_core::timestamp::now() as u64,
                })
            }
        }
    }

    /// Watches pod `id`'s infra container: when it dies, the pod is no longer
    /// ready.
    pub fn watch_infra(self: &Arc<Self>, id: &str) {
        let daemon = Arc::clone(self);
        let id = id.to_string();
        tokio::spawn(async move {
            let dir = Layout::monitor(&daemon.layout.sandbox_dir(&id));
            let exit = match Monitor::reconnect(&id, &dir).await {
                Ok(MonitorStatus::Running(mut client)) => client.wait().await,
                Ok(MonitorStatus::Exited(exit)) => Ok(exit),
                Err(e) => Err(e),
            };
            let at = exit
                .as_ref()
                .map(|e| e.finished_at_unix_nanos as i64)
                .unwrap_or_else(|_| sandbox_core::timestamp::now());
            let _guard = daemon.locks.lock(&id).await;
            let changed = daemon.sandboxes.update(&id, |s| {
                let was_ready = s.state == SandboxState::Ready;
                s.mark_stopped(at);
                if let (Some(infra), Ok(exit)) = (s.infra_container.as_mut(), exit.as_ref()) {
                    infra.exit_code = Some(exit.exit_code);
                    infra.finished_at = Some(at);
                    infra.state = ContainerState::Exited;
                }
                was_ready.then(|| s.clone())
            });
            if let Ok(Some(sandbox)) = changed {
                tracing::info!(pod = %id, "infra container exited; pod not ready");
                let _ = daemon.save_sandbox(&sandbox);
            }
        });
    }

    /// Watches container `id` and records its exit when it comes.
    pub fn watch_container(self: &Arc<Self>, id: &str) {
        let daemon = Arc::clone(self);
        let id = id.to_string();
        tokio::spawn(async move {
            let dir = Layout::monitor(&daemon.layout.container_dir(&id));
            let exit = match Monitor::reconnect(&id, &dir).await {
                Ok(MonitorStatus::Running(mut client)) => client.wait().await,
                Ok(MonitorStatus::Exited(exit)) => Ok(exit),
                Err(e) => Err(e),
            };
            let exit = match exit {
                Ok(exit) => exit,
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "lost the monitor");
                    let _ = daemon
                        .containers
                        .update(&id, |c| c.mark_unknown(e.to_string()));
                    return;
                }
            };
            crate::container::record_exit(&daemon, &id, &exit).await;
        });
    }

    /// Sends a container event to GetContainerEvents subscribers.
    pub fn emit(&self, container_id: &str, sandbox_id: &str, kind: cri::ContainerEventType) {
        let _ = self.events.send(cri::ContainerEventResponse {
            container_id: container_id.to_string(),
            container_event_type: kind as i32,
            created_at: sandbox_core::timestamp::now(),
            pod_sandbox_status: None,
            containers_statuses: Vec::new(),
        });
        let _ = sandbox_id;
    }
}
