//! `distribution::RegistryClient`, the pull's bounded client as other
//! crates use it: manifests and blobs read under the caller's cap (a
//! declared size over it refused before the body), "over the limit" and
//! "not found" told apart from other failures, credentials answered on
//! challenge and kept, references checked, stalls detected. A fake
//! registry on loopback answers.
//!
//! Bodies that never end (no `Content-Length`) are covered end to end by
//! image-signature's `tests/hostile_registry.rs`.

mod common;

use common::fake_registry::{self, tiny, tiny_registry, Pace, PacedRoute, Response};
use image_store::check::RegistryAuth;
use image_store::digest::Digest;
use image_store::distribution::{FetchError, RegistryClient};
use image_store::{oci, Endpoint, PullOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn endpoint(address: &str, repository: &str) -> Endpoint {
    Endpoint {
        host: address.into(),
        repository: repository.into(),
        insecure: true,
        ..Default::default()
    }
}

fn client(address: &str, auth: RegistryAuth) -> RegistryClient {
    RegistryClient::new(&endpoint(address, "app"), auth, &PullOptions::default()).unwrap()
}

fn digest_of(bytes: &[u8]) -> Digest {
    image_store::blob_store::sha256_digest(bytes)
        .parse()
        .unwrap()
}

#[tokio::test]
async fn manifests_and_blobs_are_read_within_their_caps() {
    let address = fake_registry::serve(tiny_registry, None).await;
    let client = client(&address, RegistryAuth::Anonymous);
    let image = tiny();
    let size = image.manifest.len() as u64;
    let manifest = client
        .fetch_manifest("latest", &[oci::OCI_MANIFEST], size)
        .await
        .unwrap();
    assert_eq!(manifest.bytes, image.manifest);
    assert_eq!(manifest.media_type.as_deref(), Some(oci::OCI_MANIFEST));
    // One byte under: refused from the Content-Length, saying both sizes.
    let err = client
        .fetch_manifest("latest", &[oci::OCI_MANIFEST], size - 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::TooLarge { limit, declared: Some(d), .. }
            if *limit == size - 1 && *d == size),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with(&format!("{size} bytes, more than {}", size - 1)),
        "{err}"
    );
    let layer = digest_of(&image.layer);
    let blob = client
        .fetch_blob(&layer, image.layer.len() as u64)
        .await
        .unwrap();
    assert_eq!(blob, image.layer);
    let err = client.fetch_blob(&layer, 10).await.unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 10, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn not_found_is_told_from_other_failures() {
    fn route(path: &str) -> Response {
        if path.contains("/manifests/missing") {
            let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
            (404, vec![], body.to_vec())
        } else {
            (503, vec![], b"down for maintenance".to_vec())
        }
    }
    let address = fake_registry::serve(route, None).await;
    let client = client(&address, RegistryAuth::Anonymous);
    let missing = client
        .fetch_manifest("missing", &[oci::OCI_MANIFEST], 1024)
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(
        matches!(&missing, FetchError::Status { status: 404, codes, .. } if codes == &["MANIFEST_UNKNOWN"])
    );
    let down = client
        .fetch_manifest("v1", &[oci::OCI_MANIFEST], 1024)
        .await
        .unwrap_err();
    assert!(!down.is_not_found(), "{down}");
    assert!(
        down.to_string()
            .ends_with("status 503: down for maintenance"),
        "{down}"
    );
}

#[tokio::test]
async fn credentials_answer_the_challenge_and_are_kept() {
    let address = fake_registry::serve(tiny_registry, Some("Basic bWU6czNjcmV0")).await;
    let anonymous = client(&address, RegistryAuth::Anonymous);
    let err = anonymous
        .fetch_manifest("latest", &[oci::OCI_MANIFEST], 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized { .. }), "{err}");
    let client = client(
        &address,
        RegistryAuth::Basic {
            username: "me".into(),
            password: "s3cret".into(),
        },
    );
    client
        .fetch_manifest("latest", &[oci::OCI_MANIFEST], 1 << 20)
        .await
        .unwrap();
    let config = &tiny().config;
    let blob = client
        .fetch_blob(&digest_of(config), 1 << 20)
        .await
        .unwrap();
    assert_eq!(&blob, config);
}

#[tokio::test]
async fn references_outside_the_grammar_are_not_requested() {
    // Nothing listens on port 1: a request would fail as Transport.
    let client = client("127.0.0.1:1", RegistryAuth::Anonymous);
    for bad in ["../../v2/other/manifests/x", "a?b", "", "-x", "sha256:zz"] {
        let err = client
            .fetch_manifest(bad, &[oci::OCI_MANIFEST], 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::BadReference { reference } if reference == bad),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn a_dripping_answer_stalls_within_the_window() {
    let route: PacedRoute = Arc::new(|_| {
        let drip = Pace::Drip {
            bytes: 1,
            every: Duration::from_millis(100),
        };
        ((200, vec![], vec![b' '; 4096]), drip)
    });
    let address = fake_registry::serve_paced(route).await;
    let window = Duration::from_secs(1);
    let options = PullOptions::default().with_stall_timeout(window).unwrap();
    let client = RegistryClient::new(
        &endpoint(&address, "app"),
        RegistryAuth::Anonymous,
        &options,
    )
    .unwrap();
    let start = Instant::now();
    let err = client
        .fetch_manifest("latest", &[oci::OCI_MANIFEST], 1 << 20)
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(&err, FetchError::Stalled { object, window: w, .. }
            if object.ends_with("/v2/app/manifests/latest") && *w == window),
        "{err}"
    );
    assert!(took >= window && took < Duration::from_secs(5), "{took:?}");
}
