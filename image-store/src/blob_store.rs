//! Content-addressed blobs (manifests, configs, compressed layers) under
//! `blobs/<algorithm>/<hex>`.
//!
//! A blob only ever appears under its name complete and verified: writers
//! fill a file in the store's `tmp/` directory, and it is renamed into place
//! once its digest checks out. Paths are made only from a parsed
//! [`Digest`], so a blob file is always a direct child of its algorithm's
//! directory.

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{io, Error, Result};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The `sha256:<hex>` digest of `bytes`, as text.
///
/// # Examples
///
/// ```
/// assert_eq!(
///     image_store::blob_store::sha256_digest(b""),
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn sha256_digest(bytes: &[u8]) -> String {
    Digest::of(Algorithm::Sha256, bytes).to_string()
}

/// The blob directory of one store.
///
/// # Examples
///
/// ```no_run
/// use image_store::blob_store::BlobStore;
/// use image_store::digest::{Algorithm, Digest};
/// let blobs = BlobStore::new("/var/lib/images".as_ref());
/// let digest = Digest::of(Algorithm::Sha256, b"{}");
/// blobs.write(&digest, b"{}")?;
/// assert_eq!(blobs.read(&digest, 1024)?, b"{}");
/// # Ok::<(), image_store::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl BlobStore {
    /// The blobs of the store rooted at `root` (directories are made by
    /// [`crate::ImageStore::open`]).
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("blobs"),
            tmp: root.join("tmp"),
        }
    }

    /// The directory of `algorithm`'s blobs.
    pub fn algorithm_dir(&self, algorithm: Algorithm) -> PathBuf {
        self.dir.join(algorithm.name())
    }

    /// Where the blob `digest` lives: `blobs/<algorithm>/<hex>`.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.algorithm_dir(digest.algorithm()).join(digest.hex())
    }

    /// Whether the blob is stored (a regular file, not a symlink).
    pub fn contains(&self, digest: &Digest) -> bool {
        fs::symlink_metadata(self.path(digest)).is_ok_and(|m| m.is_file())
    }

    /// The stored blob's size, if it is stored.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        fs::symlink_metadata(self.path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Stores `bytes` as `digest`, refusing content that does not match.
    pub fn write(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let actual = Digest::of(digest.algorithm(), bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                image: String::new(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let dest = self.path(digest);
        let temp = crate::temp::path(&self.tmp, "blob");
        let mut file = fs::File::create(&temp).map_err(io(&temp, "create"))?;
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(io(&temp, "write"));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        fs::rename(&temp, &dest).map_err(|e| {
            let _ = fs::remove_file(&temp);
            io(&dest, "rename into place")(e)
        })
    }

    /// Reads a whole blob of at most `limit` bytes; a larger one is an error
    /// (reading stops at `limit + 1` bytes).
    pub fn read(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.path(digest);
        let file = fs::File::open(&path).map_err(io(&path, "read blob"))?;
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io(&path, "read blob"))?;
        if bytes.len() as u64 > limit {
            return Err(Error::Io {
                path,
                op: "read blob",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("larger than the {limit}-byte limit"),
                ),
            });
        }
        Ok(bytes)
    }

    /// Starts a streamed write of an `algorithm` blob: a temporary file that
    /// hashes what goes in.
    pub async fn writer(&self, algorithm: Algorithm) -> Result<BlobWriter> {
        let temp = crate::temp::path(&self.tmp, "download");
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(io(&temp, "create"))?;
        Ok(BlobWriter {
            file,
            temp,
            hasher: Hasher::new(algorithm),
            size: 0,
        })
    }

    /// Moves a finished [`BlobWriter`] into place as `digest` if what was
    /// written hashes to it; otherwise deletes it and reports the mismatch.
    pub async fn commit(&self, mut writer: BlobWriter, digest: &Digest) -> Result<u64> {
        let flushed = writer.file.flush().await;
        let synced = writer.file.sync_all().await;
        let actual = writer.hasher.clone().finish();
        let cleanup = |e: Error| {
            let _ = fs::remove_file(&writer.temp);
            e
        };
        flushed
            .and(synced)
            .map_err(io(&writer.temp, "write"))
            .map_err(cleanup)?;
        if &actual != digest {
            return Err(cleanup(Error::DigestMismatch {
                image: String::new(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            }));
        }
        let dest = self.path(digest);
        tokio::fs::rename(&writer.temp, &dest)
            .await
            .map_err(io(&dest, "rename into place"))
            .map_err(cleanup)?;
        Ok(writer.size)
    }

    /// Deletes a blob; absent is fine.
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, "remove")(e)),
            _ => Ok(()),
        }
    }

    /// Every stored digest. Entries whose names are no digest of their
    /// directory's algorithm are not ours and are left alone.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for algorithm in Algorithm::ALL {
            let dir = self.algorithm_dir(algorithm);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(dir, "list")(e)),
            };
            out.extend(
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter_map(|hex| Digest::from_hex(algorithm, &hex)),
            );
        }
        Ok(out)
    }
}

/// A blob being downloaded; see [`BlobStore::writer`].
pub struct BlobWriter {
    file: tokio::fs::File,
    temp: PathBuf,
    hasher: Hasher,
    size: u64,
}

impl BlobWriter {
    /// Appends `bytes`, hashing them.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .await
            .map_err(io(&self.temp, "write"))?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Abandons the download, deleting the temporary file.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["blobs/sha256", "blobs/sha512", "tmp"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let blobs = BlobStore::new(dir.path());
        (dir, blobs)
    }

    #[test]
    fn write_read_remove_in_both_algorithms() {
        let (_d, blobs) = store();
        let mut all = Vec::new();
        for algorithm in Algorithm::ALL {
            let digest = Digest::of(algorithm, b"hello");
            blobs.write(&digest, b"hello").unwrap();
            assert!(blobs.contains(&digest));
            assert_eq!(blobs.size(&digest), Some(5));
            assert_eq!(blobs.read(&digest, 5).unwrap(), b"hello");
            assert!(blobs.read(&digest, 4).is_err(), "over the limit");
            all.push(digest);
        }
        let mut listed = blobs.list().unwrap();
        listed.sort();
        assert_eq!(listed, all);
        for digest in &all {
            blobs.remove(digest).unwrap();
            blobs.remove(digest).unwrap();
            assert!(!blobs.contains(digest));
        }
    }

    #[test]
    fn mismatched_content_is_refused_and_leaves_nothing() {
        let (d, blobs) = store();
        let digest = Digest::of(Algorithm::Sha256, b"hello");
        let err = blobs.write(&digest, b"evil").unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!blobs.contains(&digest));
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn foreign_entries_are_not_listed() {
        let (d, blobs) = store();
        fs::write(d.path().join("blobs/sha256/not-a-digest"), b"").unwrap();
        fs::write(d.path().join("blobs/sha512").join("a".repeat(64)), b"").unwrap();
        assert!(blobs.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn streamed_write_is_verified() {
        let (d, blobs) = store();
        let mut w = blobs.writer(Algorithm::Sha256).await.unwrap();
        w.write(b"stream").await.unwrap();
        let digest = Digest::of(Algorithm::Sha256, b"stream");
        assert_eq!(blobs.commit(w, &digest).await.unwrap(), 6);
        assert!(blobs.contains(&digest));

        let mut w = blobs.writer(Algorithm::Sha256).await.unwrap();
        w.write(b"other").await.unwrap();
        let expected = Digest::of(Algorithm::Sha256, b"expected");
        let err = blobs.commit(w, &expected).await.unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }

    proptest! {
        // Any valid digest maps to a path strictly inside the store: a
        // direct child of its algorithm's directory, named by its hex.
        #[test]
        fn valid_digests_map_strictly_inside_the_store(
            d in "sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}",
        ) {
            let blobs = BlobStore::new(Path::new("/store"));
            let digest: Digest = d.parse().unwrap();
            let path = blobs.path(&digest);
            let dir = blobs.algorithm_dir(digest.algorithm());
            prop_assert_eq!(path.parent(), Some(dir.as_path()));
            prop_assert!(path.starts_with("/store/blobs/"));
            prop_assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(digest.hex()));
            prop_assert_eq!(path.components().count(), 5);
        }
    }
}
