//! Choosing the network configuration from a directory, and noticing when
//! it changes.
//!
//! As kubelet-era runtimes do: files ending in `.conflist`, `.conf` or
//! `.json`, in lexical order of name; the first that parses wins, the ones
//! before it that do not parse are logged and skipped. A [`ConfigWatcher`]
//! polls the directory on its own thread, so a config written after the
//! daemon started is picked up without a restart.

use crate::config::NetworkConfigList;
use crate::error::NotReadyReason;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

const EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// What a directory scan found.
#[derive(Debug, Clone)]
enum Loaded {
    Config {
        path: PathBuf,
        list: Arc<NetworkConfigList>,
    },
    Missing(NotReadyReason),
}

/// The current network configuration of a directory.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let loader = cni::ConfigLoader::new(dir.path());
/// assert!(loader.current().is_none());
/// assert_eq!(loader.status().unwrap_err().reason, "NoNetworkConfig");
///
/// std::fs::write(dir.path().join("10-pods.conflist"),
///     cni::default_conflist("pods", "10.88.0.0/16", "cni0")).unwrap();
/// loader.reload();
/// assert_eq!(loader.current().unwrap().name(), "pods");
/// ```
#[derive(Debug, Clone)]
pub struct ConfigLoader {
    dir: PathBuf,
    state: Arc<RwLock<Loaded>>,
}

impl ConfigLoader {
    /// Loads the configuration of `dir` now.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let state = Arc::new(RwLock::new(scan(&dir)));
        Self { dir, state }
    }

    /// The configuration directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Scans the directory again and switches to what it holds now.
    pub fn reload(&self) {
        let loaded = scan(&self.dir);
        match &loaded {
            Loaded::Config { path, list } => {
                tracing::info!(path = %path.display(), network = list.name(), "CNI config loaded")
            }
            Loaded::Missing(why) => tracing::warn!(%why, "no CNI config"),
        }
        // A poisoned lock only means a reader panicked; the data is a plain
        // value we overwrite whole, so it is safe to take it back.
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = loaded;
    }

    /// The configuration in force, if any.
    pub fn current(&self) -> Option<Arc<NetworkConfigList>> {
        match &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            Loaded::Config { list, .. } => Some(list.clone()),
            Loaded::Missing(_) => None,
        }
    }

    /// The file the configuration in force came from.
    pub fn current_path(&self) -> Option<PathBuf> {
        match &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            Loaded::Config { path, .. } => Some(path.clone()),
            Loaded::Missing(_) => None,
        }
    }

    /// `Ok` when a configuration is loaded, else why not.
    pub fn status(&self) -> Result<(), NotReadyReason> {
        match &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            Loaded::Config { .. } => Ok(()),
            Loaded::Missing(why) => Err(why.clone()),
        }
    }

    /// Polls the directory every `interval` on a dedicated thread and
    /// reloads when a candidate file appears, disappears or changes. The
    /// thread stops when the returned watcher is dropped.
    pub fn watch(&self, interval: Duration) -> std::io::Result<ConfigWatcher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let loader = self.clone();
        // Fingerprint first, then scan: a file written in between is seen
        // as a change on the first poll instead of being missed forever.
        let mut seen = fingerprint(&loader.dir);
        loader.reload();
        let thread = std::thread::Builder::new()
            .name("cni-config-watch".into())
            .spawn(move || {
                // recv_timeout doubles as the poll sleep and the stop signal.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let now = fingerprint(&loader.dir);
                    if now != seen {
                        loader.reload();
                        seen = now;
                    }
                }
            })?;
        Ok(ConfigWatcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Stops the polling thread of [`ConfigLoader::watch`] when dropped.
#[derive(Debug)]
pub struct ConfigWatcher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn candidates(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e))
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    candidates(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map(|m| m.len()).unwrap_or(0);
            (p, mtime, len)
        })
        .collect()
}

fn scan(dir: &Path) -> Loaded {
    let files = match candidates(dir) {
        Ok(f) => f,
        Err(e) => {
            return Loaded::Missing(NotReadyReason {
                reason: "NoNetworkConfig".into(),
                message: format!("cannot read CNI config directory {}: {e}", dir.display()),
            })
        }
    };
    let mut rejected = Vec::new();
    for path in files {
        match NetworkConfigList::from_file(&path) {
            Ok(list) => {
                return Loaded::Config {
                    path,
                    list: Arc::new(list),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping CNI config");
                rejected.push(e.to_string());
            }
        }
    }
    let message = if rejected.is_empty() {
        format!("no CNI network config found in {}", dir.display())
    } else {
        format!(
            "no valid CNI network config in {}: {}",
            dir.display(),
            rejected.join("; ")
        )
    };
    Loaded::Missing(NotReadyReason {
        reason: "NoNetworkConfig".into(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(name: &str) -> String {
        format!(r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[{{"type":"loopback"}}]}}"#)
    }

    #[test]
    fn lexically_first_that_parses_wins() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("00-broken.conflist"), "{nope").unwrap();
        std::fs::write(d.join("20-b.conflist"), conf("b")).unwrap();
        std::fs::write(d.join("10-a.conflist"), conf("a")).unwrap();
        std::fs::write(d.join("05-ignored.txt"), conf("txt")).unwrap();
        let loader = ConfigLoader::new(d);
        assert_eq!(loader.current().unwrap().name(), "a");
        assert_eq!(loader.current_path().unwrap(), d.join("10-a.conflist"));
        assert!(loader.status().is_ok());
    }

    #[test]
    fn single_conf_files_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("50-x.conf"),
            r#"{"cniVersion":"0.4.0","name":"single","type":"loopback"}"#,
        )
        .unwrap();
        let loader = ConfigLoader::new(dir.path());
        assert_eq!(loader.current().unwrap().name(), "single");
    }

    #[test]
    fn not_ready_reason_names_rejected_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.conflist"), "{").unwrap();
        let why = ConfigLoader::new(dir.path()).status().unwrap_err();
        assert_eq!(why.reason, "NoNetworkConfig");
        assert!(why.message.contains("1.conflist"), "{}", why.message);
        let why = ConfigLoader::new(dir.path().join("absent"))
            .status()
            .unwrap_err();
        assert!(why.message.contains("absent"), "{}", why.message);
    }

    #[test]
    fn watcher_picks_up_new_changed_and_removed_files() {
        let dir = tempfile::tempdir().unwrap();
        let loader = ConfigLoader::new(dir.path());
        let _watch = loader.watch(Duration::from_millis(20)).unwrap();
        let wait_for = |want: Option<&str>| {
            for _ in 0..250 {
                if loader.current().map(|l| l.name().to_string()).as_deref() == want {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("config never became {want:?}");
        };
        let file = dir.path().join("10.conflist");
        std::fs::write(&file, conf("first")).unwrap();
        wait_for(Some("first"));
        // A different length guarantees a new fingerprint even when the
        // mtime granularity hides the rewrite.
        std::fs::write(&file, conf("second-name")).unwrap();
        wait_for(Some("second-name"));
        std::fs::remove_file(&file).unwrap();
        wait_for(None);
    }
}
