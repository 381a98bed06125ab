//! ListMetricDescriptors and ListPodSandboxMetrics: readings turned into
//! metrics with cAdvisor's names, so kubelet's CRI metrics collector can
//! serve `/metrics/cadvisor` from the runtime instead of from cAdvisor.
//!
//! Kubelet registers one Prometheus descriptor per [`cri::MetricDescriptor`]
//! and drops any metric whose label values do not match its descriptor's
//! label keys one for one, so every family here has a fixed key list: the
//! six cAdvisor labels of [`BASE_LABELS`] and, for some, extra keys
//! (`cpu`, `failure_type` and `scope`, `interface`).
//!
//! Values are `uint64`, which kubelet exposes unchanged as the sample value.
//! Families measured in seconds therefore carry whole seconds, truncated (as
//! CRI-O does): a nanosecond count under a `_seconds` name would be a
//! billion times too large to any query.
//!
//! This module only converts; the readings come from the `cgroups` crate,
//! [`super::network`] and the image store.

use super::network::InterfaceCounters;
use cgroups::{CgroupLimits, CgroupUsage, TaskCounts};
use cri_api::v1 as cri;

/// The label keys every family starts with, as cAdvisor names them under
/// kubelet: kubelet's container name, the runtime's id, the image, the
/// runtime's name for the container, and the pod's namespace and name.
pub const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// One metric family: what ListMetricDescriptors announces and what each
/// reported metric must match.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: cri::MetricType,
    /// Label keys after [`BASE_LABELS`].
    extra: &'static [&'static str],
}

use cri::MetricType::{Counter, Gauge};

macro_rules! families {
    ($($id:ident = $name:literal, $kind:ident, [$($extra:literal),*], $help:literal;)*) => {
        $(const $id: Family = Family {
            name: $name,
            help: $help,
            kind: $kind,
            extra: &[$($extra),*],
        };)*
        /// Every family, in the order ListMetricDescriptors lists them.
        const FAMILIES: &[Family] = &[$($id),*];
    };
}

families! {
    CPU_USAGE = "container_cpu_usage_seconds_total", Counter, ["cpu"],
        "Cumulative CPU time consumed, in whole seconds.";
    CPU_USER = "container_cpu_user_seconds_total", Counter, [],
        "Cumulative user CPU time consumed, in whole seconds.";
    CPU_SYSTEM = "container_cpu_system_seconds_total", Counter, [],
        "Cumulative system CPU time consumed, in whole seconds.";
    MEMORY_USAGE = "container_memory_usage_bytes", Gauge, [],
        "Current memory usage in bytes, including all memory regardless of when it was accessed.";
    MEMORY_WORKING_SET = "container_memory_working_set_bytes", Gauge, [],
        "Current working set in bytes: usage less inactive file pages.";
    MEMORY_RSS = "container_memory_rss", Gauge, [],
        "Size of RSS (anonymous memory) in bytes.";
    MEMORY_CACHE = "container_memory_cache", Gauge, [],
        "Number of bytes of page cache memory.";
    MEMORY_FAILCNT = "container_memory_failcnt", Counter, [],
        "Number of times memory usage hit the limit.";
    MEMORY_FAILURES = "container_memory_failures_total", Counter, ["failure_type", "scope"],
        "Cumulative count of memory allocation failures (page faults).";
    OOM_EVENTS = "container_oom_events_total", Counter, [],
        "Count of out of memory kills observed for the container.";
    SPEC_MEMORY_LIMIT = "container_spec_memory_limit_bytes", Gauge, [],
        "Memory limit for the container in bytes; 0 when unlimited.";
    SPEC_CPU_SHARES = "container_spec_cpu_shares", Gauge, [],
        "CPU shares of the container.";
    SPEC_CPU_QUOTA = "container_spec_cpu_quota", Gauge, [],
        "CPU quota of the container in microseconds per period; absent when unlimited.";
    SPEC_CPU_PERIOD = "container_spec_cpu_period", Gauge, [],
        "CPU quota period of the container in microseconds.";
    PROCESSES = "container_processes", Gauge, [],
        "Number of processes running inside the container.";
    THREADS = "container_threads", Gauge, [],
        "Number of threads running inside the container.";
    FS_USAGE = "container_fs_usage_bytes", Gauge, [],
        "Bytes used by the container's writable layer.";
    FS_LIMIT = "container_fs_limit_bytes", Gauge, [],
        "Size in bytes of the filesystem holding the container's writable layer.";
    FS_INODES = "container_fs_inodes_total", Gauge, [],
        "Number of inodes of the filesystem holding the container's writable layer.";
    FS_INODES_FREE = "container_fs_inodes_free", Gauge, [],
        "Number of free inodes of the filesystem holding the container's writable layer.";
    LAST_SEEN = "container_last_seen", Gauge, [],
        "Last time the container was seen by the runtime, in seconds since the epoch.";
    START_TIME = "container_start_time_seconds", Gauge, [],
        "Start time of the container in seconds since the epoch.";
    NET_RX_BYTES = "container_network_receive_bytes_total", Counter, ["interface"],
        "Cumulative count of bytes received.";
    NET_RX_PACKETS = "container_network_receive_packets_total", Counter, ["interface"],
        "Cumulative count of packets received.";
    NET_RX_ERRORS = "container_network_receive_errors_total", Counter, ["interface"],
        "Cumulative count of errors encountered while receiving.";
    NET_RX_DROPPED = "container_network_receive_packets_dropped_total", Counter, ["interface"],
        "Cumulative count of packets dropped while receiving.";
    NET_TX_BYTES = "container_network_transmit_bytes_total", Counter, ["interface"],
        "Cumulative count of bytes transmitted.";
    NET_TX_PACKETS = "container_network_transmit_packets_total", Counter, ["interface"],
        "Cumulative count of packets transmitted.";
    NET_TX_ERRORS = "container_network_transmit_errors_total", Counter, ["interface"],
        "Cumulative count of errors encountered while transmitting.";
    NET_TX_DROPPED = "container_network_transmit_packets_dropped_total", Counter, ["interface"],
        "Cumulative count of packets dropped while transmitting.";
}

/// Every metric family this runtime reports, for ListMetricDescriptors.
///
/// # Examples
///
/// ```
/// use cri_server::stats::cri_metrics::descriptors;
///
/// let cpu = descriptors()
///     .into_iter()
///     .find(|d| d.name == "container_cpu_usage_seconds_total")
///     .unwrap();
/// assert_eq!(cpu.label_keys.last().map(String::as_str), Some("cpu"));
/// ```
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    FAMILIES
        .iter()
        .map(|f| cri::MetricDescriptor {
            name: f.name.to_string(),
            help: f.help.to_string(),
            label_keys: BASE_LABELS
                .iter()
                .chain(f.extra)
                .map(|k| k.to_string())
                .collect(),
        })
        .collect()
}

/// The values of [`BASE_LABELS`] for one container, or for the pod itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Kubelet's name for the container; empty for the pod.
    pub container: String,
    /// The container's (or pod's) id.
    pub id: String,
    /// The image as kubelet named it; empty for the pod.
    pub image: String,
    /// The runtime's name: `k8s_<container>_…` or `k8s_POD_…`.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
}

impl Identity {
    fn values(&self) -> [&str; 6] {
        [
            &self.container,
            &self.id,
            &self.image,
            &self.name,
            &self.namespace,
            &self.pod,
        ]
    }
}

/// The filesystem the writable layer lives on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsCapacity {
    /// Its size, bytes.
    pub bytes: u64,
    /// Its inodes.
    pub inodes: u64,
    /// Its free inodes.
    pub inodes_free: u64,
}

/// Everything read about one container at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerReading {
    /// Who it is.
    pub identity: Identity,
    /// Its cgroup's usage.
    pub usage: CgroupUsage,
    /// Its cgroup's limits.
    pub limits: CgroupLimits,
    /// Its processes and threads.
    pub tasks: TaskCounts,
    /// OOM kills in its cgroup.
    pub oom_kills: Option<u64>,
    /// Bytes its writable layer uses.
    pub writable_layer_bytes: Option<u64>,
    /// The filesystem under the writable layer.
    pub fs: Option<FsCapacity>,
    /// When it started, nanoseconds since the epoch.
    pub started_at: Option<i64>,
}

/// Collects metrics that share one identity and timestamp.
struct Metrics<'a> {
    base: [&'a str; 6],
    timestamp: i64,
    out: Vec<cri::Metric>,
}

impl<'a> Metrics<'a> {
    fn new(identity: &'a Identity, timestamp: i64) -> Self {
        Metrics {
            base: identity.values(),
            timestamp,
            out: Vec::new(),
        }
    }

    /// Adds `family`'s metric with `extra` label values; an unknown value
    /// adds nothing rather than a made-up zero.
    fn push(&mut self, family: &Family, extra: &[&str], value: Option<u64>) {
        let Some(value) = value else { return };
        // A mismatch would make kubelet drop the metric; refusing it here
        // keeps the rest of the answer usable (a unit test covers them all).
        if extra.len() != family.extra.len() {
            return;
        }
        self.out.push(cri::Metric {
            name: family.name.to_string(),
            timestamp: self.timestamp,
            metric_type: family.kind as i32,
            label_values: self
                .base
                .iter()
                .chain(extra)
                .map(|v| v.to_string())
                .collect(),
            value: Some(cri::UInt64Value { value }),
        });
    }
}

fn whole_seconds(nanos: u64) -> u64 {
    nanos / NANOS_PER_SECOND
}

/// A container's metrics, read at `now` (nanoseconds since the epoch).
pub fn container_metrics(reading: &ContainerReading, now: i64) -> Vec<cri::Metric> {
    let mut m = Metrics::new(&reading.identity, now);
    let usage = &reading.usage;
    m.push(&CPU_USAGE, &["total"], usage.cpu_ns.map(whole_seconds));
    m.push(&CPU_USER, &[], usage.cpu_user_ns.map(whole_seconds));
    m.push(&CPU_SYSTEM, &[], usage.cpu_system_ns.map(whole_seconds));
    m.push(&MEMORY_USAGE, &[], usage.memory_bytes);
    m.push(&MEMORY_WORKING_SET, &[], usage.working_set_bytes);
    m.push(&MEMORY_RSS, &[], usage.rss_bytes);
    m.push(&MEMORY_CACHE, &[], usage.cache_bytes);
    m.push(&MEMORY_FAILCNT, &[], usage.failcnt);
    for (kind, scope, value) in [
        ("pgfault", "container", usage.local_page_faults),
        ("pgmajfault", "container", usage.local_major_page_faults),
        ("pgfault", "hierarchy", usage.page_faults),
        ("pgmajfault", "hierarchy", usage.major_page_faults),
    ] {
        m.push(&MEMORY_FAILURES, &[kind, scope], value);
    }
    m.push(&OOM_EVENTS, &[], reading.oom_kills);
    let limits = &reading.limits;
    m.push(&SPEC_MEMORY_LIMIT, &[], limits.memory_limit_bytes);
    m.push(&SPEC_CPU_SHARES, &[], limits.cpu_shares);
    m.push(&SPEC_CPU_QUOTA, &[], limits.cpu_quota_us);
    m.push(&SPEC_CPU_PERIOD, &[], limits.cpu_period_us);
    m.push(&PROCESSES, &[], reading.tasks.processes);
    m.push(&THREADS, &[], reading.tasks.threads);
    m.push(&FS_USAGE, &[], reading.writable_layer_bytes);
    m.push(&FS_LIMIT, &[], reading.fs.map(|fs| fs.bytes));
    m.push(&FS_INODES, &[], reading.fs.map(|fs| fs.inodes));
    m.push(&FS_INODES_FREE, &[], reading.fs.map(|fs| fs.inodes_free));
    m.push(&LAST_SEEN, &[], u64::try_from(now).ok().map(whole_seconds));
    let started = reading.started_at.and_then(|t| u64::try_from(t).ok());
    m.push(&START_TIME, &[], started.map(whole_seconds));
    m.out
}

/// The pod's own metrics, read at `now`: its network interfaces' counters
/// (containers share the pod's network namespace, so these are per pod).
pub fn pod_metrics(
    identity: &Identity,
    interfaces: &[InterfaceCounters],
    now: i64,
) -> Vec<cri::Metric> {
    let mut m = Metrics::new(identity, now);
    for i in interfaces {
        let name = [i.name.as_str()];
        m.push(&NET_RX_BYTES, &name, Some(i.rx_bytes));
        m.push(&NET_RX_PACKETS, &name, Some(i.rx_packets));
        m.push(&NET_RX_ERRORS, &name, Some(i.rx_errors));
        m.push(&NET_RX_DROPPED, &name, Some(i.rx_dropped));
        m.push(&NET_TX_BYTES, &name, Some(i.tx_bytes));
        m.push(&NET_TX_PACKETS, &name, Some(i.tx_packets));
        m.push(&NET_TX_ERRORS, &name, Some(i.tx_errors));
        m.push(&NET_TX_DROPPED, &name, Some(i.tx_dropped));
    }
    m.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn identity() -> Identity {
        Identity {
            container: "busy".into(),
            id: "c1".into(),
            image: "busybox".into(),
            name: "k8s_busy_p_ns_uid_0".into(),
            namespace: "ns".into(),
            pod: "p".into(),
        }
    }

    fn full_reading() -> ContainerReading {
        ContainerReading {
            identity: identity(),
            usage: CgroupUsage {
                cpu_ns: Some(2_999_999_999),
                memory_bytes: Some(1000),
                working_set_bytes: Some(800),
                rss_bytes: Some(500),
                page_faults: Some(30),
                major_page_faults: Some(3),
                cpu_user_ns: Some(2_000_000_000),
                cpu_system_ns: Some(999_999_999),
                cache_bytes: Some(200),
                failcnt: Some(0),
                local_page_faults: Some(10),
                local_major_page_faults: Some(1),
            },
            limits: CgroupLimits {
                memory_limit_bytes: Some(1 << 20),
                cpu_shares: Some(1024),
                cpu_quota_us: Some(50_000),
                cpu_period_us: Some(100_000),
            },
            tasks: TaskCounts {
                processes: Some(2),
                threads: Some(3),
            },
            oom_kills: Some(1),
            writable_layer_bytes: Some(4096),
            fs: Some(FsCapacity {
                bytes: 1 << 30,
                inodes: 1000,
                inodes_free: 900,
            }),
            started_at: Some(1_700_000_000_500_000_000),
        }
    }

    fn interface() -> InterfaceCounters {
        InterfaceCounters {
            name: "eth0".into(),
            rx_bytes: 1,
            rx_packets: 2,
            rx_errors: 3,
            rx_dropped: 4,
            tx_bytes: 5,
            tx_packets: 6,
            tx_errors: 7,
            tx_dropped: 8,
        }
    }

    fn value(metrics: &[cri::Metric], name: &str, extra: &[&str]) -> Option<u64> {
        metrics
            .iter()
            .find(|m| m.name == name && m.label_values[BASE_LABELS.len()..] == *extra)
            .and_then(|m| m.value.as_ref())
            .map(|v| v.value)
    }

    #[test]
    fn every_metric_matches_its_descriptor_and_every_descriptor_is_used() {
        let descriptors: HashMap<String, cri::MetricDescriptor> = descriptors()
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        assert_eq!(descriptors.len(), FAMILIES.len(), "names are unique");
        let now = 1_700_000_100_000_000_000;
        let mut metrics = container_metrics(&full_reading(), now);
        metrics.extend(pod_metrics(&identity(), &[interface()], now));
        let mut seen = HashSet::new();
        for m in &metrics {
            let d = descriptors.get(&m.name).expect("a descriptor");
            assert_eq!(m.label_values.len(), d.label_keys.len(), "{}", m.name);
            assert_eq!(m.timestamp, now);
            seen.insert(m.name.clone());
        }
        assert_eq!(seen.len(), descriptors.len(), "every family is reported");
    }

    #[test]
    fn seconds_are_whole_and_truncated_and_types_follow_the_family() {
        let metrics = container_metrics(&full_reading(), 1_700_000_100_999_999_999);
        assert_eq!(
            value(&metrics, "container_cpu_usage_seconds_total", &["total"]),
            Some(2)
        );
        assert_eq!(
            value(&metrics, "container_cpu_user_seconds_total", &[]),
            Some(2)
        );
        assert_eq!(
            value(&metrics, "container_cpu_system_seconds_total", &[]),
            Some(0)
        );
        assert_eq!(
            value(&metrics, "container_last_seen", &[]),
            Some(1_700_000_100)
        );
        assert_eq!(
            value(&metrics, "container_start_time_seconds", &[]),
            Some(1_700_000_000)
        );
        let kind = |name: &str| metrics.iter().find(|m| m.name == name).unwrap().metric_type;
        assert_eq!(
            kind("container_cpu_usage_seconds_total"),
            cri::MetricType::Counter as i32
        );
        assert_eq!(
            kind("container_memory_working_set_bytes"),
            cri::MetricType::Gauge as i32
        );
    }

    #[test]
    fn labels_are_the_identity_then_the_extra_keys() {
        let metrics = container_metrics(&full_reading(), 0);
        let failures: Vec<&cri::Metric> = metrics
            .iter()
            .filter(|m| m.name == "container_memory_failures_total")
            .collect();
        assert_eq!(failures.len(), 4);
        assert_eq!(
            failures[0].label_values,
            [
                "busy",
                "c1",
                "busybox",
                "k8s_busy_p_ns_uid_0",
                "ns",
                "p",
                "pgfault",
                "container"
            ]
        );
        assert_eq!(
            value(
                &metrics,
                "container_memory_failures_total",
                &["pgmajfault", "hierarchy"]
            ),
            Some(3)
        );
        assert_eq!(
            value(&metrics, "container_spec_cpu_quota", &[]),
            Some(50_000)
        );
        assert_eq!(
            value(&metrics, "container_fs_inodes_total", &[]),
            Some(1000)
        );
        assert_eq!(value(&metrics, "container_threads", &[]), Some(3));
    }

    #[test]
    fn unknown_values_are_left_out_not_zero() {
        let reading = ContainerReading {
            identity: identity(),
            ..ContainerReading::default()
        };
        let metrics = container_metrics(&reading, 5_000_000_000);
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["container_last_seen"]);
    }

    #[test]
    fn pod_metrics_are_per_interface_counters() {
        let mut lo_less = interface();
        lo_less.name = "net1".into();
        let pod = Identity {
            id: "p1".into(),
            name: "k8s_POD_p_ns_uid_0".into(),
            namespace: "ns".into(),
            pod: "p".into(),
            ..Identity::default()
        };
        let metrics = pod_metrics(&pod, &[interface(), lo_less], 7);
        assert_eq!(metrics.len(), 16);
        assert_eq!(
            value(&metrics, "container_network_receive_bytes_total", &["eth0"]),
            Some(1)
        );
        assert_eq!(
            value(
                &metrics,
                "container_network_transmit_packets_dropped_total",
                &["net1"]
            ),
            Some(8)
        );
        assert!(metrics
            .iter()
            .all(|m| m.metric_type == cri::MetricType::Counter as i32));
        assert_eq!(metrics[0].label_values[..2], ["", "p1"]);
        assert!(pod_metrics(&pod, &[], 7).is_empty());
    }
}
