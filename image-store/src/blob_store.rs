//! Content-addressed blobs (manifests, configs, compressed layers) under
//! `blobs/sha256/<hex>`.
//!
//! A blob only ever appears under its name complete and verified: writers
//! fill a file in the store's `tmp/` directory, and it is renamed into place
//! once its digest checks out.

use crate::error::{io, Error, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// The `sha256:<hex>` digest of `bytes`.
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
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<64 hex>` digest, or `None` if `digest` is not
/// one (which also keeps a hostile digest from naming a path like `../x`).
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// The blob directory of one store.
///
/// # Examples
///
/// ```no_run
/// use image_store::blob_store::{sha256_digest, BlobStore};
/// let blobs = BlobStore::new("/var/lib/images".as_ref());
/// let digest = sha256_digest(b"{}");
/// blobs.write(&digest, b"{}")?;
/// assert_eq!(blobs.read(&digest)?, b"{}");
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
            dir: root.join("blobs").join("sha256"),
            tmp: root.join("tmp"),
        }
    }

    /// Where the blob `digest` lives.
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest_hex(digest).ok_or_else(|| Error::BadImage {
            image: String::new(),
            reason: format!("unsupported or malformed digest {digest:?}"),
        })?;
        Ok(self.dir.join(hex))
    }

    /// Whether the blob is stored.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Stores `bytes` as `digest`, refusing content that does not match.
    pub fn write(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(Error::DigestMismatch {
                image: String::new(),
                expected: digest.into(),
                actual,
            });
        }
        let dest = self.path(digest)?;
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
        fs::rename(&temp, &dest).map_err(io(&dest, "rename into place"))
    }

    /// Reads a whole blob.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.path(digest)?;
        fs::read(&path).map_err(io(path, "read blob"))
    }

    /// Starts a streamed write: a temporary file that hashes what goes in.
    pub async fn writer(&self) -> Result<BlobWriter> {
        let temp = crate::temp::path(&self.tmp, "download");
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(io(&temp, "create"))?;
        Ok(BlobWriter {
            file,
            temp,
            hasher: Sha256::new(),
            size: 0,
            failed: None,
        })
    }

    /// Moves a finished [`BlobWriter`] into place as `digest` if what was
    /// written hashes to it; otherwise deletes it and reports the mismatch.
    pub async fn commit(&self, mut writer: BlobWriter, digest: &str) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let flushed = writer.file.flush().await;
        let synced = writer.file.sync_all().await;
        let actual = format!("sha256:{}", hex::encode(writer.hasher.finalize_reset()));
        let cleanup = |e: Error| {
            let _ = fs::remove_file(&writer.temp);
            e
        };
        flushed
            .and(synced)
            .map_err(io(&writer.temp, "write"))
            .map_err(cleanup)?;
        if actual != digest {
            return Err(cleanup(Error::DigestMismatch {
                image: String::new(),
                expected: digest.into(),
                actual,
            }));
        }
        let dest = self.path(digest).map_err(cleanup)?;
        tokio::fs::rename(&writer.temp, &dest)
            .await
            .map_err(io(&dest, "rename into place"))
            .map_err(cleanup)?;
        Ok(writer.size)
    }

    /// Deletes a blob; absent is fine.
    pub fn remove(&self, digest: &str) -> Result<()> {
        let path = self.path(digest)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, "remove")(e)),
            _ => Ok(()),
        }
    }

    /// Every stored digest.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|hex| format!("sha256:{hex}"))
            .filter(|d| digest_hex(d).is_some())
            .collect())
    }
}

/// A blob being downloaded; see [`BlobStore::writer`].
pub struct BlobWriter {
    file: tokio::fs::File,
    temp: PathBuf,
    hasher: Sha256,
    size: u64,
    /// The first local write failure, kept because the HTTP client that
    /// drives the writer reports it only as an opaque error of its own.
    failed: Option<(std::io::ErrorKind, String)>,
}

impl BlobWriter {
    /// Abandons the download, deleting the temporary file. Returns the local
    /// write error, if writing (rather than downloading) is what failed.
    pub fn discard(self) -> Option<Error> {
        let _ = fs::remove_file(&self.temp);
        self.failed.map(|(kind, message)| Error::Io {
            path: self.temp,
            op: "write",
            source: std::io::Error::new(kind, message),
        })
    }
}

impl AsyncWrite for BlobWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.file).poll_write(cx, buf);
        match &poll {
            Poll::Ready(Ok(n)) => {
                this.hasher.update(&buf[..*n]);
                this.size += *n as u64;
            }
            Poll::Ready(Err(e)) if this.failed.is_none() => {
                this.failed = Some((e.kind(), e.to_string()));
            }
            _ => {}
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let blobs = BlobStore::new(dir.path());
        (dir, blobs)
    }

    #[test]
    fn write_read_remove() {
        let (_d, blobs) = store();
        let digest = sha256_digest(b"hello");
        blobs.write(&digest, b"hello").unwrap();
        assert!(blobs.contains(&digest));
        assert_eq!(blobs.read(&digest).unwrap(), b"hello");
        assert_eq!(blobs.list().unwrap(), vec![digest.clone()]);
        blobs.remove(&digest).unwrap();
        blobs.remove(&digest).unwrap();
        assert!(!blobs.contains(&digest));
    }

    #[test]
    fn mismatched_content_is_refused_and_leaves_nothing() {
        let (d, blobs) = store();
        let digest = sha256_digest(b"hello");
        let err = blobs.write(&digest, b"evil").unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!blobs.contains(&digest));
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn hostile_digests_name_no_path() {
        let (_d, blobs) = store();
        for bad in ["sha256:../../etc/passwd", "md5:abc", "sha256:ABC", ""] {
            assert!(blobs.path(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn streamed_write_is_verified() {
        use tokio::io::AsyncWriteExt;
        let (d, blobs) = store();
        let mut w = blobs.writer().await.unwrap();
        w.write_all(b"stream").await.unwrap();
        let size = blobs.commit(w, &sha256_digest(b"stream")).await.unwrap();
        assert_eq!(size, 6);
        assert!(blobs.contains(&sha256_digest(b"stream")));

        let mut w = blobs.writer().await.unwrap();
        w.write_all(b"other").await.unwrap();
        let err = blobs
            .commit(w, &sha256_digest(b"expected"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }
}
