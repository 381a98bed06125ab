//! Choosing from a multi-platform index: the host's platform, then the
//! configured fallbacks; when nothing fits, an error listing what the index
//! offers, with no layer fetched. A tiny in-test registry on loopback
//! serves an index whose entries all point at one small image.

mod common;

use common::fake_registry::{self, Response};
use image_store::platform::Platform;
use image_store::{Error, ImageStore, PullOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static BLOB_GETS: AtomicUsize = AtomicUsize::new(0);

/// An index of s390x and ppc64le entries, both the tiny image.
fn index() -> &'static Vec<u8> {
    static INDEX: OnceLock<Vec<u8>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let manifest = &fake_registry::tiny().manifest;
        let entry = |arch: &str| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": image_store::blob_store::sha256_digest(manifest),
                "size": manifest.len(),
                "platform": {"os": "linux", "architecture": arch},
            })
        };
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [entry("s390x"), entry("ppc64le")],
        }))
        .unwrap()
    })
}

/// The index for the tag, the tiny image by digest.
fn route(path: &str) -> Response {
    if path.ends_with("/manifests/latest") {
        let media = "application/vnd.oci.image.index.v1+json".to_string();
        return (200, vec![("Content-Type", media)], index().clone());
    }
    if path.contains("/blobs/") {
        BLOB_GETS.fetch_add(1, Ordering::SeqCst);
    }
    fake_registry::tiny_response(path)
}

async fn store(address: &str, options: PullOptions) -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open_with(dir.path(), fake_registry::insecure(address), options)
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn nothing_for_this_host_names_what_the_index_offers_and_fetches_no_layer() {
    let address = fake_registry::serve(route, None).await;
    let (_dir, store) = store(&address, PullOptions::default()).await;
    let before = BLOB_GETS.load(Ordering::SeqCst);
    let err = store
        .pull(&format!("{address}/multi:latest"), None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Refused { .. }), "{text}");
    assert!(text.contains(&Platform::host().to_string()), "{text}");
    assert!(text.contains("linux/ppc64le, linux/s390x"), "{text}");
    assert_eq!(
        BLOB_GETS.load(Ordering::SeqCst),
        before,
        "a layer was fetched"
    );
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn a_configured_fallback_is_taken_in_order() {
    let address = fake_registry::serve(route, None).await;
    let fallbacks = vec![
        "linux/riscv64".parse().unwrap(),
        "linux/ppc64le".parse().unwrap(),
    ];
    let options = PullOptions::default().with_platform_fallbacks(fallbacks);
    let (_dir, store) = store(&address, options).await;
    let image = store
        .pull(&format!("{address}/multi:latest"), None)
        .await
        .unwrap();
    assert_eq!(image.repo_tags, [format!("{address}/multi:latest")]);
}
