//! The on-disk record of each attachment: the configuration list ADD used,
//! the request, and the chain's result, so DEL after a daemon restart (or
//! after the configuration changed) repeats exactly what ADD did.
//!
//! One JSON file per (container, interface) at `<dir>/<container>/<ifname>.json`,
//! naming the network inside: an interface of a pod is attached to one network
//! at a time, and a nested path cannot be confused the way a flat
//! `<network>-<container>-<ifname>` name can when ids contain dashes. Files
//! are written to a temp file and renamed so a crash leaves the old entry or
//! the new one, never half of either.

use crate::error::{Error, Result};
use crate::network::PodNetworkRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One attachment as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The network name.
    pub network: String,
    /// The request ADD ran for (ports, DNS, bandwidth, pod identity).
    pub request: PodNetworkRequest,
    /// The configuration list ADD ran, as loaded.
    pub config: Value,
    /// The chain's final result; `None` while ADD is in progress or if it
    /// never finished (DEL then runs without `prevResult`).
    pub result: Option<Value>,
}

/// A directory of [`CacheEntry`] files.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use cni::cache::{CacheEntry, ResultCache};
/// let cache = ResultCache::new(dir.path());
/// let entry = CacheEntry {
///     network: "pods".into(),
///     request: cni::PodNetworkRequest::new("c1", "/run/netns/p"),
///     config: serde_json::json!({}),
///     result: None,
/// };
/// cache.save(&entry).unwrap();
/// assert_eq!(cache.load("c1", "eth0").unwrap(), Some(entry.clone()));
/// assert_eq!(cache.container_ids().unwrap(), ["c1"]);
/// cache.remove(&entry).unwrap();
/// assert_eq!(cache.load("c1", "eth0").unwrap(), None);
/// ```
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// A cache stored under `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_dir(&self, container_id: &str) -> PathBuf {
        self.dir.join(container_id)
    }

    fn path_of(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.entry_dir(container_id).join(format!("{ifname}.json"))
    }

    /// Writes `entry` atomically, replacing any previous one.
    pub fn save(&self, entry: &CacheEntry) -> Result<()> {
        let io = |path: &Path, op, source| Error::Io {
            what: "result cache entry",
            path: path.to_path_buf(),
            op,
            source,
        };
        let dir = self.entry_dir(&entry.request.container_id);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, "create dir", e))?;
        let path = self.path_of(&entry.request.container_id, &entry.request.ifname);
        let bytes = serde_json::to_vec_pretty(entry).map_err(|e| Error::CacheCorrupt {
            path: path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        let (tmp_path, mut tmp) = tempfile_in(&dir).map_err(|e| io(&dir, "create temp file", e))?;
        if let Err(e) = tmp.write_all(&bytes).and_then(|()| tmp.sync_all()) {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(io(&tmp_path, "write", e));
        }
        std::fs::rename(&tmp_path, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp_path);
            io(&path, "rename", e)
        })?;
        // The rename is durable only once the directory is synced.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The entry for `container_id` on `ifname`, whatever network it was
    /// attached to; `None` when there is none.
    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<CacheEntry>> {
        let path = self.path_of(container_id, ifname);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    what: "result cache entry",
                    path,
                    op: "read",
                    source,
                })
            }
        };
        let entry: CacheEntry =
            serde_json::from_slice(&bytes).map_err(|e| Error::CacheCorrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if entry.request.container_id != container_id || entry.request.ifname != ifname {
            return Err(Error::CacheCorrupt {
                path,
                reason: format!(
                    "records container {} on {}",
                    entry.request.container_id, entry.request.ifname
                ),
            });
        }
        Ok(Some(entry))
    }

    /// The ids of every container with a recorded entry, sorted (none
    /// when the cache was never written).
    ///
    /// # Errors
    ///
    /// The directory exists but cannot be read.
    pub fn container_ids(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    what: "result cache",
                    path: self.dir.clone(),
                    op: "list",
                    source,
                })
            }
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Deletes `entry`'s file (and its container directory once empty); an
    /// entry already gone is fine.
    pub fn remove(&self, entry: &CacheEntry) -> Result<()> {
        let path = self.path_of(&entry.request.container_id, &entry.request.ifname);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Io {
                    what: "result cache entry",
                    path,
                    op: "remove",
                    source: e,
                })
            }
            _ => {}
        }
        // Fails harmlessly while other interfaces of the pod are recorded.
        let _ = std::fs::remove_dir(self.entry_dir(&entry.request.container_id));
        Ok(())
    }
}

/// A fresh hidden file in `dir`, to be renamed over an entry.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(net: &str, cid: &str) -> CacheEntry {
        let mut request = PodNetworkRequest::new(cid, "/run/netns/x");
        request.pod_name = "p".into();
        CacheEntry {
            network: net.into(),
            request,
            config: json!({"name": net}),
            result: Some(json!({"ips":[{"address":"10.0.0.2/24"}]})),
        }
    }

    #[test]
    fn round_trip_overwrite_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path().join("sub"));
        assert_eq!(cache.load("a", "eth0").unwrap(), None);
        let mut e = entry("net", "a");
        cache.save(&e).unwrap();
        e.result = None;
        cache.save(&e).unwrap();
        assert_eq!(cache.load("a", "eth0").unwrap(), Some(e.clone()));
        assert_eq!(cache.load("a", "eth1").unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(cache.dir().join("a")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
        cache.remove(&e).unwrap();
        cache.remove(&e).unwrap();
        assert_eq!(cache.load("a", "eth0").unwrap(), None);
        assert!(
            !cache.dir().join("a").exists(),
            "empty container dir removed"
        );
    }

    #[test]
    fn dashed_ids_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        cache.save(&entry("n", "x-a")).unwrap();
        cache.save(&entry("n-x", "a")).unwrap();
        assert_eq!(cache.load("a", "eth0").unwrap().unwrap().network, "n-x");
        assert_eq!(cache.load("x-a", "eth0").unwrap().unwrap().network, "n");
        let mut other_if = entry("n", "a");
        other_if.request.ifname = "net1".into();
        cache.save(&other_if).unwrap();
        assert_eq!(cache.load("a", "eth0").unwrap().unwrap().network, "n-x");
    }

    #[test]
    fn corrupt_entry_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("c/eth0.json"), b"{").unwrap();
        let err = ResultCache::new(dir.path()).load("c", "eth0").unwrap_err();
        assert!(matches!(err, Error::CacheCorrupt { .. }), "{err}");
    }
}
