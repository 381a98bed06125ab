//! Pull throughput and memory against the real daemon (issue #19), with the
//! registry's own speed as the floor.
//!
//! Pushes two images to the fixture registry: `bench/pull-cold` (6 layers
//! of 16 MiB of seeded random bytes, gzip: incompressible, so the registry
//! sends 96 MiB) and `bench/pull-warm` (its bottom 5 layers and one more).
//! `cri-pull-bench` (a binary of the `tests` crate, which speaks CRI) then
//! pulls them through PullImage from fresh daemons and compares the cold
//! pull with fetching the same blobs in parallel with curl. Exits non-zero
//! when a target is missed.

use crate::command;
use crate::fixtures::images::{Compression, Format, Image, Layer, LayerBuilder};
use crate::fixtures::{self, push};
use anyhow::Result;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Layers of the cold image.
const LAYERS: usize = 6;
/// Bytes of random data in each layer.
const LAYER_BYTES: usize = 16 << 20;
/// Where the images go, in the fixture registry.
const COLD: &str = "bench/pull-cold";
const WARM: &str = "bench/pull-warm";

/// Pushes the bench images, builds the daemon and `cri-pull-bench` in
/// release and runs it.
pub fn run(root: &Path) -> Result<()> {
    fixtures::prepare(root)?;
    let registry = push::Registry::new(fixtures::registry::ADDRESS);
    let layers = (0..=LAYERS as u64)
        .map(random_layer)
        .collect::<Result<Vec<_>>>()?;
    let cold = bench_image(COLD, layers[..LAYERS].iter());
    let warm = bench_image(WARM, layers[..LAYERS - 1].iter().chain(&layers[LAYERS..]));
    fixtures::images::publish(&registry, &cold)?;
    fixtures::images::publish(&registry, &warm)?;
    command::exec(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "cri-server",
        "-p",
        "oci-shim",
        "-p",
        "tests",
        "--bins",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let mut bench = Command::new(target.join("release/cri-pull-bench"));
    bench
        .arg("--cold")
        .arg(format!("registry.k8s.io/{COLD}:latest"))
        .arg("--warm")
        .arg(format!("registry.k8s.io/{WARM}:latest"));
    // containerd, the anchor, when installed (`cargo xtask setup` does).
    if command::on_path("containerd") && command::on_path("ctr") {
        bench
            .arg("--containerd")
            .arg(format!("{}/{COLD}:latest", fixtures::registry::ADDRESS));
    } else {
        eprintln!("bench pull: containerd not installed; no anchor row");
    }
    for layer in &cold.layers {
        let url = format!(
            "http://{}/v2/{COLD}/blobs/{}",
            fixtures::registry::ADDRESS,
            push::digest(&layer.blob)
        );
        bench.arg("--blob").arg(url);
    }
    command::exec(&mut bench)
}

/// An image of `layers`, tagged `latest`.
fn bench_image<'a>(repository: &str, layers: impl Iterator<Item = &'a Layer>) -> Image {
    Image {
        repository: repository.into(),
        tags: vec!["latest".into()],
        user: None,
        layers: layers
            .map(|l| Layer {
                blob: l.blob.clone(),
                diff_id: l.diff_id.clone(),
                compression: l.compression,
            })
            .collect(),
        format: Format::Oci,
        index: false,
        labels: Vec::new(),
        cmd: None,
    }
}

/// Layer `seed`: one file of [`LAYER_BYTES`] random bytes (the same for the
/// same seed, so pushing again is a no-op), in a gzip stream.
fn random_layer(seed: u64) -> Result<Layer> {
    let mut tar = LayerBuilder::new();
    tar.dir("data/", 0o755)?
        .file(&format!("data/{seed}"), 0o644, &noise(seed, LAYER_BYTES))?;
    let tar = tar.finish(Compression::None)?;
    // Stored deflate blocks: what any gzip level makes of random bytes, at
    // a fraction of the time xtask's unoptimised build would take to try.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gzip.write_all(&tar.blob)?;
    Ok(Layer {
        blob: gzip.finish()?,
        diff_id: tar.diff_id,
        compression: Compression::Gzip,
    })
}

/// `len` bytes of xorshift64 output seeded with `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = (seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_seeded_incompressible_and_distinct() {
        assert_eq!(noise(3, 1000), noise(3, 1000));
        assert_ne!(noise(3, 1000), noise(4, 1000));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&noise(1, 1 << 20)).unwrap();
        assert!(
            gz.finish().unwrap().len() > 1 << 20,
            "random bytes do not shrink"
        );
    }
}
