//! Concurrent pulls of one reference share one download, counted at a fake
//! registry on loopback.

mod common;

use common::fake_registry::{self, tiny, tiny_registry, BLOB_GETS, MANIFEST_GETS};
use image_store::blob_store::sha256_digest;
use image_store::ImageStore;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn concurrent_pulls_share_one_download() {
    let address = fake_registry::serve(tiny_registry, None).await;
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
