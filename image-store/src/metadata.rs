//! Image records: one JSON file per image under `images/<id hex>.json`,
//! written atomically (temporary file, fsync, rename), so a crash leaves
//! either the old record or the new one.

use crate::error::{io, Error, Result};
use crate::temp;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the store remembers about one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    /// The image id: the config blob's digest.
    pub id: String,
    /// `name:tag` entries.
    pub repo_tags: Vec<String>,
    /// `name@digest` entries (manifest or index digests).
    pub repo_digests: Vec<String>,
    /// Config plus compressed layer sizes, in bytes.
    pub size: u64,
    /// Chain ids of the layers, bottom first.
    pub layers: Vec<String>,
    /// Every blob the image holds on to: manifests, index, config, layers.
    pub blobs: Vec<String>,
}

/// The `images/` directory.
#[derive(Clone, Debug)]
pub struct MetadataStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl MetadataStore {
    /// The records of the store rooted at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("images"),
            tmp: root.join("tmp"),
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        self.dir.join(format!("{hex}.json"))
    }

    /// Every record on disk. A corrupt record is an error naming its file
    /// rather than a silently forgotten image.
    pub fn load_all(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))? {
            let path = entry.map_err(io(&self.dir, "list"))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = fs::read(&path).map_err(io(&path, "read"))?;
            let record = serde_json::from_slice(&bytes)
                .map_err(|source| Error::Metadata { path, source })?;
            out.push(record);
        }
        Ok(out)
    }

    /// Writes `record` atomically.
    pub fn save(&self, record: &ImageRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| Error::Metadata {
            path: self.path(&record.id),
            source,
        })?;
        write_atomic(&self.tmp, &self.path(&record.id), &bytes)
    }

    /// Deletes the record of `id`; absent is fine.
    pub fn remove(&self, id: &str) -> Result<()> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, "remove")(e)),
            _ => Ok(()),
        }
    }
}

/// Writes `bytes` to `dest` through a synced temporary file in `tmp`, so
/// readers see the old content or the new, never a mix.
pub(crate) fn write_atomic(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp::path(tmp, "meta");
    let written = fs::File::create(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(io(&temp, "write"));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    fs::rename(&temp, dest).map_err(|e| {
        let _ = fs::remove_file(&temp);
        io(dest, "rename into place")(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            repo_tags: vec!["a:b".into()],
            repo_digests: vec![],
            size: 3,
            layers: vec![],
            blobs: vec![],
        }
    }

    #[test]
    fn save_load_remove() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("images")).unwrap();
        fs::create_dir_all(root.path().join("tmp")).unwrap();
        let meta = MetadataStore::new(root.path());
        let id = format!("sha256:{}", "1".repeat(64));
        meta.save(&record(&id)).unwrap();
        assert_eq!(meta.load_all().unwrap(), vec![record(&id)]);
        meta.remove(&id).unwrap();
        meta.remove(&id).unwrap();
        assert!(meta.load_all().unwrap().is_empty());
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn corrupt_record_is_an_error_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("images")).unwrap();
        fs::write(root.path().join("images/x.json"), b"{not json").unwrap();
        let err = MetadataStore::new(root.path()).load_all().unwrap_err();
        assert!(err.to_string().contains("x.json"), "{err}");
    }
}
