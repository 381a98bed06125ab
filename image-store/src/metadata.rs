//! Image records: one JSON file per image under `images/<id hex>.json`,
//! written atomically (temporary file, fsync, rename), so a crash leaves
//! either the old record or the new one.

use crate::digest::Digest;
use crate::error::{io, Error, Result};
use crate::layer_store::ChainId;
use crate::temp;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the store remembers about one image. Its digests are typed, so a
/// record read back from disk names store paths as safely as a pull does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    /// The image id: the config blob's digest.
    pub id: Digest,
    /// `name:tag` entries.
    pub repo_tags: Vec<String>,
    /// `name@digest` entries (manifest or index digests).
    pub repo_digests: Vec<String>,
    /// Config plus compressed layer sizes, in bytes.
    pub size: u64,
    /// Chain ids of the layers, bottom first.
    pub layers: Vec<ChainId>,
    /// Every blob the image holds on to: manifests, index, config (and,
    /// in records written before layer blobs stopped being kept, layers).
    pub blobs: Vec<Digest>,
    /// The layers' compressed digests, bottom first, beside `layers`: each
    /// blob was verified to unpack to its chain id, so a later pull of the
    /// same blob need not fetch it. Empty in older records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_digests: Vec<Digest>,
    /// What the pull-time check said, per reference pulled.
    #[serde(default)]
    pub evidence: Vec<crate::PullEvidence>,
}

/// A record as an older daemon may have written it: the same fields with
/// digests unchecked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only read to tell a corrupt file from a refused one
struct UncheckedRecord {
    id: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    size: u64,
    layers: Vec<String>,
    blobs: Vec<String>,
    #[serde(default)]
    layer_digests: Vec<String>,
    #[serde(default)]
    evidence: serde_json::Value,
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

    fn path(&self, id: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", id.hex()))
    }

    /// Every record on disk. A corrupt record is set aside as
    /// `<name>.json.corrupt` with a warning naming it: one damaged file must
    /// not keep the store (and the daemon) from starting, and its content is
    /// collected as unreferenced. A record whose digests do not
    /// parse was written for a hostile image by a daemon that did not check
    /// them: it is removed (its content is collected as unreferenced) and
    /// the image is pulled again, and refused, when next asked for.
    pub fn load_all(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))? {
            let path = entry.map_err(io(&self.dir, "list"))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = fs::read(&path).map_err(io(&path, "read"))?;
            match serde_json::from_slice::<ImageRecord>(&bytes) {
                Ok(record) => out.push(record),
                Err(refused) if serde_json::from_slice::<UncheckedRecord>(&bytes).is_ok() => {
                    tracing::warn!(
                        path = %path.display(), %refused,
                        "dropping the record of an image with malformed digests"
                    );
                    fs::remove_file(&path).map_err(io(&path, "remove"))?;
                }
                Err(source) => {
                    tracing::warn!(
                        path = %path.display(), error = %source,
                        "unreadable image record set aside"
                    );
                    fs::rename(&path, path.with_extension("json.corrupt"))
                        .map_err(io(&path, "set aside"))?;
                }
            }
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
    pub fn remove(&self, id: &Digest) -> Result<()> {
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

    fn record(id: &Digest) -> ImageRecord {
        ImageRecord {
            id: id.clone(),
            repo_tags: vec!["a:b".into()],
            repo_digests: vec![],
            size: 3,
            layers: vec![],
            blobs: vec![],
            layer_digests: vec![],
            evidence: vec![],
        }
    }

    fn dirs() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("images")).unwrap();
        fs::create_dir_all(root.path().join("tmp")).unwrap();
        root
    }

    #[test]
    fn save_load_remove() {
        let root = dirs();
        let meta = MetadataStore::new(root.path());
        let id: Digest = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
        meta.save(&record(&id)).unwrap();
        assert_eq!(meta.load_all().unwrap(), vec![record(&id)]);
        meta.remove(&id).unwrap();
        meta.remove(&id).unwrap();
        assert!(meta.load_all().unwrap().is_empty());
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn layer_digests_round_trip_and_older_records_without_them_load() {
        let root = dirs();
        let meta = MetadataStore::new(root.path());
        let id: Digest = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
        let mut with = record(&id);
        with.layers = crate::layer_store::chain_ids(std::slice::from_ref(&id));
        with.layer_digests = vec![id.clone()];
        meta.save(&with).unwrap();
        assert_eq!(meta.load_all().unwrap(), vec![with]);
        let older = serde_json::json!({
            "id": id, "repo_tags": [], "repo_digests": [], "size": 1,
            "layers": [id], "blobs": [id],
        });
        fs::write(
            root.path()
                .join("images")
                .join(format!("{}.json", id.hex())),
            serde_json::to_vec(&older).unwrap(),
        )
        .unwrap();
        let loaded = meta.load_all().unwrap();
        assert_eq!(loaded.len(), 1);
        assert!(loaded[0].layer_digests.is_empty());
    }

    #[test]
    fn a_corrupt_record_is_set_aside_not_fatal() {
        let root = dirs();
        fs::write(root.path().join("images/x.json"), b"{not json").unwrap();
        let records = MetadataStore::new(root.path()).load_all().unwrap();
        assert!(records.is_empty());
        assert!(root.path().join("images/x.json.corrupt").exists());
        assert!(!root.path().join("images/x.json").exists());
    }

    #[test]
    fn a_record_with_malformed_digests_is_dropped() {
        let root = dirs();
        // What a daemon before digest validation recorded for the image
        // whose first diff id is "sha256:/etc".
        let hostile = serde_json::json!({
            "id": format!("sha256:{}", "2".repeat(64)),
            "repo_tags": ["registry.k8s.io/hostile/diff-id-absolute:latest"],
            "repo_digests": [], "size": 1,
            "layers": ["sha256:/etc", format!("sha256:{}", "3".repeat(64))],
            "blobs": [],
        });
        let path = root
            .path()
            .join("images")
            .join(format!("{}.json", "2".repeat(64)));
        fs::write(&path, serde_json::to_vec(&hostile).unwrap()).unwrap();
        assert!(MetadataStore::new(root.path())
            .load_all()
            .unwrap()
            .is_empty());
        assert!(!path.exists());
    }
}
