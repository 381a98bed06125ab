//! A cgroup's stats files, kept open from one stats poll to the next.
//!
//! Measured on a node of 220 containers (issue #20): opening a cgroupfs
//! file (a lookup and a revalidation per path component, the kernel's
//! open-file state allocated and charged) and closing it again cost more
//! than half of a node-wide ListContainerStats; the kernel generating the
//! text is the rest. A file kept open is read again from offset 0, which
//! makes the kernel generate its text afresh, so only the generation is
//! paid. The price is an open descriptor per file and the kernel's buffer
//! for it (a page) for as long as the cgroup is watched.

use crate::dir::with_text;
use crate::hierarchy::{parse_number, stat_values, working_set, OpenHierarchy};
use crate::{pressure, CgroupUsage, Pressure};
use std::collections::HashMap;
use std::fs::File;
use std::sync::Mutex;

/// The stats files of one cgroup, opened as they are first read.
///
/// # Examples
///
/// ```no_run
/// use cgroups::{CgroupFiles, Hierarchy};
///
/// let hierarchy = Hierarchy::detect().open();
/// let mut files = CgroupFiles::new("/kubepods/pod1/c1");
/// let first = files.core_usage(&hierarchy);
/// // The same descriptors, read again: current values, no open or close.
/// let second = files.core_usage(&hierarchy);
/// assert!(second.cpu_ns >= first.cpu_ns);
/// ```
pub struct CgroupFiles {
    /// The cgroup's path below its hierarchy's root.
    rel: String,
    open: Vec<(&'static str, File)>,
}

impl CgroupFiles {
    /// The cgroup at `path` (as given to the runtime), nothing open yet.
    pub fn new(path: &str) -> CgroupFiles {
        CgroupFiles {
            rel: path.trim_start_matches('/').to_string(),
            open: Vec::new(),
        }
    }

    /// Whether these are the files of the cgroup at `path`.
    pub fn is_of(&self, path: &str) -> bool {
        self.rel == path.trim_start_matches('/')
    }

    /// What container stats need of the cgroup (CPU time, memory, working
    /// set, RSS, page faults, page cache) from the fewest files: three,
    /// where [`crate::Hierarchy::usage`] reads up to seven.
    pub fn core_usage(&mut self, hierarchy: &OpenHierarchy) -> CgroupUsage {
        if hierarchy.is_v2() {
            return self.core_usage_v2(hierarchy);
        }
        let [inactive_file, rss, pgfault, pgmajfault, cache, own_pgfault, own_pgmajfault] = self
            .read(hierarchy, "memory.stat", |text| {
                stat_values(
                    text,
                    [
                        "total_inactive_file",
                        "total_rss",
                        "total_pgfault",
                        "total_pgmajfault",
                        "total_cache",
                        "pgfault",
                        "pgmajfault",
                    ],
                )
            })
            .unwrap_or_default();
        let usage = self.number(hierarchy, "memory.usage_in_bytes");
        CgroupUsage {
            cpu_ns: self.number(hierarchy, "cpuacct.usage"),
            memory_bytes: usage,
            working_set_bytes: working_set(usage, inactive_file),
            rss_bytes: rss,
            page_faults: pgfault,
            major_page_faults: pgmajfault,
            cache_bytes: cache,
            local_page_faults: own_pgfault,
            local_major_page_faults: own_pgmajfault,
            ..CgroupUsage::default()
        }
    }

    fn core_usage_v2(&mut self, hierarchy: &OpenHierarchy) -> CgroupUsage {
        let [inactive_file, anon, pgfault, pgmajfault, file] = self
            .read(hierarchy, "memory.stat", |text| {
                stat_values(
                    text,
                    ["inactive_file", "anon", "pgfault", "pgmajfault", "file"],
                )
            })
            .unwrap_or_default();
        let memory = self.number(hierarchy, "memory.current");
        let [usage, user, system] = self
            .read(hierarchy, "cpu.stat", |text| {
                stat_values(text, ["usage_usec", "user_usec", "system_usec"])
            })
            .unwrap_or_default()
            .map(|us| us.map(|us| us.saturating_mul(1000)));
        CgroupUsage {
            cpu_ns: usage,
            memory_bytes: memory,
            working_set_bytes: working_set(memory, inactive_file),
            rss_bytes: anon,
            page_faults: pgfault,
            major_page_faults: pgmajfault,
            cpu_user_ns: user,
            cpu_system_ns: system,
            cache_bytes: file,
            failcnt: None,
            local_page_faults: pgfault,
            local_major_page_faults: pgmajfault,
        }
    }

    /// The cgroup's pressure (PSI): from the v2 tree, or on a hybrid host
    /// from its unified mount; unknown on pure v1.
    pub fn pressure(&mut self, hierarchy: &OpenHierarchy) -> Pressure {
        Pressure::from_files(|name| self.read(hierarchy, name, pressure::parse).flatten())
    }

    /// The number file `name` holds.
    fn number(&mut self, hierarchy: &OpenHierarchy, name: &'static str) -> Option<u64> {
        self.read(hierarchy, name, parse_number).flatten()
    }

    /// What `parse` makes of file `name`'s text: read again when kept
    /// open, else opened (and kept) now. A file that fails to read (its
    /// cgroup was removed: ENODEV) is dropped, and opened afresh next time.
    fn read<R>(
        &mut self,
        hierarchy: &OpenHierarchy,
        name: &'static str,
        parse: impl FnOnce(&str) -> R,
    ) -> Option<R> {
        if let Some(i) = self.open.iter().position(|(n, _)| *n == name) {
            let parsed = with_text(&self.open[i].1, parse);
            if parsed.is_none() {
                self.open.swap_remove(i);
            }
            return parsed;
        }
        let file = hierarchy
            .root_of(name)
            .open_file(&format!("{}/{name}", self.rel))?;
        let parsed = with_text(&file, parse)?;
        self.open.push((name, file));
        Some(parsed)
    }
}

/// Each watched cgroup's open files, by a key of the caller's (a container
/// id, say). Readers take a cgroup's files out, read them on any thread,
/// and give them back; two readers of the same cgroup at once simply open
/// it twice.
pub struct FileCache {
    kept: Mutex<HashMap<String, CgroupFiles>>,
    /// The most cgroups kept, so descriptors stay bounded on a node with
    /// more containers than anyone planned for (beyond it, files are
    /// opened and closed per read, as without the cache).
    limit: usize,
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache::with_limit(DEFAULT_LIMIT)
    }
}

/// Cgroups kept by default: kubelet's 110 pods with several containers
/// each, at five or six files per cgroup.
pub const DEFAULT_LIMIT: usize = 2048;

impl FileCache {
    /// A cache of at most `limit` cgroups.
    pub fn with_limit(limit: usize) -> FileCache {
        FileCache {
            kept: Mutex::default(),
            limit,
        }
    }

    /// The files kept for `key` if they are of the cgroup at `path`, else
    /// none open yet.
    pub fn take(&self, key: &str, path: &str) -> CgroupFiles {
        match self.lock().remove(key) {
            Some(files) if files.is_of(path) => files,
            _ => CgroupFiles::new(path),
        }
    }

    /// Keeps `files` for the next read of `key`, room permitting, if
    /// `wanted` (asked under the cache's lock) says the cgroup is still
    /// watched. A caller that forgets a key after its owner is gone, and
    /// answers `wanted` from the same record, never leaves files behind:
    /// the check and the insertion cannot straddle a [`FileCache::forget`].
    pub fn keep(&self, key: &str, files: CgroupFiles, wanted: impl FnOnce() -> bool) {
        let mut kept = self.lock();
        if (kept.len() < self.limit || kept.contains_key(key)) && wanted() {
            kept.insert(key.to_string(), files);
        }
    }

    /// Closes the files of `key` (its cgroup is gone).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// How many cgroups have files kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no cgroup has files kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CgroupFiles>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hierarchy;

    fn v1_cgroup(root: &std::path::Path, rel: &str, cpu: u64) {
        let mem = root.join("memory").join(rel);
        let cpuacct = root.join("cpuacct").join(rel);
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpuacct).unwrap();
        std::fs::write(cpuacct.join("cpuacct.usage"), format!("{cpu}\n")).unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "100\n").unwrap();
        std::fs::write(
            mem.join("memory.stat"),
            "total_inactive_file 40\npgfault 3\n",
        )
        .unwrap();
    }

    #[test]
    fn kept_files_are_read_again_from_the_start() {
        let root = tempfile::tempdir().unwrap();
        v1_cgroup(root.path(), "pods/c1", 7);
        let hierarchy = Hierarchy::V1(root.path().into()).open();
        let mut files = CgroupFiles::new("/pods/c1");
        let first = files.core_usage(&hierarchy);
        assert_eq!(files.open.len(), 3);
        assert_eq!((first.cpu_ns, first.working_set_bytes), (Some(7), Some(60)));
        assert_eq!(first.local_page_faults, Some(3));
        // Same length, new value: read in place through the kept file.
        std::fs::write(root.path().join("cpuacct/pods/c1/cpuacct.usage"), "9\n").unwrap();
        assert_eq!(files.core_usage(&hierarchy).cpu_ns, Some(9));
    }

    #[test]
    fn missing_files_are_not_kept_and_are_tried_again() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("memory")).unwrap();
        std::fs::create_dir(root.path().join("cpuacct")).unwrap();
        let hierarchy = Hierarchy::V1(root.path().into()).open();
        let mut files = CgroupFiles::new("pods/c2");
        assert_eq!(files.core_usage(&hierarchy).cpu_ns, None);
        assert_eq!(files.pressure(&hierarchy), Pressure::default());
        assert!(files.open.is_empty());
        v1_cgroup(root.path(), "pods/c2", 5);
        assert_eq!(files.core_usage(&hierarchy).cpu_ns, Some(5));
    }

    #[test]
    fn the_cache_keeps_files_by_key_and_path_up_to_its_limit() {
        let cache = FileCache::with_limit(1);
        let mut files = cache.take("c1", "/pods/c1");
        files
            .open
            .push(("memory.stat", tempfile::tempfile().unwrap()));
        cache.keep("c1", files, || true);
        assert_eq!(cache.take("c1", "/pods/c1").open.len(), 1);
        // Taken out: a second reader gets its own.
        assert!(cache.take("c1", "/pods/c1").open.is_empty());
        cache.keep("c1", CgroupFiles::new("/pods/c1"), || true);
        // Another cgroup under the same key: not the kept files.
        assert!(!cache.take("c1", "/other/c1").is_of("/pods/c1"));
        cache.keep("c1", CgroupFiles::new("/pods/c1"), || true);
        cache.keep("c2", CgroupFiles::new("/pods/c2"), || true);
        assert_eq!(cache.len(), 1, "over the limit: c2 not kept");
        cache.forget("c1");
        cache.keep("c3", CgroupFiles::new("/pods/c3"), || false);
        assert!(cache.is_empty(), "c3 no longer watched");
        cache.keep("c1", CgroupFiles::new("/pods/c1"), || true);
        cache.forget("c1");
        assert!(cache.is_empty());
    }
}
