//! What checking a pull costs at the least: SHA-256 over every compressed
//! blob (the manifest's digests) and over every uncompressed stream (the
//! config's diff ids), which any verifying client (containerd, CRI-O, us)
//! must compute. Measured on this machine, one thread, so the report can
//! say how close to the floor a verifying pull can come on its cores.

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

/// The blobs' bytes, fetched once with curl.
pub fn fetch(blobs: &[String]) -> Result<Vec<Vec<u8>>> {
    blobs
        .iter()
        .map(|url| {
            let out = Command::new("curl")
                .args(["-sS", "--fail", url])
                .output()
                .context("running curl")?;
            ensure!(out.status.success(), "curl {url} failed");
            Ok(out.stdout)
        })
        .collect()
}

/// CPU time to hash every blob and its gunzipped stream, without the
/// inflating itself (the hashing alone), and the bytes hashed.
pub fn hashing_time(blobs: &[Vec<u8>]) -> Result<(Duration, u64)> {
    let (mut took, mut bytes) = (Duration::ZERO, 0);
    for blob in blobs {
        let mut uncompressed = Vec::with_capacity(blob.len());
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut uncompressed)
            .context("a blob is not gzip")?;
        let start = Instant::now();
        std::hint::black_box(Sha256::digest(blob));
        std::hint::black_box(Sha256::digest(&uncompressed));
        took += start.elapsed();
        bytes += (blob.len() + uncompressed.len()) as u64;
    }
    Ok((took, bytes))
}
