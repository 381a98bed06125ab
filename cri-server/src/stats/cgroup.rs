//! Reading a container's usage from its cgroup, v1 or v2: this machine is
//! hybrid (v1 controllers, an empty v2 mount at /sys/fs/cgroup/unified), so
//! the v2 files are read only where /sys/fs/cgroup itself is cgroup2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
}

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

    /// The usage of the cgroup at `path` (as given to the runtime, e.g.
    /// `/cri-server/<id>`).
    pub fn usage(&self, path: &str) -> CgroupUsage {
        let rel = path.trim_start_matches('/');
        match self {
            Hierarchy::V2(root) => {
                let dir = root.join(rel);
                let stat = key_values(&dir.join("memory.stat"));
                let memory = number(&dir.join("memory.current"));
                CgroupUsage {
                    cpu_ns: key_values(&dir.join("cpu.stat"))
                        .get("usage_usec")
                        .map(|us| us * 1000),
                    memory_bytes: memory,
                    working_set_bytes: working_set(memory, stat.get("inactive_file")),
                    rss_bytes: stat.get("anon").copied(),
                    page_faults: stat.get("pgfault").copied(),
                    major_page_faults: stat.get("pgmajfault").copied(),
                }
            }
            Hierarchy::V1(root) => {
                let memory_dir = root.join("memory").join(rel);
                let stat = key_values(&memory_dir.join("memory.stat"));
                let memory = number(&memory_dir.join("memory.usage_in_bytes"));
                CgroupUsage {
                    cpu_ns: number(&root.join("cpuacct").join(rel).join("cpuacct.usage")),
                    memory_bytes: memory,
                    working_set_bytes: working_set(memory, stat.get("total_inactive_file")),
                    rss_bytes: stat.get("total_rss").copied(),
                    page_faults: stat.get("total_pgfault").copied(),
                    major_page_faults: stat.get("total_pgmajfault").copied(),
                }
            }
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
}

fn working_set(usage: Option<u64>, inactive_file: Option<&u64>) -> Option<u64> {
    usage.map(|u| u.saturating_sub(inactive_file.copied().unwrap_or(0)))
}

fn number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn key_values(path: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
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
    fn a_missing_cgroup_reads_as_unknown() {
        let usage = Hierarchy::V1("/nonexistent".into()).usage("/x");
        assert_eq!(usage, CgroupUsage::default());
    }
}
