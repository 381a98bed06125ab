//! What a cgroup reports: usage, limits and task counts, each field `None`
//! where its file is missing.

/// What a cgroup says about CPU and memory; `None` where a file is missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupUsage {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Memory in use, bytes (page cache included).
    pub memory_bytes: Option<u64>,
    /// Usage less inactive file pages: what kubelet evicts on.
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory, bytes.
    pub rss_bytes: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults.
    pub major_page_faults: Option<u64>,
    /// CPU time in user mode, nanoseconds.
    pub cpu_user_ns: Option<u64>,
    /// CPU time in kernel mode, nanoseconds.
    pub cpu_system_ns: Option<u64>,
    /// Page cache, bytes.
    pub cache_bytes: Option<u64>,
    /// How many times usage hit the memory limit.
    pub failcnt: Option<u64>,
    /// Page faults of this cgroup's own processes (v1's `pgfault`;
    /// `page_faults` counts its descendants too). v2 counts only
    /// hierarchically, so there both are the same.
    pub local_page_faults: Option<u64>,
    /// Major page faults of this cgroup's own processes.
    pub local_major_page_faults: Option<u64>,
}

impl CgroupUsage {
    /// The sum of two readings, field by field: unknown only where both are.
    pub fn plus(&self, other: &CgroupUsage) -> CgroupUsage {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        CgroupUsage {
            cpu_ns: add(self.cpu_ns, other.cpu_ns),
            memory_bytes: add(self.memory_bytes, other.memory_bytes),
            working_set_bytes: add(self.working_set_bytes, other.working_set_bytes),
            rss_bytes: add(self.rss_bytes, other.rss_bytes),
            page_faults: add(self.page_faults, other.page_faults),
            major_page_faults: add(self.major_page_faults, other.major_page_faults),
            cpu_user_ns: add(self.cpu_user_ns, other.cpu_user_ns),
            cpu_system_ns: add(self.cpu_system_ns, other.cpu_system_ns),
            cache_bytes: add(self.cache_bytes, other.cache_bytes),
            failcnt: add(self.failcnt, other.failcnt),
            local_page_faults: add(self.local_page_faults, other.local_page_faults),
            local_major_page_faults: add(
                self.local_major_page_faults,
                other.local_major_page_faults,
            ),
        }
    }
}

/// The limits a cgroup enforces (cAdvisor's "spec"); `None` where a file is
/// missing or where there is no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupLimits {
    /// The memory limit, bytes; `Some(0)` when memory is unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// CPU shares, in v1 units (v2's `cpu.weight` is converted back).
    pub cpu_shares: Option<u64>,
    /// The CFS quota per period, microseconds; `None` when unlimited.
    pub cpu_quota_us: Option<u64>,
    /// The CFS period, microseconds.
    pub cpu_period_us: Option<u64>,
}

/// How many processes and threads a cgroup holds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TaskCounts {
    /// Processes (thread-group leaders).
    pub processes: Option<u64>,
    /// Threads, every process's included.
    pub threads: Option<u64>,
}
