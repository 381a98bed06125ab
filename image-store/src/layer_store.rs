//! Unpacked layers as directories under `layers/<chain id hex>`, shared by
//! every image whose layer stack starts the same way.
//!
//! A layer directory appears only complete: it is unpacked in `tmp/` and
//! renamed into place, and removed by renaming it back out first.

use crate::error::{io, Result};
use crate::temp;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// Chain ids of a layer stack, bottom first: the first is the first diff id,
/// each next one `sha256(previous + " " + diff_id)` (OCI image spec).
///
/// # Examples
///
/// ```
/// use image_store::layer_store::chain_ids;
/// let a = format!("sha256:{}", "a".repeat(64));
/// let b = format!("sha256:{}", "b".repeat(64));
/// let chain = chain_ids(&[a.clone(), b]);
/// assert_eq!(chain[0], a);
/// assert_ne!(chain[1], a);
/// ```
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {diff_id}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// The layer directory of one store.
///
/// # Examples
///
/// ```no_run
/// use image_store::layer_store::LayerStore;
/// let layers = LayerStore::new("/var/lib/images".as_ref());
/// for chain in layers.list()? {
///     println!("{chain} at {}", layers.path(&chain).display());
/// }
/// # Ok::<(), image_store::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LayerStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl LayerStore {
    /// The layers of the store rooted at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("layers"),
            tmp: root.join("tmp"),
        }
    }

    /// Where layer `chain_id` is (or would be) unpacked. Chain ids come from
    /// our own hashing, so they are always well-formed.
    pub fn path(&self, chain_id: &str) -> PathBuf {
        self.dir
            .join(chain_id.strip_prefix("sha256:").unwrap_or(chain_id))
    }

    /// Whether the layer is unpacked.
    pub fn contains(&self, chain_id: &str) -> bool {
        self.path(chain_id).is_dir()
    }

    /// A fresh empty directory in `tmp/` to unpack into.
    pub fn staging_dir(&self) -> Result<PathBuf> {
        let dir = temp::path(&self.tmp, "layer");
        fs::create_dir(&dir).map_err(io(&dir, "create staging directory"))?;
        Ok(dir)
    }

    /// Moves a fully unpacked staging directory into place. If another pull
    /// got there first, ours is dropped: both are the same content.
    pub fn commit(&self, staging: &Path, chain_id: &str) -> Result<()> {
        let dest = self.path(chain_id);
        match fs::rename(staging, &dest) {
            Ok(()) => Ok(()),
            Err(_) if dest.is_dir() => {
                discard(staging);
                Ok(())
            }
            Err(e) => {
                discard(staging);
                Err(io(dest, "rename layer into place")(e))
            }
        }
    }

    /// Removes a layer; absent is fine. It leaves `layers/` first so a crash
    /// half-way through never leaves a partial layer under its name.
    pub fn remove(&self, chain_id: &str) -> Result<()> {
        let path = self.path(chain_id);
        let doomed = temp::path(&self.tmp, "removed-layer");
        match fs::rename(&path, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(io(&doomed, "remove layer")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(path, "move layer out")(e)),
        }
    }

    /// Every unpacked layer's chain id.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|hex| format!("sha256:{hex}"))
            .collect())
    }
}

/// Best-effort removal of a staging directory after a failure; whatever
/// stays behind is in `tmp/` and goes at the next open.
pub(crate) fn discard(staging: &Path) {
    let _ = fs::remove_dir_all(staging);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chain_id_of_two_layers_matches_the_spec_formula() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{a} {b}").as_bytes()))
        );
        assert_eq!(chain_ids(&[a.clone(), b]), vec![a, expected]);
    }

    #[test]
    fn commit_and_remove() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("layers")).unwrap();
        fs::create_dir_all(root.path().join("tmp")).unwrap();
        let layers = LayerStore::new(root.path());
        let chain = format!("sha256:{}", "c".repeat(64));
        let staging = layers.staging_dir().unwrap();
        fs::write(staging.join("f"), b"x").unwrap();
        layers.commit(&staging, &chain).unwrap();
        assert!(layers.path(&chain).join("f").is_file());
        // A second commit of the same layer is dropped, not an error.
        let again = layers.staging_dir().unwrap();
        layers.commit(&again, &chain).unwrap();
        assert!(!again.exists());
        assert_eq!(layers.list().unwrap(), vec![chain.clone()]);
        layers.remove(&chain).unwrap();
        layers.remove(&chain).unwrap();
        assert!(!layers.contains(&chain));
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    proptest! {
        // Chain ids are prefix-stable: a shorter stack's ids are a prefix of
        // a longer one's, which is what lets images share lower layers.
        #[test]
        fn chain_ids_are_prefix_stable(ids in proptest::collection::vec("[0-9a-f]{64}", 1..6)) {
            let ids: Vec<String> = ids.into_iter().map(|h| format!("sha256:{h}")).collect();
            let full = chain_ids(&ids);
            for n in 1..=ids.len() {
                prop_assert_eq!(&chain_ids(&ids[..n])[..], &full[..n]);
            }
        }
    }
}
