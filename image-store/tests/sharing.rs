//! Concurrent pulls of one reference share one download, counted at a fake
//! registry on loopback.

mod common;

use common::fake_registry::{self, Response};
use image_store::blob_store::sha256_digest;
use image_store::ImageStore;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static MANIFEST_GETS: AtomicUsize = AtomicUsize::new(0);
static BLOB_GETS: AtomicUsize = AtomicUsize::new(0);

struct Tiny {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

fn tiny() -> &'static Tiny {
    static TINY: OnceLock<Tiny> = OnceLock::new();
    TINY.get_or_init(|| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(3);
        b.append_data(&mut h, "hi", b"hi\n".as_slice()).unwrap();
        let layer = b.into_inner().unwrap();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer)]},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256_digest(&layer), "size": layer.len()}],
        }))
        .unwrap();
        Tiny {
            manifest,
            config,
            layer,
        }
    })
}

fn counting_registry(path: &str) -> Response {
    let t = tiny();
    if path == "/v2/" {
        return (200, vec![], vec![]);
    }
    if path.contains("/manifests/") {
        MANIFEST_GETS.fetch_add(1, Ordering::SeqCst);
        return (
            200,
            vec![(
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            t.manifest.clone(),
        );
    }
    BLOB_GETS.fetch_add(1, Ordering::SeqCst);
    if path.ends_with(&sha256_digest(&t.config)) {
        (200, vec![], t.config.clone())
    } else if path.ends_with(&sha256_digest(&t.layer)) {
        (200, vec![], t.layer.clone())
    } else {
        (404, vec![], vec![])
    }
}

#[tokio::test]
async fn concurrent_pulls_share_one_download() {
    let address = fake_registry::serve(counting_registry).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("s"), fake_registry::insecure(&address))
        .await
        .unwrap();
    let reference = format!("{address}/tiny:latest");
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let (store, reference) = (store.clone(), reference.clone());
            tokio::spawn(async move { store.pull(&reference, None).await })
        })
        .collect();
    let mut ids = Vec::new();
    for p in pulls {
        ids.push(p.await.unwrap().unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids, [sha256_digest(&tiny().config)]);
    assert_eq!(
        MANIFEST_GETS.load(Ordering::SeqCst),
        1,
        "one manifest fetch"
    );
    assert_eq!(
        BLOB_GETS.load(Ordering::SeqCst),
        2,
        "config and layer, once each"
    );
    let rootfs = store.create_rootfs(&ids[0], "c", true).await.unwrap();
    assert_eq!(std::fs::read(rootfs.path.join("hi")).unwrap(), b"hi\n");
    store.remove_rootfs("c").await.unwrap();
}
