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

/// `Basic base64("me:s3cret")`.
const EXPECTED: &str = "Basic bWU6czNjcmV0";

// A pull in flight is shared only by callers with the same credentials: a
// caller with the right ones is not handed the failure of a caller with
// wrong ones that started first (nor would one with none be handed an image
// fetched with someone else's).
#[tokio::test]
async fn pulls_with_other_credentials_are_not_shared() {
    use image_store::Credentials;
    let route = std::sync::Arc::new(|path: &str, _: &str| fake_registry::tiny_response(path));
    let address = fake_registry::serve_route(route, Some(EXPECTED)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("s"), fake_registry::insecure(&address))
        .await
        .unwrap();
    let reference = format!("{address}/private/tiny:1");
    let creds = |password: &str| Credentials {
        username: "me".into(),
        password: password.into(),
        ..Default::default()
    };
    let wrong = {
        let (store, reference) = (store.clone(), reference.clone());
        let creds = creds("guess");
        tokio::spawn(async move { store.pull(&reference, Some(creds)).await })
    };
    // Started while the first is in flight (every answer takes 100 ms).
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let right = store.pull(&reference, Some(creds("s3cret"))).await;
    let wrong = wrong.await.unwrap();
    assert!(wrong.is_err(), "the wrong password must fail");
    let image = right.unwrap_or_else(|e| panic!("the right password must pull: {e}"));
    assert_eq!(image.id, sha256_digest(&tiny().config));
}
