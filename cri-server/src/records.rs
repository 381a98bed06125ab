//! Pod and container records on disk, one JSON file each, written
//! atomically so a crash leaves the old or the new record, never half of
//! one: the new text goes to another file, is fsynced, and takes the
//! record's name in one rename.
//!
//! That other file is a *spare* (`.<id>.spare`) kept beside each record,
//! not a new file per save. A new file's fsync writes its directory too
//! (on ext4 without a journal, `ext4_sync_parent`: the directory's blocks
//! and inode, synchronously), and every record of a kind shares one
//! directory, so concurrent saves queued on it. A save rewrites the spare
//! in place (never truncating it first: see `rewrite`), fsyncs it and
//! exchanges it with the record
//! (`renameat2(RENAME_EXCHANGE)`): the spare then holds the previous text,
//! for the next save to overwrite. Measured on this machine's disk, four
//! threads saving at once: p50 1.7–1.9 → 0.8–0.9 ms, p99 6.0–6.2 → 4.3–4.8
//! ms. The first save of a record makes both files, fsyncing the spare
//! while the directory is clean so no later save pays for its entry; a
//! file system without exchange gets a plain rename (and a new spare next
//! time).

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
                let name = entry.file_name().to_string_lossy().into_owned();
                // A spare outlives its record only if a crash came between
                // their removals.
                let orphan_spare =
                    spare_of(&name).is_some_and(|id| !dir.join(format!("{id}.json")).exists());
                if name.starts_with(".tmp-") || orphan_spare {
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

    fn spare(&self, id: &str) -> PathBuf {
        self.dir.join(format!(".{id}.spare"))
    }

    /// The lock that serialises record `id`'s saves and its removal.
    fn lock_of(&self, id: &str) -> std::sync::Arc<std::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        std::sync::Arc::clone(locks.entry(id.to_string()).or_default())
    }

    /// Writes `record` as `<id>.json`, replacing any older version atomically.
    pub fn save<T: Serialize>(&self, id: &str, record: &T) -> Result<(), RecordError> {
        let lock = self.lock_of(id);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.save_locked(id, record)
    }

    /// Like [`RecordDir::save`], but only over a record that is still
    /// there: `Ok(false)`, nothing written, once [`RecordDir::remove`] has
    /// run. For a save that may come after its object was removed (a
    /// container's exit recorded off the path of the stop, whose caller
    /// may remove the container meanwhile), which must not bring the
    /// record back.
    pub fn save_existing<T: Serialize>(&self, id: &str, record: &T) -> Result<bool, RecordError> {
        let lock = self.lock_of(id);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.path(id).exists() {
            return Ok(false);
        }
        self.save_locked(id, record).map(|()| true)
    }

    /// [`RecordDir::save`] with record `id`'s lock held.
    fn save_locked<T: Serialize>(&self, id: &str, record: &T) -> Result<(), RecordError> {
        let path = self.path(id);
        let err = |op: &'static str| {
            let path = path.clone();
            move |source| RecordError { path, op, source }
        };
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .map_err(err("serialize"))?;
        let spare = self.spare(id);
        match fs::OpenOptions::new().write(true).open(&spare) {
            Ok(file) => {
                rewrite(&file, &json).map_err(err("write"))?;
                file.sync_all().map_err(err("fsync"))?;
                drop(file);
                exchange(&spare, &path).map_err(err("exchange into place"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.first_save(id, &json),
            Err(source) => Err(RecordError {
                path: spare,
                op: "open the spare",
                source,
            }),
        }
    }

    /// Writes `json` as record `id`'s through a new file, and makes its
    /// spare beside it.
    fn first_save(&self, id: &str, json: &[u8]) -> Result<(), RecordError> {
        let path = self.path(id);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".tmp-{id}-{}-{n}.json", std::process::id()));
        let err = |op: &'static str| {
            let path = path.clone();
            move |source| RecordError { path, op, source }
        };
        let mut file = fs::File::create(&tmp).map_err(err("create temporary file"))?;
        file.write_all(json).map_err(err("write"))?;
        // Made before the record's fsync, which writes the directory with
        // both entries; its own fsync then finds the directory clean. A
        // spare that cannot be made is made at the next save.
        let spare = fs::File::create(self.spare(id));
        file.sync_all().map_err(err("fsync"))?;
        drop(file);
        if let Ok(spare) = spare {
            let _ = spare.sync_all();
        }
        fs::rename(&tmp, &path).map_err(err("rename into place"))
    }

    /// Deletes `<id>.json`, then its spare; absent is fine.
    pub fn remove(&self, id: &str) -> Result<(), RecordError> {
        // Under the record's lock, so that a save in progress finishes
        // first and a `save_existing` after finds nothing to overwrite.
        let lock = self.lock_of(id);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        for path in [self.path(id), self.spare(id)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RecordError {
                        path,
                        op: "remove",
                        source,
                    })
                }
            }
        }
        Ok(())
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

/// Writes `text` over the start of `file` and cuts the file there.
///
/// Not truncated first: freeing a file's blocks makes ext4 mounted with
/// `discard` (this machine's root, without a journal) issue a discard and
/// wait for it, behind every other deletion queued on the disk, and a
/// teardown deletes a lot. Overwritten, the spare keeps its blocks; the cut
/// frees only what lay past the new end, nothing when the text still ends
/// in the same block. A crash halfway leaves a spare of mixed text, which
/// nothing reads: only an fsynced spare is exchanged into place.
fn rewrite(file: &fs::File, text: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(text, 0)?;
    file.set_len(text.len() as u64)
}

/// The record id whose spare file `name` is.
fn spare_of(name: &str) -> Option<&str> {
    name.strip_prefix('.')?.strip_suffix(".spare")
}

/// Swaps `spare` and `record` atomically (`renameat2(RENAME_EXCHANGE)`);
/// where the file system cannot, or there is no record yet, `spare` is
/// renamed over `record`.
fn exchange(spare: &Path, record: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (from, to) = (c(spare)?, c(record)?);
    // SAFETY: two NUL-terminated paths, resolved from the working
    // directory (both are absolute or relative to it), and a flag.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENOENT | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            fs::rename(spare, record)
        }
        _ => Err(error),
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
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, [".pod.spare", "pod.json"]);
    }

    /// The inodes of record `id` and its spare.
    fn inodes(dir: &Path, id: &str) -> Vec<u64> {
        use std::os::unix::fs::MetadataExt;
        let mut inodes: Vec<u64> = [format!("{id}.json"), format!(".{id}.spare")]
            .iter()
            .map(|name| std::fs::metadata(dir.join(name)).unwrap().ino())
            .collect();
        inodes.sort();
        inodes
    }

    #[test]
    fn later_saves_make_no_new_file_and_the_spare_holds_the_previous_text() {
        let dir = tempfile::tempdir().unwrap();
        let records = RecordDir::open(dir.path()).unwrap();
        records.save("a", &vec![1]).unwrap();
        let first = inodes(dir.path(), "a");
        for i in 2..5 {
            records.save("a", &vec![i]).unwrap();
            assert_eq!(inodes(dir.path(), "a"), first, "save {i} made a new file");
        }
        let spare: Vec<i32> = load_one(&dir.path().join(".a.spare")).unwrap();
        assert_eq!(spare, vec![3]);
        assert_eq!(records.load_all::<Vec<i32>>(), vec![vec![4]]);
    }

    #[test]
    fn a_shorter_save_keeps_nothing_of_the_longer_text_it_overwrote() {
        let dir = tempfile::tempdir().unwrap();
        let records = RecordDir::open(dir.path()).unwrap();
        let long = vec![123_456_789; 200];
        records.save("a", &long).unwrap();
        records.save("a", &long).unwrap();
        // Written over the spare, which holds the first long text.
        records.save("a", &vec![7]).unwrap();
        let text = std::fs::read(dir.path().join("a.json")).unwrap();
        assert_eq!(text, serde_json::to_vec_pretty(&vec![7]).unwrap());
        let spare: Vec<i32> = load_one(&dir.path().join(".a.spare")).unwrap();
        assert_eq!(spare, long, "the previous text, whole");
    }

    #[test]
    fn a_record_whose_spare_is_gone_is_saved_all_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let records = RecordDir::open(dir.path()).unwrap();
        records.save("a", &vec![1]).unwrap();
        std::fs::remove_file(dir.path().join(".a.spare")).unwrap();
        records.save("a", &vec![2]).unwrap();
        assert_eq!(records.load_all::<Vec<i32>>(), vec![vec![2]]);
        assert!(dir.path().join(".a.spare").exists(), "made again");
    }

    #[test]
    fn removal_takes_the_spare_and_an_orphan_spare_is_swept_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let records = RecordDir::open(dir.path()).unwrap();
        records.save("a", &vec![1]).unwrap();
        records.save("b", &vec![2]).unwrap();
        records.remove("a").unwrap();
        assert!(!dir.path().join(".a.spare").exists());
        // A crash between a removal's two unlinks.
        std::fs::remove_file(dir.path().join("b.json")).unwrap();
        RecordDir::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
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
    fn a_save_over_an_existing_record_never_brings_a_removed_one_back() {
        let dir = tempfile::tempdir().unwrap();
        let records = RecordDir::open(dir.path()).unwrap();
        assert!(!records.save_existing("a", &vec![1]).unwrap());
        assert!(records.load_all::<Vec<i32>>().is_empty());
        records.save("a", &vec![1]).unwrap();
        assert!(records.save_existing("a", &vec![2]).unwrap());
        assert_eq!(records.load_all::<Vec<i32>>(), vec![vec![2]]);
        records.remove("a").unwrap();
        assert!(!records.save_existing("a", &vec![3]).unwrap());
        assert!(records.load_all::<Vec<i32>>().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
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
