//! Reading a cgroup's usage, limits and tasks, v1 or v2. A hybrid host (v1
//! controllers, an empty v2 mount at /sys/fs/cgroup/unified) is read as v1:
//! the v2 files are read only where /sys/fs/cgroup itself is cgroup2.

use crate::dir::CgroupDir;
use crate::readings::{CgroupLimits, CgroupUsage, TaskCounts};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// v1 reports an unlimited memory limit as the largest page-aligned
/// counter value; anything this large is no limit in practice.
const V1_UNLIMITED: u64 = 1 << 62;

/// The kernel's USER_HZ for `cpuacct.stat` ticks (fixed by the ABI).
const NS_PER_TICK: u64 = 10_000_000;

/// The cgroup hierarchy layout of this host.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// One unified (v2) tree at this root.
    V2(PathBuf),
    /// Per-controller (v1) trees under this root.
    V1(PathBuf),
}

impl Hierarchy {
    /// The host's layout, found from `/sys/fs/cgroup`.
    pub fn detect() -> Hierarchy {
        let root = PathBuf::from("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            Hierarchy::V2(root)
        } else {
            Hierarchy::V1(root)
        }
    }

    /// The pressure (PSI) of the cgroup at `path`: from the v2 tree, or on a
    /// hybrid host from its unified mount; unknown on pure v1.
    pub fn pressure(&self, path: &str) -> crate::Pressure {
        self.open().pressure(path)
    }

    /// The hierarchy's mount points opened once, for reading many cgroups.
    pub fn open(&self) -> OpenHierarchy {
        OpenHierarchy(match self {
            Hierarchy::V2(root) => Roots::V2(CgroupDir::open(root)),
            Hierarchy::V1(root) => Roots::V1 {
                memory: CgroupDir::open(&root.join("memory")),
                cpuacct: CgroupDir::open(&root.join("cpuacct")),
                unified: CgroupDir::open(&root.join("unified")),
            },
        })
    }

    /// The usage of the cgroup at `path` (as given to the runtime, e.g.
    /// `/cri-server/<id>`): [`Hierarchy::core_usage`] plus the CPU split by
    /// mode and the memory limit hits, which cost more files on v1.
    pub fn usage(&self, path: &str) -> CgroupUsage {
        let mut usage = self.core_usage(path);
        let rel = path.trim_start_matches('/');
        match self {
            Hierarchy::V2(root) => {
                // v2 has no failcnt; `max` counts the same event.
                usage.failcnt = key_values(&root.join(rel).join("memory.events"))
                    .get("max")
                    .copied();
            }
            Hierarchy::V1(root) => {
                let cpuacct = root.join("cpuacct").join(rel);
                // Kernels before 4.7 have no usage_user/usage_sys; their
                // cpuacct.stat counts the same in ticks.
                let ticks = key_values(&cpuacct.join("cpuacct.stat"));
                let mode = |file: &str, key: &str| {
                    number(&cpuacct.join(file))
                        .or_else(|| ticks.get(key).map(|t| t.saturating_mul(NS_PER_TICK)))
                };
                usage.cpu_user_ns = mode("cpuacct.usage_user", "user");
                usage.cpu_system_ns = mode("cpuacct.usage_sys", "system");
                usage.failcnt = number(&root.join("memory").join(rel).join("memory.failcnt"));
            }
        }
        usage
    }

    /// What container stats need of the cgroup at `path`: see
    /// [`OpenHierarchy::core_usage`].
    pub fn core_usage(&self, path: &str) -> CgroupUsage {
        self.open().core_usage(path)
    }
}

/// A [`Hierarchy`] with its mount points open. Kubelet's stats poll reads
/// hundreds of cgroups; a path walk from `/` through cgroupfs costs a
/// lookup and a revalidation per component, so each cgroup's walk starts
/// at its hierarchy's root instead.
pub struct OpenHierarchy(Roots);

enum Roots {
    V2(CgroupDir),
    V1 {
        memory: CgroupDir,
        cpuacct: CgroupDir,
        unified: CgroupDir,
    },
}

impl OpenHierarchy {
    /// The pressure (PSI) of the cgroup at `path`: see
    /// [`CgroupFiles::pressure`](crate::CgroupFiles::pressure).
    pub fn pressure(&self, path: &str) -> crate::Pressure {
        crate::CgroupFiles::new(path).pressure(self)
    }

    /// What container stats need of the cgroup at `path`: see
    /// [`CgroupFiles::core_usage`](crate::CgroupFiles::core_usage), which
    /// also keeps the files open for the next read.
    pub fn core_usage(&self, path: &str) -> CgroupUsage {
        crate::CgroupFiles::new(path).core_usage(self)
    }

    pub(crate) fn is_v2(&self) -> bool {
        matches!(self.0, Roots::V2(_))
    }

    /// The root below which stats file `name` is found: on v1 the
    /// controller's tree, or the unified mount for pressure files.
    pub(crate) fn root_of(&self, name: &str) -> &CgroupDir {
        match &self.0 {
            Roots::V2(root) => root,
            Roots::V1 { unified, .. } if name.ends_with(".pressure") => unified,
            Roots::V1 { cpuacct, .. } if name.starts_with("cpuacct.") => cpuacct,
            Roots::V1 { memory, .. } => memory,
        }
    }
}

impl Hierarchy {
    /// How many times the kernel's OOM killer acted in the cgroup at `path`
    /// (`oom_kill` in v1's memory.oom_control or v2's memory.events); 0 when
    /// unknown.
    pub fn oom_kills(&self, path: &str) -> u64 {
        let rel = path.trim_start_matches('/');
        let file = match self {
            Hierarchy::V2(root) => root.join(rel).join("memory.events"),
            Hierarchy::V1(root) => root.join("memory").join(rel).join("memory.oom_control"),
        };
        key_values(&file).get("oom_kill").copied().unwrap_or(0)
    }

    /// The memory and CPU limits of the cgroup at `path`.
    pub fn limits(&self, path: &str) -> CgroupLimits {
        let rel = path.trim_start_matches('/');
        match self {
            Hierarchy::V2(root) => {
                let dir = root.join(rel);
                let memory_limit_bytes = text(&dir.join("memory.max")).and_then(|max| {
                    if max == "max" {
                        Some(0)
                    } else {
                        max.parse().ok()
                    }
                });
                // `cpu.max` is "<quota|max> <period>".
                let cpu_max = text(&dir.join("cpu.max")).unwrap_or_default();
                let mut fields = cpu_max.split_whitespace();
                let quota = fields.next().and_then(|q| q.parse().ok());
                let period = fields.next().and_then(|p| p.parse().ok());
                CgroupLimits {
                    memory_limit_bytes,
                    cpu_shares: number(&dir.join("cpu.weight")).map(weight_to_shares),
                    cpu_quota_us: quota,
                    cpu_period_us: period,
                }
            }
            Hierarchy::V1(root) => {
                let cpu = root.join("cpu").join(rel);
                let limit = number(&root.join("memory").join(rel).join("memory.limit_in_bytes"));
                CgroupLimits {
                    memory_limit_bytes: limit.map(|l| if l >= V1_UNLIMITED { 0 } else { l }),
                    cpu_shares: number(&cpu.join("cpu.shares")),
                    // -1 (unlimited) does not parse as u64.
                    cpu_quota_us: number(&cpu.join("cpu.cfs_quota_us")),
                    cpu_period_us: number(&cpu.join("cpu.cfs_period_us")),
                }
            }
        }
    }

    /// How many processes and threads the cgroup at `path` holds.
    pub fn tasks(&self, path: &str) -> TaskCounts {
        let rel = path.trim_start_matches('/');
        let (procs, threads) = match self {
            Hierarchy::V2(root) => {
                let dir = root.join(rel);
                (dir.join("cgroup.procs"), dir.join("cgroup.threads"))
            }
            // Any v1 controller lists the same tasks; memory is always
            // there for a container.
            Hierarchy::V1(root) => {
                let dir = root.join("memory").join(rel);
                (dir.join("cgroup.procs"), dir.join("tasks"))
            }
        };
        TaskCounts {
            processes: line_count(&procs),
            threads: line_count(&threads),
        }
    }
}

/// cgroup v2's `cpu.weight` (1..=10000) back in v1 shares (2..=262144),
/// the inverse of the conversion runc applies.
fn weight_to_shares(weight: u64) -> u64 {
    2 + weight.saturating_sub(1).saturating_mul(262_142) / 9_999
}

fn text(path: &Path) -> Option<String> {
    Some(std::fs::read_to_string(path).ok()?.trim().to_string())
}

fn line_count(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}

pub(crate) fn working_set(usage: Option<u64>, inactive_file: Option<u64>) -> Option<u64> {
    usage.map(|u| u.saturating_sub(inactive_file.unwrap_or(0)))
}

/// The values of `keys` in `key value` lines, in one pass and without
/// building a map: stats want a few of memory.stat's forty-odd keys (v1's
/// seventy-odd lines). Byte by byte, lengths compared before contents: a
/// node-wide stats call parses some fifteen thousand lines.
pub(crate) fn stat_values<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    let mut values = [None; N];
    for line in text.as_bytes().split(|b| *b == b'\n') {
        let Some(space) = line.iter().position(|b| *b == b' ') else {
            continue;
        };
        let (key, value) = (&line[..space], &line[space + 1..]);
        let wanted = keys
            .iter()
            .position(|k| k.len() == key.len() && k.as_bytes() == key);
        if let Some(i) = wanted {
            values[i] = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        }
    }
    values
}

fn number(path: &Path) -> Option<u64> {
    parse_number(&std::fs::read_to_string(path).ok()?)
}

/// The number a file holds, `None` if it holds something else.
pub(crate) fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

fn key_values(path: &Path) -> HashMap<String, u64> {
    parse_key_values(std::fs::read_to_string(path).ok())
}

/// `key value` lines; an unreadable file has none.
fn parse_key_values(text: Option<String>) -> HashMap<String, u64> {
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_files_are_read_and_working_set_excludes_inactive_file() {
        let root = tempfile::tempdir().unwrap();
        let mem = root.path().join("memory/cri-server/c1");
        let cpu = root.path().join("cpuacct/cri-server/c1");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), "123456789\n").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "1000000\n").unwrap();
        std::fs::write(
            mem.join("memory.stat"),
            "total_inactive_file 400000\ntotal_rss 300000\ntotal_pgfault 50\ntotal_pgmajfault 2\n",
        )
        .unwrap();
        let usage = Hierarchy::V1(root.path().into()).usage("/cri-server/c1");
        assert_eq!(usage.cpu_ns, Some(123456789));
        assert_eq!(usage.working_set_bytes, Some(600000));
        assert_eq!(usage.rss_bytes, Some(300000));
        assert_eq!(usage.major_page_faults, Some(2));
    }

    #[test]
    fn core_usage_reads_only_what_stats_need() {
        let root = tempfile::tempdir().unwrap();
        let mem = root.path().join("memory/c1");
        let cpu = root.path().join("cpuacct/c1");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), "7\n").unwrap();
        std::fs::write(cpu.join("cpuacct.usage_user"), "5\n").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "100\n").unwrap();
        std::fs::write(mem.join("memory.failcnt"), "3\n").unwrap();
        std::fs::write(mem.join("memory.stat"), "total_inactive_file 40\n").unwrap();
        let hierarchy = Hierarchy::V1(root.path().into());
        let (core, full) = (hierarchy.core_usage("c1"), hierarchy.usage("c1"));
        assert_eq!((core.cpu_ns, core.working_set_bytes), (Some(7), Some(60)));
        assert_eq!((core.cpu_user_ns, core.failcnt), (None, None));
        assert_eq!((full.cpu_user_ns, full.failcnt), (Some(5), Some(3)));
        assert_eq!(full.working_set_bytes, core.working_set_bytes);
    }

    #[test]
    fn stat_values_match_whole_keys_in_one_pass() {
        let text = "pgfault 3\ntotal_pgfault 30\nbroken\nrss x\n".to_string();
        let [own, total, rss, absent] =
            stat_values(&text, ["pgfault", "total_pgfault", "rss", "cache"]);
        assert_eq!((own, total, rss, absent), (Some(3), Some(30), None, None));
        assert_eq!(stat_values("", ["pgfault"]), [None]);
    }

    #[test]
    fn v2_files_are_read() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pods/c2");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 42\nuser_usec 40\n").unwrap();
        std::fs::write(dir.join("memory.current"), "8192\n").unwrap();
        std::fs::write(dir.join("memory.stat"), "anon 4096\ninactive_file 1024\n").unwrap();
        let usage = Hierarchy::V2(root.path().into()).usage("pods/c2");
        assert_eq!(usage.cpu_ns, Some(42_000));
        assert_eq!(usage.working_set_bytes, Some(7168));
        assert_eq!(usage.rss_bytes, Some(4096));
    }

    #[test]
    fn oom_kills_are_counted() {
        let root = tempfile::tempdir().unwrap();
        let mem = root.path().join("memory/c");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(Hierarchy::V1(root.path().into()).oom_kills("/c"), 2);
        assert_eq!(Hierarchy::V1(root.path().into()).oom_kills("/missing"), 0);
    }

    #[test]
    fn v1_cpu_modes_cache_failcnt_and_local_faults_are_read() {
        let root = tempfile::tempdir().unwrap();
        let mem = root.path().join("memory/c");
        let cpu = root.path().join("cpuacct/c");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(cpu.join("cpuacct.usage_user"), "3000\n").unwrap();
        // No usage_sys (an old kernel): cpuacct.stat's ticks stand in.
        std::fs::write(cpu.join("cpuacct.stat"), "user 9\nsystem 2\n").unwrap();
        std::fs::write(mem.join("memory.failcnt"), "4\n").unwrap();
        std::fs::write(
            mem.join("memory.stat"),
            "pgfault 10\npgmajfault 1\ntotal_pgfault 30\ntotal_pgmajfault 3\ntotal_cache 512\n",
        )
        .unwrap();
        let usage = Hierarchy::V1(root.path().into()).usage("/c");
        assert_eq!(usage.cpu_user_ns, Some(3000));
        assert_eq!(usage.cpu_system_ns, Some(20_000_000));
        assert_eq!(usage.cache_bytes, Some(512));
        assert_eq!(usage.failcnt, Some(4));
        assert_eq!(
            (usage.local_page_faults, usage.page_faults),
            (Some(10), Some(30))
        );
        assert_eq!(
            (usage.local_major_page_faults, usage.major_page_faults),
            (Some(1), Some(3))
        );
    }

    #[test]
    fn v2_cpu_modes_and_max_events_are_read() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 50\nuser_usec 30\nsystem_usec 20\n",
        )
        .unwrap();
        std::fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 7\noom 1\n").unwrap();
        std::fs::write(dir.join("memory.stat"), "file 2048\npgfault 5\n").unwrap();
        let usage = Hierarchy::V2(root.path().into()).usage("c");
        assert_eq!(usage.cpu_user_ns, Some(30_000));
        assert_eq!(usage.cpu_system_ns, Some(20_000));
        assert_eq!(usage.failcnt, Some(7));
        assert_eq!(usage.cache_bytes, Some(2048));
        assert_eq!(usage.local_page_faults, usage.page_faults);
    }

    #[test]
    fn readings_add_up_and_unknown_stays_unknown() {
        let a = CgroupUsage {
            cpu_ns: Some(1),
            failcnt: Some(2),
            ..CgroupUsage::default()
        };
        let b = CgroupUsage {
            cpu_ns: Some(10),
            ..CgroupUsage::default()
        };
        let sum = a.plus(&b);
        assert_eq!(sum.cpu_ns, Some(11));
        assert_eq!(sum.failcnt, Some(2));
        assert_eq!(sum.memory_bytes, None);
    }

    #[test]
    fn v1_limits_unlimited_memory_is_zero_and_no_quota_is_none() {
        let root = tempfile::tempdir().unwrap();
        let mem = root.path().join("memory/c");
        let cpu = root.path().join("cpu/c");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(cpu.join("cpu.shares"), "1024\n").unwrap();
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "-1\n").unwrap();
        std::fs::write(cpu.join("cpu.cfs_period_us"), "100000\n").unwrap();
        let hierarchy = Hierarchy::V1(root.path().into());
        assert_eq!(
            hierarchy.limits("/c"),
            CgroupLimits {
                memory_limit_bytes: Some(0),
                cpu_shares: Some(1024),
                cpu_quota_us: None,
                cpu_period_us: Some(100_000),
            }
        );
        std::fs::write(mem.join("memory.limit_in_bytes"), "67108864\n").unwrap();
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "50000\n").unwrap();
        let limits = hierarchy.limits("/c");
        assert_eq!(limits.memory_limit_bytes, Some(64 << 20));
        assert_eq!(limits.cpu_quota_us, Some(50_000));
    }

    #[test]
    fn v2_limits_convert_weight_and_split_cpu_max() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        std::fs::write(dir.join("cpu.weight"), "100\n").unwrap();
        std::fs::write(dir.join("cpu.max"), "max 100000\n").unwrap();
        let hierarchy = Hierarchy::V2(root.path().into());
        let limits = hierarchy.limits("c");
        assert_eq!(limits.memory_limit_bytes, Some(0));
        // The default weight (100) and both ends of the range.
        assert_eq!(limits.cpu_shares, Some(2597));
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(limits.cpu_quota_us, None);
        assert_eq!(limits.cpu_period_us, Some(100_000));
        std::fs::write(dir.join("memory.max"), "1048576\n").unwrap();
        std::fs::write(dir.join("cpu.max"), "25000 100000\n").unwrap();
        let limits = hierarchy.limits("c");
        assert_eq!(limits.memory_limit_bytes, Some(1 << 20));
        assert_eq!(limits.cpu_quota_us, Some(25_000));
    }

    #[test]
    fn tasks_count_processes_and_threads() {
        let root = tempfile::tempdir().unwrap();
        let mem = root.path().join("memory/c");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(mem.join("cgroup.procs"), "10\n20\n").unwrap();
        std::fs::write(mem.join("tasks"), "10\n11\n12\n20\n").unwrap();
        let v1 = Hierarchy::V1(root.path().into());
        assert_eq!(
            v1.tasks("/c"),
            TaskCounts {
                processes: Some(2),
                threads: Some(4)
            }
        );
        assert_eq!(v1.tasks("/gone"), TaskCounts::default());
        let dir = root.path().join("v2");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        std::fs::write(dir.join("cgroup.threads"), "").unwrap();
        let counts = Hierarchy::V2(root.path().into()).tasks("v2");
        assert_eq!((counts.processes, counts.threads), (Some(0), Some(0)));
    }

    #[test]
    fn a_missing_cgroup_reads_as_unknown() {
        let usage = Hierarchy::V1("/nonexistent".into()).usage("/x");
        assert_eq!(usage, CgroupUsage::default());
    }
}
