//! ContainerStats, ListContainerStats, PodSandboxStats and
//! ListPodSandboxStats, read from cgroups, the writable layer and the pod's
//! network namespace.
//!
//! gVisor (runsc) keeps a pod's processes inside its sandbox: the cgroups of
//! its containers stay empty, so their CPU and memory read as unknown; the
//! pod's network counters and writable layers are reported as for runc.

pub mod cgroup;
pub mod network;

use crate::convert;
use crate::daemon::Daemon;
use crate::error::Result;
use crate::pod::cgroups_path;
use cgroup::{CgroupUsage, Hierarchy};
use k8s_cri::v1 as cri;
use sandbox_core::{Container, ContainerFilter, Sandbox, SandboxFilter};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The previous CPU reading of each cgroup, for `usage_nano_cores` (a rate
/// needs two readings).
#[derive(Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuRates {
    /// Nanocores since the previous reading of `key`, which `(now, cpu_ns)`
    /// replaces; `None` for the first reading.
    pub fn rate(&self, key: &str, now: i64, cpu_ns: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let previous = last.insert(key.to_string(), (now, cpu_ns));
        let (then, before) = previous?;
        let elapsed = now.checked_sub(then).filter(|e| *e > 0)?;
        Some(((cpu_ns.saturating_sub(before)) as u128 * 1_000_000_000 / elapsed as u128) as u64)
    }

    /// Forgets `key` (its container is gone).
    pub fn forget(&self, key: &str) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

fn u64_value(v: Option<u64>) -> Option<cri::UInt64Value> {
    v.map(|value| cri::UInt64Value { value })
}

fn cpu(daemon: &Daemon, key: &str, usage: &CgroupUsage, now: i64) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: u64_value(usage.cpu_ns),
        usage_nano_cores: u64_value(
            usage
                .cpu_ns
                .and_then(|ns| daemon.cpu_rates.rate(key, now, ns)),
        ),
    }
}

fn memory(usage: &CgroupUsage, now: i64) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: u64_value(usage.working_set_bytes),
        available_bytes: None,
        usage_bytes: u64_value(usage.memory_bytes),
        rss_bytes: u64_value(usage.rss_bytes),
        page_faults: u64_value(usage.page_faults),
        major_page_faults: u64_value(usage.major_page_faults),
    }
}

/// The stats of one container.
pub async fn container(daemon: &Arc<Daemon>, container: &Container) -> Result<cri::ContainerStats> {
    let now = sandbox_core::timestamp::now();
    let parent = daemon
        .sandboxes
        .get(&container.sandbox_id)
        .map(|s| s.cgroup_parent.clone())
        .unwrap_or_default();
    let usage = Hierarchy::detect().usage(&cgroups_path(&parent, &container.id));
    let layer = daemon.images.writable_layer_usage(&container.id).await?;
    Ok(cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: container.id.clone(),
            metadata: Some(crate::container::status::cri_metadata(container)),
            labels: convert::cri_map(&container.labels),
            annotations: convert::cri_map(&container.annotations),
        }),
        cpu: Some(cpu(daemon, &container.id, &usage, now)),
        memory: Some(memory(&usage, now)),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: now,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: daemon.layout.images().to_string_lossy().into_owned(),
            }),
            used_bytes: u64_value(layer.map(|(bytes, _)| bytes)),
            inodes_used: u64_value(layer.map(|(_, inodes)| inodes)),
        }),
        swap: None,
    })
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
    let mut out = Vec::new();
    for c in daemon.containers.list(&model) {
        out.push(container(daemon, &c).await?);
    }
    Ok(out)
}

/// The stats of one pod: its containers, their sum, and its network.
pub async fn pod(daemon: &Arc<Daemon>, sandbox: &Sandbox) -> Result<cri::PodSandboxStats> {
    let now = sandbox_core::timestamp::now();
    let filter = ContainerFilter {
        sandbox_id_prefix: Some(sandbox.id.clone()),
        ..ContainerFilter::default()
    };
    let mut containers = Vec::new();
    for c in daemon.containers.list(&filter) {
        if c.sandbox_id == sandbox.id {
            containers.push(container(daemon, &c).await?);
        }
    }
    let hierarchy = Hierarchy::detect();
    let mut total = hierarchy.usage(&cgroups_path(&sandbox.cgroup_parent, &sandbox.id));
    for c in daemon.containers.list(&filter) {
        total = total.plus(&hierarchy.usage(&cgroups_path(&sandbox.cgroup_parent, &c.id)));
    }
    let infra_pid = sandbox
        .infra_container
        .as_ref()
        .and_then(|c| c.pid)
        .filter(|_| !sandbox.is_stopped() && sandbox.netns_path.is_some());
    Ok(cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: sandbox.id.clone(),
            metadata: Some(crate::pod::status::cri_metadata(sandbox)),
            labels: convert::cri_map(&sandbox.labels),
            annotations: convert::cri_map(&sandbox.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu(daemon, &format!("pod:{}", sandbox.id), &total, now)),
            memory: Some(memory(&total, now)),
            network: infra_pid.map(|pid| network::usage(pid, now)),
            process: None,
            containers,
        }),
        windows: None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_need_two_readings() {
        let rates = CpuRates::default();
        assert_eq!(rates.rate("c", 1_000_000_000, 0), None);
        // Half a core over one second.
        assert_eq!(
            rates.rate("c", 2_000_000_000, 500_000_000),
            Some(500_000_000)
        );
        rates.forget("c");
        assert_eq!(rates.rate("c", 3_000_000_000, 900_000_000), None);
    }
}
