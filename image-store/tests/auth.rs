//! Credentials from CRI's AuthConfig reach the registry: a fake registry on
//! loopback that demands HTTP Basic authentication.

mod common;

use base64::Engine;
use common::fake_registry::{self, tiny, tiny_registry};
use image_store::blob_store::sha256_digest;
use image_store::{Credentials, Error, ImageStore};

/// `Basic base64("me:s3cret")`.
const EXPECTED: &str = "Basic bWU6czNjcmV0";

async fn locked_store() -> (tempfile::TempDir, ImageStore, String) {
    let address = fake_registry::serve(tiny_registry, Some(EXPECTED)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("s"), fake_registry::insecure(&address))
        .await
        .unwrap();
    (dir, store, format!("{address}/private/tiny:1"))
}

#[tokio::test]
async fn username_and_password_are_sent() {
    let (_dir, store, image) = locked_store().await;
    let creds = Credentials {
        username: "me".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let pulled = store.pull(&image, Some(creds)).await.unwrap();
    assert_eq!(pulled.id, sha256_digest(&tiny().config));
}

#[tokio::test]
async fn the_auth_field_is_decoded() {
    let (_dir, store, image) = locked_store().await;
    let creds = Credentials {
        auth: base64::engine::general_purpose::STANDARD.encode("me:s3cret"),
        ..Default::default()
    };
    store.pull(&image, Some(creds)).await.unwrap();
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_refused() {
    let (_dir, store, image) = locked_store().await;
    let err = store.pull(&image, None).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    let wrong = Credentials {
        username: "me".into(),
        password: "guess".into(),
        ..Default::default()
    };
    let err = store.pull(&image, Some(wrong)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&image), "{text}");
    assert!(text.contains("Not authorized"), "{text}");
    assert!(store.list().is_empty());
}
