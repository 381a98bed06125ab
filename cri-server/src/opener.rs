//! Building the real daemon at start: directories, the pause root, the pin
//! directory, the image store (and its signature policy), CNI, the runtimes
//! and the streaming port; then restoring what was recorded.

use crate::config::{Config, HandlerConfig};
use crate::daemon::{Daemon, Parts};
use crate::handlers::{Handler, HandlerSet};
use crate::layout::Layout;
use crate::quiet::Quiet;
use crate::records::RecordDir;
use crate::signatures::Signatures;
use cgroups::CgroupDriver;
use netns::PinDir;
use oci_shim::monitor::ProcessMonitors;
use oci_shim::runtime::{
    Background, CliRuntime, OciRuntime, Retirement, RuntimeFeatures, RuntimeHandlerConfig,
    RuntimeKind,
};
use oci_shim::spec::HostLimits;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct StartError {
    what: String,
    cause: String,
}

impl StartError {
    /// `what` could not be done, because of `cause`.
    pub fn new(what: impl std::fmt::Display, cause: impl std::fmt::Display) -> StartError {
        StartError {
            what: what.to_string(),
            cause: cause.to_string(),
        }
    }
}

/// Exists exactly when systemd is the running init (sd_booted(3)).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// The daemon, and what reloads its signature policy (on SIGHUP).
pub struct Opened {
    /// The daemon, its records restored.
    pub daemon: Arc<Daemon>,
    /// The signature policy in force, and its file.
    pub signatures: Signatures,
}

/// Prepares everything the daemon needs on this machine, then restores every
/// pod and container recorded on disk.
pub async fn open(config: Config) -> Result<Opened, StartError> {
    if config.runtime.cgroup_driver == CgroupDriver::Systemd
        && !std::path::Path::new(SYSTEMD_RUNNING).exists()
    {
        return Err(StartError::new(
            "runtime.cgroup_driver",
            format!("\"systemd\" needs a running systemd, and there is none here (no {SYSTEMD_RUNNING}); use \"cgroupfs\""),
        ));
    }
    // First: a policy that does not load stops the daemon before it
    // touches anything (the error names the file and where in it).
    let policy = crate::signatures::load_policy(&config.image)
        .map_err(|e| StartError::new("image.signature_policy", e))?;
    let images = image_store(&config).await?;
    let pod_calls = Arc::new(Quiet::new(crate::daemon::POD_CALLS_QUIET));
    let quiet = Arc::clone(&pod_calls);
    images.set_deleter(Arc::new(move |doomed| {
        crate::discard::delete_in_turn(&quiet, doomed)
    }));
    let parts = parts(&config, images.clone(), pod_calls).await?;
    let daemon =
        Arc::new(Daemon::new(config, parts).map_err(|e| StartError::new("configuration", e))?);
    let counts = daemon.metrics.signatures.clone();
    let signatures = Signatures::install(&daemon.config.image, policy, images, counts);
    crate::restore::restore(&daemon).await;
    finish_retirements(&daemon);
    Ok(Opened { daemon, signatures })
}

/// Hands the cgroup removals a killed daemon still owed back to the
/// background: every handler's, including one a reload has since dropped.
fn finish_retirements(daemon: &Daemon) {
    let Ok(handlers) = std::fs::read_dir(daemon.layout.retired_runtime_states()) else {
        return;
    };
    for dir in handlers.flatten().map(|e| e.path()) {
        let owed = Retirement::new(&dir, cgroup_removals(&daemon.pod_calls)).sweep();
        if owed > 0 {
            tracing::info!(dir = %dir.display(), containers = owed, "removing the cgroups of containers deleted before the last stop");
        }
    }
}

/// Where handler `name`'s deleted runc containers wait for the removal of
/// their cgroups, which takes turns with `pod_calls`.
pub fn retirement(layout: &Layout, name: &str, pod_calls: &Arc<Quiet>) -> Retirement {
    let removals = cgroup_removals(pod_calls);
    let background: Background = Arc::new(move |job| {
        // The container's runc state has moved aside; its cgroups are owed.
        crate::fault::point("runtime_delete.cgroups_owed");
        removals(job)
    });
    Retirement::new(layout.retired_runtime_state(name), background)
}

/// Runs cgroup removals in their lane's turns
/// ([`crate::quiet::Lane::CgroupRemoval`]).
fn cgroup_removals(pod_calls: &Arc<Quiet>) -> Background {
    let quiet = Arc::clone(pod_calls);
    Arc::new(move |job| quiet.run_in_turn(crate::quiet::Lane::CgroupRemoval, job))
}

/// The image store, with the configured registries (their TLS files and
/// the auth file read), stall timeout and concurrent downloads.
async fn image_store(config: &Config) -> Result<image_store::ImageStore, StartError> {
    let layout = Layout::new(&config.root, &config.state);
    let registries = crate::registries::load_blocking(&config.image)
        .await
        .map_err(|e| StartError::new("configuration", e))?;
    let pull_options = config
        .image
        .pull_options()
        .map_err(|e| StartError::new("configuration", e))?;
    image_store::ImageStore::open_with(layout.images(), registries, pull_options)
        .await
        .map_err(|e| StartError::new("image store", e))
}

/// The real parts: files, processes and sockets of this machine, around
/// the image store `images`.
async fn parts(
    config: &Config,
    images: image_store::ImageStore,
    pod_calls: Arc<Quiet>,
) -> Result<Parts, StartError> {
    let layout = Layout::new(&config.root, &config.state);
    let monitor_binary = monitor_binary()?;
    let handlers = handler_set(config, &layout, &monitor_binary, &pod_calls).await;
    let pause_rootfs = crate::pause::install(&layout.pause_rootfs())
        .map_err(|e| StartError::new(layout.pause_rootfs().display(), e))?;
    let mut cni_config = cni::CniManagerConfig::new(&config.network.conf_dir, layout.cni_cache());
    cni_config.plugin_dirs = config.network.plugin_dirs.clone();
    let network = cni::CniManager::new(cni_config).map_err(|e| StartError::new("CNI", e))?;
    // A node without it only runs runtimes with more mounts in view.
    let rootfs_tree = images.isolate_root_filesystems().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "root filesystems stay in every runtime's view");
        None
    });
    Ok(Parts {
        handlers,
        monitors: Arc::new(ProcessMonitors),
        pins: PinDir::prepare(layout.netns())
            .map_err(|e| StartError::new("network namespace directory", e))?,
        sandbox_records: RecordDir::open(layout.sandbox_records())
            .map_err(|e| StartError::new("pod records", e))?,
        container_records: RecordDir::open(layout.container_records())
            .map_err(|e| StartError::new("container records", e))?,
        images: Arc::new(images),
        network: Arc::new(network),
        host: HostLimits::of_current_process()
            .map_err(|e| StartError::new("reading the daemon's capabilities", e))?,
        pause_rootfs,
        monitor_binary,
        rootfs_tree,
        streaming: cri_streaming::StreamingServer::bind(&config.streaming.server_config())
            .await
            .map_err(|e| StartError::new("streaming server", e))?,
        pod_calls,
    })
}

/// The handlers of `config`, each with its runtime driver and what the
/// runtime says it can do (asked of all at once: a start or a reload waits
/// for the slowest only). Deleted runc containers' cgroups are removed in
/// turns with `pod_calls` ([`retirement`]).
pub async fn handler_set(
    config: &Config,
    layout: &Layout,
    monitor_binary: &Path,
    pod_calls: &Arc<Quiet>,
) -> HandlerSet {
    let probes = handlers(config, layout)
        .into_iter()
        .map(|(name, runtime_config)| async move {
            let runtime = CliRuntime::new(runtime_config.clone())
                .with_monitor_binary(monitor_binary)
                .with_retirement(retirement(layout, &name, pod_calls));
            let features = runtime.features().await.unwrap_or_else(|error| {
            tracing::info!(%error, "runtime features unknown: none of the optional ones assumed");
            RuntimeFeatures::default()
        });
            let handler = Handler {
                settings: config.runtime.handlers[&name].clone(),
                runtime_config,
                runtime: Arc::new(runtime) as Arc<dyn OciRuntime>,
                features,
            };
            (name, handler)
        });
    HandlerSet::new(futures_util::future::join_all(probes).await)
}

/// Each configured handler as the runtime driver needs it.
fn handlers(config: &Config, layout: &Layout) -> BTreeMap<String, RuntimeHandlerConfig> {
    config
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
                root: h
                    .runtime_root
                    .clone()
                    .unwrap_or_else(|| layout.runtime_root(name)),
                kind: runtime_kind(h),
                timeout: std::time::Duration::from_secs(h.timeout_seconds.max(1)),
            };
            (name.clone(), cfg)
        })
        .collect()
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

/// The `oci-monitor` installed beside the daemon.
fn monitor_binary() -> Result<PathBuf, StartError> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("oci-monitor")))
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            StartError::new(
                "oci-monitor",
                "not found beside the cri-server executable; install both together",
            )
        })
}
