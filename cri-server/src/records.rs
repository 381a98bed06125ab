//! Pod and container records on disk, one JSON file each, written
//! atomically (temporary file, fsync, rename) so a crash leaves the old or
//! the new record, never half of one.

use serde::{de::DeserializeOwned, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A directory of `<id>.json` records of one kind.
#[derive(Debug, Clone)]
pub struct RecordDir {
    dir: PathBuf,
    /// One lock per record: saves of one record never interleave, and each
    /// writes its own temporary file.
    locks: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<std::sync::Mutex<()>>>>,
    >,
}

/// Makes every temporary file's name unique within the process.
static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Why a record could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("record {path}: {op}: {source}")]
pub struct RecordError {
    path: PathBuf,
    op: &'static str,
    source: std::io::Error,
}

impl RecordDir {
    /// Opens (creating) the directory and deletes temporary files a crash
    /// left behind.
    pub fn open(dir: impl Into<PathBuf>) -> Result<RecordDir, RecordError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| RecordError {
            path: dir.clone(),
            op: "create directory",
            source,
        })?;
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(RecordDir {
            dir,
            locks: Default::default(),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes `record` as `<id>.json`, replacing any older version atomically.
    pub fn save<T: Serialize>(&self, id: &str, record: &T) -> Result<(), RecordError> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            std::sync::Arc::clone(locks.entry(id.to_string()).or_default())
        };
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path(id);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".tmp-{id}-{}-{n}.json", std::process::id()));
        let err = |op: &'static str| {
            let path = path.clone();
            move |source| RecordError { path, op, source }
        };
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .map_err(err("serialize"))?;
        let mut file = fs::File::create(&tmp).map_err(err("create temporary file"))?;
        file.write_all(&json).map_err(err("write"))?;
        file.sync_all().map_err(err("fsync"))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(err("rename into place"))?;
        Ok(())
    }

    /// Deletes `<id>.json`; absent is fine.
    pub fn remove(&self, id: &str) -> Result<(), RecordError> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RecordError {
                path,
                op: "remove",
                source,
            }),
        }
    }

    /// Every record that parses. One that does not is moved aside to
    /// `<id>.json.corrupt` and logged, never fatal: one damaged file must not
    /// keep every other pod from coming back.
    pub fn load_all<T: DeserializeOwned>(&self) -> Vec<T> {
        let mut records = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return records;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match load_one(&path) {
                Ok(record) => records.push(record),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "unreadable record set aside");
                    let _ = fs::rename(&path, path.with_extension("json.corrupt"));
                }
            }
        }
        records
    }
}

/// Why one record could not be read back.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("read: {0}")]
    Read(#[from] std::io::Error),
    #[error("parse: {0}")]
    Parse(#[from] serde_json::Error),
}

fn load_one<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    Ok(serde_json::from_slice(&fs::read(path)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_saves_of_one_record_never_tear_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let records = RecordDir::open(dir.path()).unwrap();
        std::thread::scope(|scope| {
            for t in 0..8 {
                let records = records.clone();
                scope.spawn(move || {
                    for i in 0..50 {
                        // Records of different sizes: a torn write would show.
                        records.save("pod", &vec![t; 1 + (i * 37) % 500]).unwrap();
                    }
                });
            }
        });
        let all: Vec<Vec<i32>> = records.load_all();
        assert_eq!(all.len(), 1);
        assert!(all[0].iter().all(|v| *v == all[0][0]));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pod.json"]);
    }

    #[test]
    fn save_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let records = RecordDir::open(dir.path()).unwrap();
        records.save("a", &vec![1, 2, 3]).unwrap();
        records.save("a", &vec![4]).unwrap();
        records.save("b", &vec![5]).unwrap();
        let mut all: Vec<Vec<i32>> = records.load_all();
        all.sort();
        assert_eq!(all, vec![vec![4], vec![5]]);
        records.remove("a").unwrap();
        records.remove("a").unwrap();
        assert_eq!(records.load_all::<Vec<i32>>(), vec![vec![5]]);
    }

    #[test]
    fn corrupt_record_is_set_aside_and_temporary_files_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.json"), b"{not json").unwrap();
        std::fs::write(dir.path().join(".tmp-x.json"), b"half").unwrap();
        let records = RecordDir::open(dir.path()).unwrap();
        assert!(!dir.path().join(".tmp-x.json").exists());
        assert!(records.load_all::<Vec<i32>>().is_empty());
        assert!(dir.path().join("bad.json.corrupt").exists());
    }
}
