//! Unpacked layers as directories under `layers/<chain id hex>`, shared by
//! every image whose layer stack starts the same way.
//!
//! A layer directory appears only complete: it is unpacked in `tmp/` and
//! renamed into place, and removed by renaming it back out first.

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{io, Result};
use crate::temp;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// A layer's chain id: the identity of the layer *and everything below it*,
/// and the name of its directory. Made only by [`chain_ids`] from parsed
/// diff ids (or read back from the store), so it is always a well-formed
/// [`Digest`] and its directory always lies directly under `layers/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(Digest);

impl ChainId {
    /// The chain id as a digest.
    pub fn digest(&self) -> &Digest {
        &self.0
    }

    /// The chain id a `layers/` entry name stands for, if it is one: the
    /// hex of a sha256 chain id, or of a sha512 diff id at the bottom of a
    /// stack (the lengths differ, so the names cannot collide).
    pub fn from_dir_name(name: &str) -> Option<Self> {
        Algorithm::from_hex_len(name.len())
            .and_then(|a| Digest::from_hex(a, name))
            .map(Self)
    }
}

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Chain ids of a layer stack, bottom first: the first is the first diff id,
/// each next one `sha256(previous + " " + diff_id)` (OCI image spec). A
/// chain id is a hash over verified diff ids, so a layer directory under it
/// holds exactly what those diff ids name.
///
/// # Examples
///
/// ```
/// use image_store::digest::Digest;
/// use image_store::layer_store::chain_ids;
/// let a: Digest = format!("sha256:{}", "a".repeat(64)).parse()?;
/// let b: Digest = format!("sha256:{}", "b".repeat(64)).parse()?;
/// let chain = chain_ids(&[a.clone(), b]);
/// assert_eq!(chain[0].digest(), &a);
/// assert_ne!(chain[1].digest(), &a);
/// # Ok::<(), image_store::digest::DigestError>(())
/// ```
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<ChainId> {
    let mut out: Vec<ChainId> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let mut h = Hasher::new(Algorithm::Sha256);
                h.update(format!("{parent} {diff_id}").as_bytes());
                h.finish()
            }
        };
        out.push(ChainId(next));
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

    /// The `layers/` directory itself: every layer directory is a direct
    /// child of it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where layer `chain_id` is (or would be) unpacked: `layers/<hex>`,
    /// always a direct child of [`LayerStore::dir`].
    pub fn path(&self, chain_id: &ChainId) -> PathBuf {
        self.dir.join(chain_id.digest().hex())
    }

    /// Whether the layer is unpacked (a directory, not a symlink to one).
    pub fn contains(&self, chain_id: &ChainId) -> bool {
        fs::symlink_metadata(self.path(chain_id)).is_ok_and(|m| m.is_dir())
    }

    /// A fresh empty directory in `tmp/` to unpack into.
    pub fn staging_dir(&self) -> Result<PathBuf> {
        let dir = temp::path(&self.tmp, "layer");
        fs::create_dir(&dir).map_err(io(&dir, "create staging directory"))?;
        Ok(dir)
    }

    /// Moves a fully unpacked staging directory into place. If another pull
    /// got there first, ours is dropped: both are the same content.
    pub fn commit(&self, staging: &Path, chain_id: &ChainId) -> Result<()> {
        let dest = self.path(chain_id);
        match fs::rename(staging, &dest) {
            Ok(()) => Ok(()),
            Err(_) if self.contains(chain_id) => {
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
    pub fn remove(&self, chain_id: &ChainId) -> Result<()> {
        let path = self.path(chain_id);
        let doomed = temp::path(&self.tmp, "removed-layer");
        match fs::rename(&path, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(io(&doomed, "remove layer")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(path, "move layer out")(e)),
        }
    }

    /// Every unpacked layer's chain id. Entries whose names are no chain id
    /// are not ours and are left alone.
    pub fn list(&self) -> Result<Vec<ChainId>> {
        let entries = fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|name| ChainId::from_dir_name(&name))
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

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn chain_id_of_two_layers_matches_the_spec_formula() {
        let (a, b) = (digest('a'), digest('b'));
        let expected = Digest::of(Algorithm::Sha256, format!("{a} {b}").as_bytes());
        let chain = chain_ids(&[a.clone(), b]);
        assert_eq!(chain, vec![ChainId(a), ChainId(expected)]);
    }

    #[test]
    fn commit_and_remove() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("layers")).unwrap();
        fs::create_dir_all(root.path().join("tmp")).unwrap();
        let layers = LayerStore::new(root.path());
        let chain = ChainId(digest('c'));
        let staging = layers.staging_dir().unwrap();
        fs::write(staging.join("f"), b"x").unwrap();
        layers.commit(&staging, &chain).unwrap();
        assert!(layers.path(&chain).join("f").is_file());
        // A second commit of the same layer is dropped, not an error.
        let again = layers.staging_dir().unwrap();
        layers.commit(&again, &chain).unwrap();
        assert!(!again.exists());
        // Names that are no chain id are not listed (nor collected).
        fs::create_dir(root.path().join("layers/not-a-layer")).unwrap();
        assert_eq!(layers.list().unwrap(), vec![chain.clone()]);
        layers.remove(&chain).unwrap();
        layers.remove(&chain).unwrap();
        assert!(!layers.contains(&chain));
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_is_no_layer() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("layers")).unwrap();
        let layers = LayerStore::new(root.path());
        let chain = ChainId(digest('d'));
        std::os::unix::fs::symlink("/etc", layers.path(&chain)).unwrap();
        assert!(!layers.contains(&chain));
    }

    fn any_digest() -> impl Strategy<Value = Digest> {
        prop_oneof![
            "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}").parse::<Digest>().unwrap()),
            "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}").parse::<Digest>().unwrap()),
        ]
    }

    proptest! {
        // Chain ids are prefix-stable: a shorter stack's ids are a prefix of
        // a longer one's, which is what lets images share lower layers.
        #[test]
        fn chain_ids_are_prefix_stable(ids in proptest::collection::vec(any_digest(), 1..6)) {
            let full = chain_ids(&ids);
            for n in 1..=ids.len() {
                prop_assert_eq!(&chain_ids(&ids[..n])[..], &full[..n]);
            }
        }

        // Chain ids of valid diff ids are valid digests, name a directory
        // strictly inside layers/, and read back from that name.
        #[test]
        fn chain_ids_of_valid_diff_ids_are_valid_and_inside(ids in proptest::collection::vec(any_digest(), 1..6)) {
            let layers = LayerStore::new(Path::new("/store"));
            for chain in chain_ids(&ids) {
                prop_assert!(chain.to_string().parse::<Digest>().is_ok());
                let path = layers.path(&chain);
                prop_assert_eq!(path.parent(), Some(layers.dir()));
                prop_assert!(path.starts_with("/store/layers/"));
                let name = path.file_name().and_then(|n| n.to_str()).unwrap();
                prop_assert_eq!(ChainId::from_dir_name(name), Some(chain.clone()));
            }
        }
    }
}
