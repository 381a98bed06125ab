//! ContainerStats, ListContainerStats, PodSandboxStats and
//! ListPodSandboxStats, and ListPodSandboxMetrics ([`cri_metrics`]), read
//! from cgroups, the writable layer and the pod's network namespace.
//!
//! gVisor (runsc) keeps a pod's processes inside its sandbox: the cgroups of
//! its containers stay empty, so their CPU and memory read as unknown; the
//! pod's network counters and writable layers are reported as for runc.

pub mod cri_metrics;
pub mod layer_usage;
pub mod network;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use cgroups::pressure::{PsiLine, PsiStats};
use cgroups::{CgroupUsage, Hierarchy, Pressure};
use cri_api::v1 as cri;
use cri_metrics::{ContainerReading, FsCapacity, Identity};
use cri_spec::convert;
use sandbox_core::{Container, ContainerFilter, ContainerState, Sandbox, SandboxFilter};
use std::path::Path;
use std::sync::Arc;

fn u64_value(v: Option<u64>) -> Option<cri::UInt64Value> {
    v.map(|value| cri::UInt64Value { value })
}

/// CRI's PSI from the kernel's (whose totals are microseconds).
fn psi(stats: Option<PsiStats>) -> Option<cri::PsiStats> {
    let data = |line: PsiLine| cri::PsiData {
        total: line.total_us.saturating_mul(1000),
        avg10: line.avg10,
        avg60: line.avg60,
        avg300: line.avg300,
    };
    stats.map(|s| cri::PsiStats {
        full: Some(data(s.full)),
        some: Some(data(s.some)),
    })
}

/// I/O usage: CRI carries only its pressure so far.
fn io(pressure: &Pressure, now: i64) -> Option<cri::IoUsage> {
    pressure.io.map(|_| cri::IoUsage {
        timestamp: now,
        psi: psi(pressure.io),
    })
}

fn cpu(
    daemon: &Daemon,
    key: &str,
    (usage, pressure): (&CgroupUsage, &Pressure),
    now: i64,
) -> cri::CpuUsage {
    cri::CpuUsage {
        psi: psi(pressure.cpu),
        timestamp: now,
        usage_core_nano_seconds: u64_value(usage.cpu_ns),
        usage_nano_cores: u64_value(
            usage
                .cpu_ns
                .and_then(|ns| daemon.cpu_rates.rate(key, now, ns)),
        ),
    }
}

fn memory((usage, pressure): (&CgroupUsage, &Pressure), now: i64) -> cri::MemoryUsage {
    cri::MemoryUsage {
        psi: psi(pressure.memory),
        timestamp: now,
        working_set_bytes: u64_value(usage.working_set_bytes),
        available_bytes: None,
        usage_bytes: u64_value(usage.memory_bytes),
        rss_bytes: u64_value(usage.rss_bytes),
        page_faults: u64_value(usage.page_faults),
        major_page_faults: u64_value(usage.major_page_faults),
    }
}

/// Runs `read` (cgroupfs and procfs reads) on a blocking thread, off the
/// async workers; `what` names the object if the thread is lost.
async fn off_workers<T: Send + 'static>(
    what: String,
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| Error::internal(what, format!("reading stats: {e}")))
}

/// The stats of one container.
pub async fn container(
    daemon: &Arc<Daemon>,
    container: Arc<Container>,
) -> Result<cri::ContainerStats> {
    let id = container.id.clone();
    let mut stats = batch(daemon, vec![container]).await?;
    stats
        .pop()
        .ok_or_else(|| Error::internal(format!("container {id}"), "no stats read"))
}

/// The stats of `containers`, in order: every cgroup read in one pass on
/// one blocking thread (one hand-off for a node's worth, not one per
/// container), writable layers from the daemon's cache.
async fn batch(
    daemon: &Arc<Daemon>,
    containers: Vec<Arc<Container>>,
) -> Result<Vec<cri::ContainerStats>> {
    let now = sandbox_core::timestamp::now();
    let dirs: Vec<String> = containers
        .iter()
        .map(|c| {
            let parent = daemon
                .sandboxes
                .get(&c.sandbox_id)
                .map(|s| s.cgroup_parent.clone())
                .unwrap_or_default();
            daemon.cgroup_dir(&parent, &c.id)
        })
        .collect();
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    let readings = read_cgroups(daemon, ids.iter().cloned().zip(dirs).collect()).await?;
    let layers = daemon.layer_usage.usages(&daemon.images, &ids).await;
    Ok(containers
        .iter()
        .zip(readings)
        .zip(layers)
        .map(|((c, reading), layer)| stats_of(daemon, c, reading, layer, now))
        .collect())
}

/// The core usage and pressure of each `(container id, cgroup)`, in
/// order, read on as many threads as there are CPUs (each with a share of
/// at least [`MIN_SHARE`] cgroups): the kernel's work to generate the
/// files is CPU work. The first share is read on this thread (under
/// `block_in_place`), the others on the blocking pool: a hand-off fewer,
/// and no second thread woken while the first still runs, which the
/// scheduler could queue behind it on one CPU for milliseconds while the
/// other CPU idles.
async fn read_cgroups(
    daemon: &Arc<Daemon>,
    cgroups: Vec<(String, String)>,
) -> Result<Vec<(CgroupUsage, Pressure)>> {
    let share = cgroups.len().div_ceil(crate::daemon::cpus()).max(MIN_SHARE);
    let mut chunks = cgroups.chunks(share).map(<[_]>::to_vec);
    let first = chunks.next().unwrap_or_default();
    let others: Vec<_> = chunks
        .map(|chunk| {
            let daemon = Arc::clone(daemon);
            tokio::task::spawn_blocking(move || read_chunk(&daemon, &chunk))
        })
        .collect();
    let mut readings = crate::daemon::off_worker(|| read_chunk(daemon, &first));
    for other in others {
        let chunk = other
            .await
            .map_err(|e| Error::internal("cgroups", format!("reading stats: {e}")))?;
        readings.extend(chunk);
    }
    Ok(readings)
}

/// The readings of `chunk`, each container's files kept open in
/// `Daemon::stats_files` for the next call.
fn read_chunk(daemon: &Daemon, chunk: &[(String, String)]) -> Vec<(CgroupUsage, Pressure)> {
    let hierarchy = Hierarchy::detect().open();
    chunk
        .iter()
        .map(|(id, dir)| {
            let mut files = daemon.stats_files.take(id, dir);
            let reading = (files.core_usage(&hierarchy), files.pressure(&hierarchy));
            // Removal forgets a container's files after dropping it from
            // the store: see FileCache::keep.
            daemon
                .stats_files
                .keep(id, files, || daemon.containers.contains(id));
            reading
        })
        .collect()
}

/// The fewest cgroups worth a thread of their own.
const MIN_SHARE: usize = 32;

/// One container's CRI stats from its readings.
fn stats_of(
    daemon: &Daemon,
    container: &Container,
    (usage, pressure): (CgroupUsage, Pressure),
    layer: Option<(u64, u64)>,
    now: i64,
) -> cri::ContainerStats {
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: container.id.clone(),
            metadata: Some(crate::container::status::cri_metadata(container)),
            labels: convert::cri_map(&container.labels),
            annotations: convert::cri_map(&container.annotations),
        }),
        cpu: Some(cpu(daemon, &container.id, (&usage, &pressure), now)),
        memory: Some(memory((&usage, &pressure), now)),
        io: io(&pressure, now),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: now,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: daemon.layout.images().to_string_lossy().into_owned(),
            }),
            used_bytes: u64_value(layer.map(|(bytes, _)| bytes)),
            inodes_used: u64_value(layer.map(|(_, inodes)| inodes)),
        }),
        swap: None,
    }
}

/// The stats of containers matching a CRI filter.
pub async fn containers(
    daemon: &Arc<Daemon>,
    filter: Option<cri::ContainerStatsFilter>,
) -> Result<Vec<cri::ContainerStats>> {
    let filter = filter.unwrap_or_default();
    let model = ContainerFilter {
        id_prefix: Some(filter.id).filter(|s| !s.is_empty()),
        state: None,
        sandbox_id_prefix: Some(filter.pod_sandbox_id).filter(|s| !s.is_empty()),
        label_selector: convert::map(&filter.label_selector),
    };
    batch(daemon, daemon.containers.list(&model)).await
}

/// The stats of one pod: its containers, their sum, and its network.
pub async fn pod(daemon: &Arc<Daemon>, sandbox: &Sandbox) -> Result<cri::PodSandboxStats> {
    let now = sandbox_core::timestamp::now();
    let filter = ContainerFilter {
        sandbox_id_prefix: Some(sandbox.id.clone()),
        ..ContainerFilter::default()
    };
    let own: Vec<Arc<Container>> = daemon
        .containers
        .list(&filter)
        .into_iter()
        .filter(|c| c.sandbox_id == sandbox.id)
        .collect();
    let containers = batch(daemon, own).await?;
    // The pod's own cgroup (the infra container) and its containers'; the
    // filter matches by prefix, so the pod id is checked exactly.
    let mut dirs = vec![daemon.cgroup_dir(&sandbox.cgroup_parent, &sandbox.id)];
    for c in daemon.containers.list(&filter) {
        if c.sandbox_id == sandbox.id {
            dirs.push(daemon.cgroup_dir(&sandbox.cgroup_parent, &c.id));
        }
    }
    let netns = network::Namespace::of(sandbox).filter(|_| !sandbox.is_stopped());
    let pod_dir = pod_cgroup_dir(daemon, sandbox);
    let (total, pressure, network) = off_workers(format!("pod {}", sandbox.id), move || {
        let hierarchy = Hierarchy::detect().open();
        let mut dirs = dirs.iter();
        let first = dirs
            .next()
            .map(|d| hierarchy.core_usage(d))
            .unwrap_or_default();
        let total = dirs.fold(first, |sum, d| sum.plus(&hierarchy.core_usage(d)));
        // Stall times cannot be summed over containers: only a cgroup of
        // the pod's own has them.
        let pressure = pod_dir.map(|d| hierarchy.pressure(&d)).unwrap_or_default();
        (total, pressure, netns.map(|ns| network::usage(&ns, now)))
    })
    .await?;
    Ok(cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: sandbox.id.clone(),
            metadata: Some(crate::pod::status::cri_metadata(sandbox)),
            labels: convert::cri_map(&sandbox.labels),
            annotations: convert::cri_map(&sandbox.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu(
                daemon,
                &format!("pod:{}", sandbox.id),
                (&total, &pressure),
                now,
            )),
            memory: Some(memory((&total, &pressure), now)),
            io: io(&pressure, now),
            network,
            process: None,
            containers,
        }),
        windows: None,
    })
}

/// The pod's own cgroup: the parent kubelet gave it (its containers' cgroups
/// sit right under it). Without one they share the daemon's, which is no
/// pod's.
fn pod_cgroup_dir(daemon: &Daemon, sandbox: &Sandbox) -> Option<String> {
    if sandbox.cgroup_parent.is_empty() {
        return None;
    }
    let dir = daemon.cgroup_dir(&sandbox.cgroup_parent, &sandbox.id);
    Path::new(&dir)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The stats of pods matching a CRI filter.
pub async fn pods(
    daemon: &Arc<Daemon>,
    filter: Option<cri::PodSandboxStatsFilter>,
) -> Result<Vec<cri::PodSandboxStats>> {
    let filter = filter.unwrap_or_default();
    let model = SandboxFilter {
        id_prefix: Some(filter.id).filter(|s| !s.is_empty()),
        state: None,
        label_selector: convert::map(&filter.label_selector),
    };
    let mut out = Vec::new();
    for s in daemon.sandboxes.list(&model) {
        out.push(pod(daemon, &s).await?);
    }
    Ok(out)
}

/// ListPodSandboxMetrics: the metrics of every pod that has not stopped,
/// and of its containers that have not exited (an exited container's
/// cgroup is gone).
pub async fn pod_metrics(daemon: &Arc<Daemon>) -> Result<Vec<cri::PodSandboxMetrics>> {
    let mut out = Vec::new();
    for sandbox in daemon.sandboxes.list(&SandboxFilter::default()) {
        if !sandbox.is_stopped() {
            out.push(one_pod_metrics(daemon, &sandbox).await?);
        }
    }
    Ok(out)
}

async fn one_pod_metrics(
    daemon: &Arc<Daemon>,
    sandbox: &Sandbox,
) -> Result<cri::PodSandboxMetrics> {
    let filter = ContainerFilter {
        sandbox_id_prefix: Some(sandbox.id.clone()),
        ..ContainerFilter::default()
    };
    let mut readings = Vec::new();
    for c in daemon.containers.list(&filter) {
        if c.sandbox_id != sandbox.id || c.state == ContainerState::Exited {
            continue;
        }
        // A container removed meanwhile has no layer: unknown, not a failure.
        let layer = match daemon.images.writable_layer_usage(&c.id).await {
            Ok(layer) => layer.map(|(bytes, _)| bytes),
            Err(e) => {
                tracing::debug!(container = %c.id, error = %e, "writable layer for metrics");
                None
            }
        };
        readings.push(ContainerReading {
            identity: Identity {
                container: c.metadata.name.clone(),
                id: c.id.clone(),
                image: c.image.clone(),
                name: c.name.clone(),
                namespace: sandbox.metadata.namespace.clone(),
                pod: sandbox.metadata.name.clone(),
            },
            writable_layer_bytes: layer,
            started_at: c.started_at,
            ..ContainerReading::default()
        });
    }
    let pod = Identity {
        id: sandbox.id.clone(),
        name: sandbox.name.clone(),
        namespace: sandbox.metadata.namespace.clone(),
        pod: sandbox.metadata.name.clone(),
        ..Identity::default()
    };
    let parent = sandbox.cgroup_parent.clone();
    let netns = network::Namespace::of(sandbox);
    let images = daemon.layout.images();
    let cgroups = Arc::clone(daemon);
    // cgroupfs, procfs and statvfs are file system calls: off the workers.
    let (readings, interfaces, now) = off_workers(format!("pod {}", sandbox.id), move || {
        let hierarchy = Hierarchy::detect();
        let fs = fs_capacity(&images);
        for r in &mut readings {
            let path = cgroups.cgroup_dir(&parent, &r.identity.id);
            r.usage = hierarchy.usage(&path);
            r.limits = hierarchy.limits(&path);
            r.tasks = hierarchy.tasks(&path);
            r.oom_kills = Some(hierarchy.oom_kills(&path));
            r.fs = fs;
        }
        let interfaces = netns.as_ref().map(network::interfaces).unwrap_or_default();
        (readings, interfaces, sandbox_core::timestamp::now())
    })
    .await?;
    Ok(cri::PodSandboxMetrics {
        pod_sandbox_id: sandbox.id.clone(),
        metrics: cri_metrics::pod_metrics(&pod, &interfaces, now),
        container_metrics: readings
            .iter()
            .map(|r| cri::ContainerMetrics {
                container_id: r.identity.id.clone(),
                metrics: cri_metrics::container_metrics(r, now),
            })
            .collect(),
    })
}

/// The size and inodes of the file system holding `path`.
fn fs_capacity(path: &Path) -> Option<FsCapacity> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(FsCapacity {
        bytes: stat.blocks().saturating_mul(stat.fragment_size()),
        inodes: stat.files(),
        inodes_free: stat.files_free(),
    })
}
