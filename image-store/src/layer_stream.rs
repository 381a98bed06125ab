//! The blocking half of a layer download: the body's chunks arrive through
//! a bounded channel ([`CHANNEL_CHUNKS`] deep, so at most a couple of MiB
//! of a layer are ever held) and are hashed, decompressed and unpacked into a
//! staging directory as they come, on a blocking thread ([`LayerJob::run`]).
//! The compressed blob itself is not kept: nothing in the store or the
//! daemon reads a layer's blob once its directory is made.
//!
//! A layer is committed (its staging directory renamed to
//! `layers/<chain id>`) only when the whole body arrived, its size is the
//! declared one (the sending side ends the stream with [`Chunk::End`] only
//! then), its bytes hash to the manifest's digest and its uncompressed
//! stream to the config's diff id. Anything else leaves nothing: the
//! staging directory is removed before the job returns. A channel that
//! closes without [`Chunk::End`] (the download failed, the pull was
//! cancelled, its future dropped) is such a failure, so a cancelled layer
//! is cleaned up by its own job even when nobody waits for it any more.

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::Error;
use crate::layer_store::{discard, ChainId, LayerStore};
use crate::layer_unpack::{diff_id, unpack, Compression, UnpackError};
use bytes::{Buf, Bytes};
use std::io::{self, Read};
use std::path::Path;
use tokio::sync::mpsc;

/// Chunks queued between the download and its job: hyper's chunks are at
/// most about 400 KiB, so a layer holds under 2 MiB here. The job is the
/// slower side (it hashes twice and writes), so a deeper queue would only
/// hold more memory, not move bytes faster.
pub(crate) const CHANNEL_CHUNKS: usize = 4;

/// What the download sends its job.
pub(crate) enum Chunk {
    /// The next bytes of the body.
    Data(Bytes),
    /// The body is whole and of the declared size.
    End,
}

/// One layer blob to check and unpack while it downloads.
pub(crate) struct LayerJob {
    /// The blob's digest, from the manifest.
    pub digest: Digest,
    /// Its uncompressed digest, from the config.
    pub diff_id: Digest,
    /// From the layer's media type.
    pub compression: Compression,
    /// The chain id to unpack into; `None` to only hash (that chain id is
    /// unpacked already, but this blob was never checked against it).
    pub unpack_into: Option<ChainId>,
    /// Where layers go.
    pub layers: LayerStore,
}

/// Why a layer job made nothing.
#[derive(Debug)]
pub(crate) enum LayerFault {
    /// The stream ended without [`Chunk::End`]: the download failed or was
    /// cancelled, and its side knows why.
    Aborted,
    /// The bytes are not the blob the manifest names.
    Digest {
        /// What they hash to.
        actual: Digest,
    },
    /// The uncompressed stream is not the config's diff id.
    DiffId {
        /// The config's diff id.
        expected: Digest,
        /// The stream's.
        actual: Digest,
    },
    /// The archive does not decode or unpack.
    Unpack(UnpackError),
    /// The store failed (a staging directory, the rename into place).
    Store(Error),
}

impl LayerJob {
    /// Reads the stream from `chunks` to its end, checking and unpacking
    /// it; commits the layer only when every check passed. Blocking.
    pub(crate) fn run(self, chunks: mpsc::Receiver<Chunk>) -> Result<(), LayerFault> {
        let mut reader = ChannelReader::new(chunks, self.digest.algorithm());
        let staging = match &self.unpack_into {
            Some(_) => Some(self.layers.staging_dir().map_err(LayerFault::Store)?),
            None => None,
        };
        let checked = self.check(&mut reader, staging.as_deref());
        // The channel closes here: a download still sending learns that the
        // job is over.
        drop(reader);
        match (checked, staging, &self.unpack_into) {
            (Ok(()), Some(staging), Some(chain_id)) => self
                .layers
                .commit(&staging, chain_id)
                .map_err(LayerFault::Store),
            (Ok(()), _, _) => Ok(()),
            (Err(fault), staging, _) => {
                if let Some(staging) = staging {
                    discard(&staging);
                }
                Err(fault)
            }
        }
    }

    /// Unpacks into `staging` (or only hashes), then checks the blob's
    /// digest and the diff id.
    fn check(&self, reader: &mut ChannelReader, staging: Option<&Path>) -> Result<(), LayerFault> {
        let algorithm = self.diff_id.algorithm();
        let computed = match staging {
            Some(dir) => unpack(&mut *reader, self.compression, dir, algorithm).map(|u| u.diff_id),
            None => diff_id(&mut *reader, self.compression, algorithm),
        };
        if reader.aborted() {
            return Err(LayerFault::Aborted);
        }
        let actual = match computed {
            Ok(actual) => actual,
            // A stream that does not decode may have been damaged on the
            // way (the next endpoint may serve it whole) or be broken as
            // stored: only its digest tells, so it is read to the end.
            Err(e @ UnpackError::Read(_)) => {
                self.blob_digest(reader)?;
                return Err(LayerFault::Unpack(e));
            }
            // Ours (a full disk) or the archive's (an entry we refuse):
            // stop at once.
            Err(e) => return Err(LayerFault::Unpack(e)),
        };
        self.blob_digest(reader)?;
        if actual != self.diff_id {
            return Err(LayerFault::DiffId {
                expected: self.diff_id.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Reads what the decompressor left of the body (the digest covers it
    /// all) and checks the blob's digest.
    fn blob_digest(&self, reader: &mut ChannelReader) -> Result<(), LayerFault> {
        if io::copy(reader, &mut io::sink()).is_err() || reader.aborted() {
            return Err(LayerFault::Aborted);
        }
        let actual = reader.digest();
        if actual != self.digest {
            return Err(LayerFault::Digest { actual });
        }
        Ok(())
    }
}

/// Whether the stream reached [`Chunk::End`], failed, or goes on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Open,
    Ended,
    Aborted,
}

/// The body as a blocking [`Read`], hashing every byte received.
struct ChannelReader {
    chunks: mpsc::Receiver<Chunk>,
    current: Bytes,
    hasher: Hasher,
    stream: Stream,
}

impl ChannelReader {
    fn new(chunks: mpsc::Receiver<Chunk>, algorithm: Algorithm) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
            hasher: Hasher::new(algorithm),
            stream: Stream::Open,
        }
    }

    fn aborted(&self) -> bool {
        self.stream == Stream::Aborted
    }

    /// The digest of everything received.
    fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.stream {
                Stream::Ended => return Ok(0),
                // Not `Interrupted`, which `io::copy` would retry.
                Stream::Aborted => return Err(io::ErrorKind::ConnectionAborted.into()),
                Stream::Open => {}
            }
            match self.chunks.blocking_recv() {
                Some(Chunk::Data(bytes)) => {
                    self.hasher.update(&bytes);
                    self.current = bytes;
                }
                Some(Chunk::End) => self.stream = Stream::Ended,
                None => self.stream = Stream::Aborted,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn layer_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(3);
        b.append_data(&mut h, "hi", b"hi\n".as_slice()).unwrap();
        b.into_inner().unwrap()
    }

    struct Setup {
        _dir: tempfile::TempDir,
        root: std::path::PathBuf,
        layers: LayerStore,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for sub in ["layers", "tmp"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        let layers = LayerStore::new(&root);
        Setup {
            _dir: dir,
            root,
            layers,
        }
    }

    fn job(s: &Setup, blob: &[u8], diff_id: Digest) -> LayerJob {
        LayerJob {
            digest: Digest::of(Algorithm::Sha256, blob),
            diff_id: diff_id.clone(),
            compression: Compression::None,
            unpack_into: Some(crate::layer_store::chain_ids(&[diff_id]).remove(0)),
            layers: s.layers.clone(),
        }
    }

    /// Runs `job` on a thread, sending `blob` in pieces, then `End` if
    /// `end`; returns the outcome.
    fn feed(job: LayerJob, blob: &[u8], end: bool) -> Result<(), LayerFault> {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let worker = std::thread::spawn(move || job.run(rx));
        for piece in blob.chunks(100) {
            if tx
                .blocking_send(Chunk::Data(Bytes::copy_from_slice(piece)))
                .is_err()
            {
                break;
            }
        }
        if end {
            let _ = tx.blocking_send(Chunk::End);
        }
        drop(tx);
        worker.join().unwrap()
    }

    fn left(s: &Setup) -> (usize, usize) {
        let count = |sub| fs::read_dir(s.root.join(sub)).unwrap().count();
        (count("layers"), count("tmp"))
    }

    #[test]
    fn a_whole_stream_is_unpacked_and_committed() {
        let s = setup();
        let tar = layer_tar();
        let job = job(&s, &tar, Digest::of(Algorithm::Sha256, &tar));
        let chain = job.unpack_into.clone().unwrap();
        feed(job, &tar, true).unwrap();
        assert_eq!(fs::read(s.layers.path(&chain).join("hi")).unwrap(), b"hi\n");
        assert_eq!(left(&s), (1, 0));
    }

    #[test]
    fn a_stream_without_its_end_leaves_nothing() {
        let s = setup();
        let tar = layer_tar();
        let job = job(&s, &tar, Digest::of(Algorithm::Sha256, &tar));
        let fault = feed(job, &tar, false).unwrap_err();
        assert!(matches!(fault, LayerFault::Aborted), "{fault:?}");
        assert_eq!(left(&s), (0, 0));
    }

    #[test]
    fn a_wrong_digest_or_diff_id_leaves_nothing() {
        let s = setup();
        let tar = layer_tar();
        let mut wrong_blob = job(&s, &tar, Digest::of(Algorithm::Sha256, &tar));
        wrong_blob.digest = Digest::of(Algorithm::Sha256, b"another blob");
        let fault = feed(wrong_blob, &tar, true).unwrap_err();
        assert!(matches!(fault, LayerFault::Digest { .. }), "{fault:?}");
        assert_eq!(left(&s), (0, 0));
        let wrong_diff_id = job(&s, &tar, Digest::of(Algorithm::Sha256, b"another tar"));
        let fault = feed(wrong_diff_id, &tar, true).unwrap_err();
        assert!(matches!(fault, LayerFault::DiffId { .. }), "{fault:?}");
        assert_eq!(left(&s), (0, 0));
    }

    #[test]
    fn a_broken_stream_is_read_to_its_end_to_tell_whose_fault_it_is() {
        let s = setup();
        let blob = b"not gzip at all".repeat(100);
        let mut broken = job(&s, &blob, Digest::of(Algorithm::Sha256, b"x"));
        broken.compression = Compression::Gzip;
        let fault = feed(broken, &blob, true).unwrap_err();
        assert!(matches!(fault, LayerFault::Unpack(_)), "{fault:?}");
        let mut damaged = job(
            &s,
            b"what the manifest names",
            Digest::of(Algorithm::Sha256, b"x"),
        );
        damaged.compression = Compression::Gzip;
        let fault = feed(damaged, &blob, true).unwrap_err();
        assert!(matches!(fault, LayerFault::Digest { .. }), "{fault:?}");
        assert_eq!(left(&s), (0, 0));
    }

    #[test]
    fn hashing_only_commits_nothing() {
        let s = setup();
        let tar = layer_tar();
        let mut only_hash = job(&s, &tar, Digest::of(Algorithm::Sha256, &tar));
        only_hash.unpack_into = None;
        feed(only_hash, &tar, true).unwrap();
        assert_eq!(left(&s), (0, 0));
    }
}
