//! The daemon's shared state: the stores, the trust policy, and the parts
//! that reach the machine (runtimes, monitors, images, pod network, pins),
//! each behind a trait so that a test daemon is built from doubles.
//!
//! Building a [`Daemon`] does no I/O: [`crate::opener`] builds the real
//! [`Parts`] at start, [`crate::restore`] brings back what was recorded, and
//! [`crate::watch`] follows exits. Those modules import this one, never the
//! reverse.

use crate::config::Config;
use crate::creations::Creations;
use crate::error::{Error, Result};
use crate::handlers::HandlerSet;
use crate::layout::Layout;
use crate::locks::KeyedLocks;
use crate::records::RecordDir;
use cgroups::CgroupDriver;
use cri_api::v1 as cri;
use image_store::ContainerImages;
use netns::PinDir;
use oci_shim::monitor::MonitorLauncher;
use oci_shim::runtime::{OciRuntime, RuntimeHandlerConfig};
use oci_shim::spec::HostLimits;
use sandbox_core::{Container, ContainerStore, NameRegistrar, Sandbox, SandboxStore};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::broadcast;
use trust_policy::TrustPolicy;

/// What a daemon is built from: everything that reaches disk, processes or
/// the network, made by [`crate::opener::open`] for real and by tests from
/// temporary directories and doubles.
pub struct Parts {
    /// The configured handlers and their runtimes.
    pub handlers: HandlerSet,
    /// Starts containers under their monitors and learns their exits.
    pub monitors: Arc<dyn MonitorLauncher>,
    /// The private network namespace pin directory.
    pub pins: PinDir,
    /// Pod records on disk.
    pub sandbox_records: RecordDir,
    /// Container records on disk.
    pub container_records: RecordDir,
    /// Images and container root filesystems.
    pub images: Arc<dyn ContainerImages>,
    /// Pod networking (CNI).
    pub network: Arc<dyn cni::PodNetwork>,
    /// What the host lets containers have (capabilities, oom_score_adj).
    pub host: HostLimits,
    /// The infra containers' root filesystem.
    pub pause_rootfs: PathBuf,
    /// The per-container monitor executable.
    pub monitor_binary: PathBuf,
    /// Where root filesystems are mounted, as a mount of its own that a
    /// runtime's `create` can run without; `None` where it is not one.
    pub rootfs_tree: Option<image_store::RootFsTree>,
    /// The Exec/Attach/PortForward streaming server and its tokens.
    pub streaming: cri_streaming::StreamingServer,
    /// RunPodSandbox and StopPodSandbox calls in flight: made before the
    /// daemon, since the handlers' runtimes take turns with them too.
    pub pod_calls: Arc<crate::quiet::Quiet>,
}

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
    /// Which handler a pod runs on: swapped whole by a reload.
    policy: std::sync::RwLock<Arc<TrustPolicy>>,
    /// The handlers and their runtimes: swapped whole by a reload.
    handlers: std::sync::RwLock<Arc<HandlerSet>>,
    /// Starts containers under their monitors and learns their exits.
    pub monitors: Arc<dyn MonitorLauncher>,
    /// The private network namespace pin directory.
    pub pins: PinDir,
    /// Pod records on disk.
    pub sandbox_records: RecordDir,
    /// Container records on disk.
    pub container_records: RecordDir,
    /// Images and container root filesystems.
    pub images: Arc<dyn ContainerImages>,
    /// Pod networking (CNI).
    pub network: Arc<dyn cni::PodNetwork>,
    /// What the host lets containers have (capabilities, oom_score_adj).
    pub host: HostLimits,
    /// The infra containers' root filesystem.
    pub pause_rootfs: PathBuf,
    /// The per-container monitor executable.
    pub monitor_binary: PathBuf,
    /// Where root filesystems are mounted, as a mount of its own that a
    /// runtime's `create` can run without; `None` where it is not one.
    pub rootfs_tree: Option<image_store::RootFsTree>,
    /// Per-pod and per-container request serialisation.
    pub locks: KeyedLocks,
    /// The exits the containers' watchers have seen, for stops to wait on.
    pub exits: crate::exits::Exits,
    /// The previous CPU readings, for CPU rates in stats.
    pub cpu_rates: cgroups::CpuRates,
    /// Each container's cgroup stats files, kept open between stats calls.
    pub stats_files: cgroups::FileCache,
    /// Writable-layer usage figures for stats, re-measured in the
    /// background.
    pub layer_usage: Arc<crate::stats::layer_usage::LayerUsageCache>,
    /// Container lifecycle events for GetContainerEvents.
    pub events: broadcast::Sender<cri::ContainerEventResponse>,
    /// The Exec/Attach/PortForward streaming server and its tokens.
    pub streaming: cri_streaming::StreamingServer,
    /// The daemon's own counters, served by the `/metrics` endpoint.
    pub metrics: crate::metrics::Metrics,
    /// RunPodSandbox calls in flight or unclaimed, by pod (retries join).
    pub pod_creations: Arc<Creations>,
    /// CreateContainer calls in flight or unclaimed, by container.
    pub container_creations: Arc<Creations>,
    /// Pods removed while their network release was still running: what
    /// that release needs, until it is done (`pod::release`).
    pub removed_pods: crate::pod::removed::RemovedPods,
    /// Turns for background network releases, [`parallel_releases`] of
    /// them (`pod::release::release_later`).
    pub background_releases: tokio::sync::Semaphore,
    /// RunPodSandbox and StopPodSandbox calls in flight, beside which
    /// background releases (`pod::release::release_later`), deletions
    /// (`discard`) and cgroup removals (`opener::retirement`) run one at a
    /// time.
    pub pod_calls: Arc<crate::quiet::Quiet>,
    /// Turns for RunPodSandbox's CNI ADDs: one per CPU, each held for at
    /// most [`NETWORK_SETUP_HOLD_AT_MOST`] (`pod::network::setup`).
    pub network_setups: crate::turns::Turns,
}

impl Daemon {
    /// A daemon of `config` over `parts`, with empty stores: no I/O.
    pub fn new(config: Config, parts: Parts) -> Result<Daemon> {
        let policy = TrustPolicy::new(
            config.runtime.trust_config(),
            config.runtime.handlers.keys().cloned(),
        )
        .map_err(|e| Error::InvalidArgument(format!("runtime configuration: {e}")))?;
        let (events, _) = broadcast::channel(1024);
        let grace = std::time::Duration::from_secs(config.runtime.unclaimed_creation_grace_seconds);
        Ok(Daemon {
            layout: Layout::new(&config.root, &config.state),
            sandboxes: SandboxStore::new(),
            containers: ContainerStore::new(),
            pod_names: NameRegistrar::new(),
            container_names: NameRegistrar::new(),
            policy: std::sync::RwLock::new(Arc::new(policy)),
            handlers: std::sync::RwLock::new(Arc::new(parts.handlers)),
            monitors: parts.monitors,
            pins: parts.pins,
            sandbox_records: parts.sandbox_records,
            container_records: parts.container_records,
            images: parts.images,
            network: parts.network,
            host: parts.host,
            pause_rootfs: parts.pause_rootfs,
            monitor_binary: parts.monitor_binary,
            rootfs_tree: parts.rootfs_tree,
            locks: KeyedLocks::default(),
            exits: crate::exits::Exits::default(),
            cpu_rates: cgroups::CpuRates::default(),
            stats_files: cgroups::FileCache::default(),
            layer_usage: Arc::default(),
            events,
            streaming: parts.streaming,
            background_releases: tokio::sync::Semaphore::new(parallel_releases()),
            pod_calls: parts.pod_calls,
            network_setups: crate::turns::Turns::new(cpus(), NETWORK_SETUP_HOLD_AT_MOST),
            metrics: crate::metrics::Metrics::default(),
            pod_creations: Creations::new(grace),
            removed_pods: Default::default(),
            container_creations: Creations::new(grace),
            config,
        })
    }

    /// The trust policy in force.
    pub fn policy(&self) -> Arc<TrustPolicy> {
        // A poisoned lock still holds a whole policy: a swap is one store.
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `policy` in force for the next decisions (a reload); pods
    /// already placed keep their handler.
    pub fn set_policy(&self, policy: TrustPolicy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    /// The handlers in force.
    pub fn handlers(&self) -> Arc<HandlerSet> {
        // A poisoned lock still holds a whole set: a swap is one store.
        Arc::clone(&self.handlers.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `handlers` in force for the next calls (a reload).
    pub fn set_handlers(&self, handlers: HandlerSet) {
        *self.handlers.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(handlers);
    }

    fn not_configured(name: &str) -> Error {
        Error::Internal(format!("runtime handler {name:?} is not configured"))
    }

    /// The runtime of handler `name`.
    pub fn runtime(&self, name: &str) -> Result<Arc<dyn OciRuntime>> {
        self.handlers()
            .get(name)
            .map(|h| Arc::clone(&h.runtime))
            .ok_or_else(|| Self::not_configured(name))
    }

    /// The runtimes of every handler, by name.
    pub fn runtimes(&self) -> Vec<(String, Arc<dyn OciRuntime>)> {
        self.handlers()
            .iter()
            .map(|(name, h)| (name.clone(), Arc::clone(&h.runtime)))
            .collect()
    }

    /// The handler configuration for `name`.
    pub fn handler(&self, name: &str) -> Result<RuntimeHandlerConfig> {
        self.handlers()
            .get(name)
            .map(|h| h.runtime_config.clone())
            .ok_or_else(|| Self::not_configured(name))
    }

    /// Whether handler `name` is gVisor (runsc), whose pods get what
    /// `crate::gvisor` and the gVisor cases of the verbs give them.
    pub fn on_gvisor(&self, name: &str) -> bool {
        self.handlers()
            .get(name)
            .is_some_and(|h| h.runtime_config.kind == oci_shim::runtime::RuntimeKind::Runsc)
    }

    /// Which annotations handler `name` may receive in `config.json`
    /// (none for a handler that is not configured).
    pub fn allowed_annotations(&self, name: &str) -> cri_spec::annotations::AllowList {
        self.handlers()
            .get(name)
            .map(|h| h.settings.allow_list())
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
        off_worker(|| self.sandbox_records.save(&sandbox.id, sandbox))
            .map_err(|e| Error::internal(format!("pod {}", sandbox.id), e))
    }

    /// Saves container `container`'s record.
    pub fn save_container(&self, container: &Container) -> Result<()> {
        off_worker(|| self.container_records.save(&container.id, container))
            .map_err(|e| Error::internal(format!("container {}", container.id), e))
    }

    /// Saves container `container`'s record on the blocking pool, over the
    /// record on disk only (`Ok(false)` once it was removed): for an exit
    /// recorded while a stop, and the removal its caller may send next,
    /// go on without it. Awaiting it yields the worker rather than handing
    /// it off (`block_in_place`), so that the stop the exit just woke, in
    /// the worker's next-task slot, runs at once and not after the fsync.
    pub fn save_existing_container(
        self: &Arc<Self>,
        container: Container,
    ) -> impl std::future::Future<Output = Result<bool>> {
        let daemon = Arc::clone(self);
        let object = format!("container {}", container.id);
        on_blocking_pool(object, move || {
            daemon
                .container_records
                .save_existing(&container.id, &container)
        })
    }

    /// Starts saving pod `sandbox`'s record on the blocking pool and
    /// returns its result to await: the caller's task goes on meanwhile
    /// (StopPodSandbox kills and waits beside it), and its worker is never
    /// handed off as with [`Daemon::save_sandbox`].
    pub fn spawn_save_sandbox(
        self: &Arc<Self>,
        sandbox: Sandbox,
    ) -> impl std::future::Future<Output = Result<()>> {
        let daemon = Arc::clone(self);
        let object = format!("pod {}", sandbox.id);
        on_blocking_pool(object, move || {
            daemon.sandbox_records.save(&sandbox.id, &sandbox)
        })
    }

    /// Deletes the record of `kind` `id` (a full id) on the blocking pool:
    /// the caller's worker runs other tasks meanwhile instead of waiting on
    /// the unlinks, or being handed off to a thread that must first get a
    /// CPU.
    pub async fn remove_record(self: &Arc<Self>, kind: RecordKind, id: &str) -> Result<()> {
        let object = match kind {
            RecordKind::Pod => format!("pod {id}"),
            RecordKind::Container => format!("container {id}"),
        };
        let (daemon, id) = (Arc::clone(self), id.to_string());
        on_blocking_pool(object, move || match kind {
            RecordKind::Pod => daemon.sandbox_records.remove(&id),
            RecordKind::Container => daemon.container_records.remove(&id),
        })
        .await
    }

    /// Sends a container event to GetContainerEvents subscribers.
    pub fn emit(&self, container_id: &str, kind: cri::ContainerEventType) {
        let _ = self.events.send(cri::ContainerEventResponse {
            container_id: container_id.to_string(),
            container_event_type: kind as i32,
            created_at: sandbox_core::timestamp::now(),
            pod_sandbox_status: None,
            containers_statuses: Vec::new(),
        });
    }
}

/// Starts `work` on a record of `object` on the blocking pool at once and
/// returns its result to await: the caller's worker polls other tasks
/// meanwhile, and is never handed off as under [`off_worker`].
fn on_blocking_pool<T: Send + 'static>(
    object: String,
    work: impl FnOnce() -> std::result::Result<T, crate::records::RecordError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T>> {
    let running = tokio::task::spawn_blocking(work);
    async move {
        match running.await {
            Ok(done) => done.map_err(|e| Error::internal(&object, e)),
            Err(e) => Err(Error::internal(&object, e)),
        }
    }
}

/// Which records a record's id is among.
#[derive(Debug, Clone, Copy)]
pub enum RecordKind {
    /// Pods' records.
    Pod,
    /// Containers' records.
    Container,
}

/// How many background network releases (`pod::release`) run at once
/// per CPU. A DEL is mostly
/// waiting (plugin start-up, the xtables lock), so a few per CPU keep the
/// CPUs busy; unbounded, a node-wide teardown had about a hundred queued
/// at once, and every stop beside them waited in that run queue. At 110
/// pods, 4 clients, 2 CPUs, in four interleaved pairs against unbounded:
/// StopPodSandbox p50 21–31 → 11–16 ms, the teardown 4.6–5.2 → 4.0–4.3 s.
const RELEASES_PER_CPU: usize = 4;

/// How long after the last RunPodSandbox or StopPodSandbox the daemon
/// counts as quiet, with every background release turn open: longer than
/// the gap between one pod's calls and the next one's when kubelet starts
/// or stops many.
pub const POD_CALLS_QUIET: std::time::Duration = std::time::Duration::from_millis(50);

/// How long a CNI ADD holds its turn ([`crate::turns`]) before the next
/// pod's ADD may start beside it anyway. An ADD takes 30–45 ms alone here
/// and up to about 200 ms (p99) while 110 pods start four at a time; a
/// plugin that hangs holds up the pods behind it by this much, once.
pub const NETWORK_SETUP_HOLD_AT_MOST: std::time::Duration = std::time::Duration::from_millis(500);

/// How many background releases may run their DEL at once here.
pub fn parallel_releases() -> usize {
    cpus() * RELEASES_PER_CPU
}

/// The CPUs this process may use, asked once: the standard library reads
/// the cgroup's quota files every time it is asked, and stats ask on
/// every call.
pub fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `save`, which writes and fsyncs a record (milliseconds, more when
/// the disk is busy), without holding up the tokio worker it is called
/// on: on the daemon's multi-threaded runtime the worker's other tasks
/// move to another thread meanwhile (`block_in_place`), instead of every
/// call queued behind it waiting for the disk.
pub(crate) fn off_worker<T>(save: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(save)
    } else {
        save()
    }
}
