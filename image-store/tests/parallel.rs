//! The streaming, parallel pull (issue #19): layers fetched several at a
//! time within `max_concurrent_downloads`, unpacked while they download,
//! checked (blob digest, diff id) before they are committed, shared between
//! concurrent pulls, skipped when present; and whatever fails or is
//! cancelled leaves nothing. Served by a fake registry on loopback that
//! counts requests and their concurrency; needs root (layers keep their
//! owners, root filesystems are mounted).

mod common;

use common::entries;
use common::fake_registry::{self, Gauge, Pace, PacedRoute, Response};
use image_store::blob_store::sha256_digest;
use image_store::{Error, ImageStore, PullOptions};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const PLAIN: &str = "application/vnd.oci.image.layer.v1.tar";

/// A layer as served: its blob, the diff id of the tar inside, its media
/// type.
#[derive(Clone)]
struct Layer {
    blob: Vec<u8>,
    diff_id: String,
    media_type: &'static str,
}

/// `len` bytes no compressor shrinks, the same for the same seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A tar holding one file `name` with `content`.
fn tar_of(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(content.len() as u64);
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// A layer holding file `name` with `content`, compressed as `media_type`
/// says.
fn layer(name: &str, content: &[u8], media_type: &'static str) -> Layer {
    let tar = tar_of(name, content);
    let blob = match media_type {
        GZIP => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            gz.finish().unwrap()
        }
        ZSTD => zstd::encode_all(tar.as_slice(), 1).unwrap(),
        _ => tar.clone(),
    };
    Layer {
        blob,
        diff_id: sha256_digest(&tar),
        media_type,
    }
}

/// `n` gzip layers of `size` random bytes each, files `f0`, `f1`, ….
fn noisy_layers(n: usize, size: usize) -> Vec<Layer> {
    (0..n)
        .map(|i| layer(&format!("f{i}"), &noise(i as u64 + 1, size), GZIP))
        .collect()
}

/// What the fake registry serves, how each blob is paced, and how often
/// each path was asked for.
#[derive(Default)]
struct Registry {
    manifests: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
    paces: HashMap<String, Pace>,
    gets: Mutex<HashMap<String, usize>>,
}

impl Registry {
    /// Serves an image of `layers` under tag `tag`, with `diff_ids` in its
    /// config (the layers' own unless given).
    fn image(&mut self, tag: &str, layers: &[Layer], diff_ids: Option<Vec<String>>) {
        let diff_ids =
            diff_ids.unwrap_or_else(|| layers.iter().map(|l| l.diff_id.clone()).collect());
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let descriptors: Vec<_> = layers
            .iter()
            .map(|l| json!({"mediaType": l.media_type, "digest": self.blob(&l.blob), "size": l.blob.len()}))
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self.blob(&config), "size": config.len()},
            "layers": descriptors,
        }))
        .unwrap();
        self.manifests.insert(tag.to_string(), manifest);
    }

    fn blob(&mut self, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        self.blobs.insert(digest.clone(), bytes.to_vec());
        digest
    }

    /// Sends `blob` `bytes` at a time, every `every`.
    fn drip(&mut self, blob: &[u8], bytes: usize, every: Duration) {
        self.paces
            .insert(sha256_digest(blob), Pace::Drip { bytes, every });
    }

    /// Times blob `blob` was asked for.
    fn gets(&self, blob: &[u8]) -> usize {
        let path = format!("/blobs/{}", sha256_digest(blob));
        let gets = self.gets.lock().unwrap();
        gets.iter()
            .filter(|(p, _)| p.ends_with(&path))
            .map(|(_, n)| n)
            .sum()
    }

    fn answer(&self, path: &str) -> (Response, Pace) {
        *self
            .gets
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default() += 1;
        let not_found = (
            404,
            vec![],
            br#"{"errors":[{"code":"NOT_FOUND"}]}"#.to_vec(),
        );
        if path == "/v2/" {
            return ((200, vec![], vec![]), Pace::Whole);
        }
        if let Some((_, tag)) = path.split_once("/manifests/") {
            let manifest = self.manifests.get(tag).cloned();
            let media_type = (
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".into(),
            );
            return match manifest {
                Some(m) => ((200, vec![media_type], m), Pace::Whole),
                None => (not_found, Pace::Whole),
            };
        }
        let digest = path.rsplit('/').next().unwrap_or_default();
        match self.blobs.get(digest) {
            Some(blob) => {
                let pace = self.paces.get(digest).copied().unwrap_or(Pace::Whole);
                ((200, vec![], blob.clone()), pace)
            }
            None => (not_found, Pace::Whole),
        }
    }
}

/// Starts the fake registry on `registry` (counting blob requests in
/// progress in `gauge`); returns its address.
async fn serve(registry: Arc<Registry>, gauge: Arc<Gauge>) -> String {
    let route: PacedRoute = Arc::new(move |path: &str| registry.answer(path));
    fake_registry::serve_gauged(route, gauge).await
}

/// A fresh store reaching `address`, pulling `downloads` layers at once.
async fn store(address: &str, downloads: usize) -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let options = PullOptions::default()
        .with_max_concurrent_downloads(downloads)
        .unwrap();
    let store = ImageStore::open_with(
        dir.path().join("store"),
        fake_registry::insecure(address),
        options,
    )
    .await
    .unwrap();
    (dir, store)
}

/// Asserts a failed pull left no layer, record, temporary file or staging
/// directory (verified manifests and configs may stay until the next
/// open; a failed pull's never get there).
fn assert_nothing_left(root: &Path) {
    for sub in ["tmp", "layers", "images"] {
        assert_eq!(entries(&root.join(sub)), Vec::<String>::new(), "{sub}");
    }
}

/// Waits (at most 10 s) for `dir` to hold something.
async fn until_not_empty(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while entries(dir).is_empty() {
        assert!(Instant::now() < deadline, "{} stayed empty", dir.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn layers_download_in_parallel_never_past_the_limit() {
    let layers = noisy_layers(6, 256 << 10);
    for limit in [3, 1] {
        let mut registry = Registry::default();
        registry.image("six", &layers, None);
        for l in &layers {
            // 256 KiB in 160 ms: long enough for downloads to overlap.
            registry.drip(&l.blob, 32 << 10, Duration::from_millis(20));
        }
        let gauge = Arc::new(Gauge::default());
        let address = serve(Arc::new(registry), Arc::clone(&gauge)).await;
        let (dir, store) = store(&address, limit).await;
        let image = store
            .pull(&format!("{address}/p/six:six"), None)
            .await
            .unwrap();
        let peak = gauge.peak();
        eprintln!("limit {limit}: at most {peak} blob requests at once");
        assert!(peak <= limit, "limit {limit}, {peak} at once");
        if limit > 1 {
            assert!(peak >= 2, "limit {limit}, never more than one at once");
        }
        assert_eq!(entries(&dir.path().join("store/layers")).len(), 6);
        assert!(entries(&dir.path().join("store/tmp")).is_empty());
        let rootfs = store.create_rootfs(&image.id, "c", true).await.unwrap();
        for (i, l) in layers.iter().enumerate() {
            let content = std::fs::read(rootfs.path.join(format!("f{i}"))).unwrap();
            assert_eq!(
                sha256_digest(&tar_of(&format!("f{i}"), &content)),
                l.diff_id
            );
        }
        store.remove_rootfs("c").await.unwrap();
    }
}

#[tokio::test]
async fn gzip_zstd_and_plain_layers_unpack_while_they_stream() {
    let layers = [
        layer("gz", &noise(1, 100_000), GZIP),
        layer("zst", &noise(2, 100_000), ZSTD),
        layer("plain", &noise(3, 100_000), PLAIN),
    ];
    let mut registry = Registry::default();
    registry.image("mixed", &layers, None);
    for l in &layers {
        registry.drip(&l.blob, 4096, Duration::from_millis(1));
    }
    let address = serve(Arc::new(registry), Arc::default()).await;
    let (dir, store) = store(&address, 3).await;
    let image = store
        .pull(&format!("{address}/p/mixed:mixed"), None)
        .await
        .unwrap();
    let rootfs = store.create_rootfs(&image.id, "c", true).await.unwrap();
    for (name, seed) in [("gz", 1), ("zst", 2), ("plain", 3)] {
        assert_eq!(
            std::fs::read(rootfs.path.join(name)).unwrap(),
            noise(seed, 100_000)
        );
    }
    store.remove_rootfs("c").await.unwrap();
    // Layer blobs are not kept: only the manifest and the config.
    assert_eq!(entries(&dir.path().join("store/blobs/sha256")).len(), 2);
}

// A blob whose bytes are a valid layer of the right size, but not the one
// its digest names: found only at the end of the stream, after it was
// unpacked, and refused before it is committed.
#[tokio::test]
async fn a_blob_that_is_not_its_digest_leaves_nothing() {
    let good = layer("a", &noise(1, 200_000), PLAIN);
    let evil = layer("a", &noise(2, 200_000), PLAIN);
    assert_eq!(good.blob.len(), evil.blob.len());
    let mut registry = Registry::default();
    registry.image("liar", std::slice::from_ref(&good), None);
    registry
        .blobs
        .insert(sha256_digest(&good.blob), evil.blob.clone());
    let address = serve(Arc::new(registry), Arc::default()).await;
    let (dir, store) = store(&address, 3).await;
    let image = format!("{address}/p/liar:liar");
    let err = store.pull(&image, None).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Registry { .. }), "{text}");
    assert!(
        text.contains(&image) && text.contains("digest mismatch"),
        "{text}"
    );
    assert!(store.list().is_empty());
    assert_nothing_left(&dir.path().join("store"));
}

#[tokio::test]
async fn a_layer_that_is_not_its_diff_id_leaves_nothing_whatever_its_compression() {
    for media_type in [GZIP, ZSTD, PLAIN] {
        let l = layer("a", &noise(1, 200_000), media_type);
        let other = layer("a", &noise(2, 200_000), PLAIN);
        let mut registry = Registry::default();
        registry.image("wrong", std::slice::from_ref(&l), Some(vec![other.diff_id]));
        let address = serve(Arc::new(registry), Arc::default()).await;
        let (dir, store) = store(&address, 3).await;
        let err = store
            .pull(&format!("{address}/p/wrong:wrong"), None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("wrong diff id"),
            "{media_type}: {err}"
        );
        assert_nothing_left(&dir.path().join("store"));
    }
}

// The pull's task is dropped mid-layer (its runtime shut down, as at the
// daemon's exit): the layer's job sees its stream end without its end
// marker and removes its staging directory.
#[test]
fn a_pull_dropped_mid_layer_leaves_nothing() {
    let layers = noisy_layers(2, 4 << 20);
    let mut registry = Registry::default();
    registry.image("slow", &layers, None);
    for l in &layers {
        // 4 MiB in about 6 s.
        registry.drip(&l.blob, 32 << 10, Duration::from_millis(50));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (dir, store) = runtime.block_on(async {
        let address = serve(Arc::new(registry), Arc::default()).await;
        let (dir, store) = store(&address, 3).await;
        let pulling = store.clone();
        let image = format!("{address}/p/slow:slow");
        tokio::spawn(async move { pulling.pull(&image, None).await });
        let tmp = dir.path().join("store/tmp");
        until_not_empty(&tmp).await;
        // Some of each layer is unpacked by now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!entries(&tmp).is_empty());
        (dir, store)
    });
    drop(runtime);
    drop(store);
    let root = dir.path().join("store");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !entries(&root.join("tmp")).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_nothing_left(&root);
}

// Two images sharing their bottom layer, pulled at once: the shared layer
// is downloaded once, the other waiting for it.
#[tokio::test]
async fn concurrent_pulls_share_a_layer_in_flight() {
    let layers = noisy_layers(3, 512 << 10);
    let mut registry = Registry::default();
    registry.image("a", &layers[..2], None);
    registry.image("b", &[layers[0].clone(), layers[2].clone()], None);
    registry.drip(&layers[0].blob, 32 << 10, Duration::from_millis(20));
    let registry = Arc::new(registry);
    let address = serve(Arc::clone(&registry), Arc::default()).await;
    let (dir, store) = store(&address, 3).await;
    let pulls: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|tag| {
            let (store, image) = (store.clone(), format!("{address}/p/{tag}:{tag}"));
            tokio::spawn(async move { store.pull(&image, None).await })
        })
        .collect();
    for pull in pulls {
        pull.await.unwrap().unwrap();
    }
    assert_eq!(registry.gets(&layers[0].blob), 1, "the shared layer once");
    assert_eq!(registry.gets(&layers[1].blob), 1);
    assert_eq!(registry.gets(&layers[2].blob), 1);
    // Bottom layer, a's top, b's top.
    assert_eq!(entries(&dir.path().join("store/layers")).len(), 3);
    assert!(entries(&dir.path().join("store/tmp")).is_empty());
}

// The pull that leads a shared layer fails it (its blob arrives damaged):
// the one that waited for it fetches the layer itself.
#[tokio::test]
async fn a_shared_layer_that_fails_is_fetched_again_by_the_waiting_pull() {
    let layers = noisy_layers(3, 256 << 10);
    let mut registry = Registry::default();
    registry.image("a", &layers[..2], None);
    registry.image("b", &[layers[0].clone(), layers[2].clone()], None);
    let registry = Arc::new(registry);
    let shared = sha256_digest(&layers[0].blob);
    let served = Arc::new(AtomicUsize::new(0));
    let route: PacedRoute = {
        let (registry, served) = (Arc::clone(&registry), Arc::clone(&served));
        Arc::new(move |path: &str| {
            let ((status, headers, body), _) = registry.answer(path);
            if !path.ends_with(&shared) {
                return ((status, headers, body), Pace::Whole);
            }
            let drip = Pace::Drip {
                bytes: 32 << 10,
                every: Duration::from_millis(40),
            };
            if served.fetch_add(1, Ordering::SeqCst) > 0 {
                return ((status, headers, body), drip);
            }
            // The first answer: the right size, the wrong bytes.
            let damaged = noise(99, body.len());
            ((status, headers, damaged), drip)
        })
    };
    let address = fake_registry::serve_paced(route).await;
    let (dir, store) = store(&address, 3).await;
    let pulls: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|tag| {
            let (store, image) = (store.clone(), format!("{address}/p/{tag}:{tag}"));
            tokio::spawn(async move { store.pull(&image, None).await })
        })
        .collect();
    let mut results = Vec::new();
    for pull in pulls {
        results.push(pull.await.unwrap());
    }
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert!(
        failed[0].to_string().contains("digest mismatch"),
        "{}",
        failed[0]
    );
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "the waiting pull fetched it again"
    );
    assert_eq!(store.list().len(), 1);
    assert!(entries(&dir.path().join("store/tmp")).is_empty());
}

#[tokio::test]
async fn layers_present_are_not_requested_again_even_after_a_restart() {
    let layers = noisy_layers(4, 64 << 10);
    let mut registry = Registry::default();
    registry.image("base", &layers[..2], None);
    registry.image("more", &layers[..3], None);
    registry.image("other", &[&layers[..2], &layers[3..]].concat(), None);
    let registry = Arc::new(registry);
    let address = serve(Arc::clone(&registry), Arc::default()).await;
    let (dir, store) = store(&address, 3).await;
    store
        .pull(&format!("{address}/p/base:base"), None)
        .await
        .unwrap();
    // The records say which blobs made the layers: a new process knows.
    drop(store);
    let root = dir.path().join("store");
    let store = ImageStore::open(&root, fake_registry::insecure(&address))
        .await
        .unwrap();
    store
        .pull(&format!("{address}/p/more:more"), None)
        .await
        .unwrap();
    let fetched = store.bytes_pulled();
    store
        .pull(&format!("{address}/p/other:other"), None)
        .await
        .unwrap();
    let fetched_other = store.bytes_pulled() - fetched;
    for l in &layers {
        assert_eq!(registry.gets(&l.blob), 1);
    }
    for (bytes, top) in [(fetched, &layers[2]), (fetched_other, &layers[3])] {
        let top = top.blob.len() as u64;
        // The new layer, a manifest and a config.
        assert!(bytes >= top && bytes < top + 4096, "{bytes}");
    }
}

// A full disk part-way through several layers in flight: a typed error,
// every staging directory removed, no record.
#[tokio::test]
async fn a_full_disk_mid_pull_fails_cleanly_with_every_layer_stopped() {
    let layers = noisy_layers(4, 512 << 10);
    let mut registry = Registry::default();
    registry.image("big", &layers, None);
    for l in &layers {
        registry.drip(&l.blob, 64 << 10, Duration::from_millis(5));
    }
    let address = serve(Arc::new(registry), Arc::default()).await;
    let dir = tempfile::tempdir().unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        dir.path(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1200k"),
    )
    .unwrap();
    let _unmount = Unmount(dir.path().to_path_buf());
    let root = dir.path().join("store");
    let store = ImageStore::open(&root, fake_registry::insecure(&address))
        .await
        .unwrap();
    let image = format!("{address}/p/big:big");
    let err = store.pull(&image, None).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::NoSpace { .. }), "{text}");
    assert!(
        text.contains(&image) && text.contains("No space left on device"),
        "{text}"
    );
    assert!(store.list().is_empty());
    assert_eq!(entries(&root.join("tmp")), Vec::<String>::new());
    assert_eq!(entries(&root.join("images")), Vec::<String>::new());
}

/// Unmounts a test's tmpfs when the test ends, pass or fail.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}
