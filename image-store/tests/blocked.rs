//! Blocked registries (issue #19, CRI-O's registries.conf `blocked`): an
//! image under a blocked prefix is refused before any connection, and a
//! mirror at a blocked location is skipped.

mod common;

use common::auth_registry::{serve_http, tiny_handler};
use image_store::{Error, ImageStore, RegistriesConfig, RegistryConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// A loopback listener that counts the connections it is offered (and
/// drops them).
async fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (address, count)
}

fn entry(prefix: &str, mirrors: &[&str], blocked: bool) -> RegistryConfig {
    RegistryConfig {
        prefix: prefix.into(),
        mirrors: mirrors.iter().map(|m| m.to_string()).collect(),
        insecure: true,
        mirrors_only: !mirrors.is_empty(),
        blocked,
        ..Default::default()
    }
}

async fn store(entries: Vec<RegistryConfig>) -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let registries = RegistriesConfig {
        registries: entries,
    }
    .load()
    .unwrap();
    let store = ImageStore::open(dir.path().join("s"), registries)
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_blocked_image_is_refused_without_a_connection() {
    let (address, connections) = counting_listener().await;
    let (_dir, store) = store(vec![
        entry(&address, &[], true),
        entry("registry.example", &[&address], false),
    ])
    .await;
    let image = format!("{address}/team/app:1");
    let err = store.pull(&image, None).await.unwrap_err();
    assert!(matches!(err, Error::Blocked { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&image), "{text}");
    assert!(
        text.contains(&format!("prefix {address:?} is blocked")),
        "{text}"
    );
    // Its mirror location is skipped as well: nothing else to try.
    let err = store
        .pull("registry.example/app:1", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Blocked { .. }), "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a connection arrived"
    );
}

#[tokio::test]
async fn a_blocked_mirror_is_skipped_for_the_next() {
    let (blocked, connections) = counting_listener().await;
    let good = serve_http(tiny_handler()).await;
    let (_dir, store) = store(vec![
        entry(&blocked, &[], true),
        entry("registry.example", &[&blocked, &good], false),
    ])
    .await;
    store
        .pull("registry.example/team/tiny:1", None)
        .await
        .unwrap();
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a connection arrived"
    );
}

#[tokio::test]
async fn a_longer_unblocked_prefix_lets_its_images_through() {
    let good = serve_http(tiny_handler()).await;
    let (_dir, store) = store(vec![
        entry(&good, &[], true),
        entry(&format!("{good}/allowed"), &[], false),
    ])
    .await;
    store
        .pull(&format!("{good}/allowed/tiny:1"), None)
        .await
        .unwrap();
    let err = store
        .pull(&format!("{good}/other/tiny:1"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Blocked { .. }), "{err}");
}
