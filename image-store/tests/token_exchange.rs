//! Identity tokens (issue #19): CRI's `identity_token` is an OAuth2
//! refresh token, exchanged at the registry's token realm for an access
//! token (`POST realm`, `grant_type=refresh_token`), never sent to the
//! registry itself; a realm that refuses it, or answers garbage, fails the
//! pull with [`Error::Unauthorized`] naming the registry and not the token.

mod common;

use common::auth_registry::{TokenRegistry, ACCESS_TOKEN, SERVICE};
use common::fake_registry::{self, tiny};
use image_store::blob_store::sha256_digest;
use image_store::{Credentials, Error, ImageStore};
use std::sync::atomic::Ordering;

const REFRESH: &str = "refresh-s3cret-token";

fn identity(token: &str) -> Option<Credentials> {
    Some(Credentials {
        identity_token: token.into(),
        ..Default::default()
    })
}

async fn store_for(registry: &TokenRegistry) -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let registries = fake_registry::insecure(registry.address());
    let store = ImageStore::open(dir.path().join("s"), registries)
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn an_identity_token_is_exchanged_for_an_access_token() {
    let registry = TokenRegistry::start(REFRESH).await;
    let (_dir, store) = store_for(&registry).await;
    let image = format!("{}/private/tiny:1", registry.address());
    let pulled = store.pull(&image, identity(REFRESH)).await.unwrap();
    assert_eq!(pulled.id, sha256_digest(&tiny().config));
    assert_eq!(registry.granted.load(Ordering::SeqCst), 1, "one exchange");
    let form = registry.last_form.lock().unwrap().clone();
    let fields: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        fields,
        [
            "grant_type",
            "refresh_token",
            "service",
            "scope",
            "client_id"
        ]
    );
    assert!(form.contains(&("service".into(), SERVICE.into())));
}

#[tokio::test]
async fn a_refused_identity_token_fails_naming_the_registry_not_the_token() {
    let registry = TokenRegistry::start(REFRESH).await;
    let (_dir, store) = store_for(&registry).await;
    let image = format!("{}/private/tiny:1", registry.address());
    let wrong = "wrong-s3cret-token";
    let err = store.pull(&image, identity(wrong)).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains(registry.address()), "{shown}");
    assert!(
        shown.contains("/token: credentials refused (status 401)"),
        "{shown}"
    );
    assert!(!shown.contains(wrong), "the token leaked: {shown}");
    assert_eq!(registry.refused.load(Ordering::SeqCst), 1);
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn a_registry_token_is_sent_as_it_is_and_never_exchanged() {
    let registry = TokenRegistry::start(REFRESH).await;
    let (_dir, store) = store_for(&registry).await;
    let image = format!("{}/private/tiny:1", registry.address());
    let bearer = Credentials {
        registry_token: ACCESS_TOKEN.into(),
        ..Default::default()
    };
    store.pull(&image, Some(bearer)).await.unwrap();
    assert_eq!(registry.granted.load(Ordering::SeqCst), 0);
    assert_eq!(registry.refused.load(Ordering::SeqCst), 0);
}

/// A realm that answers `answer` instead of a token.
async fn hostile_realm(answer: (u16, &str, Vec<u8>)) -> Error {
    let registry = TokenRegistry::start(REFRESH).await;
    let (status, content_type, body) = answer;
    *registry.answer.lock().unwrap() = Some((
        status,
        vec![("Content-Type", content_type.to_string())],
        body,
    ));
    let (_dir, store) = store_for(&registry).await;
    let image = format!("{}/private/tiny:1", registry.address());
    let err = store.pull(&image, identity(REFRESH)).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    assert!(!format!("{err:?}").contains(REFRESH), "{err:?}");
    err
}

#[tokio::test]
async fn a_huge_token_answer_is_cut_at_its_cap() {
    let huge = format!(r#"{{"access_token":"{}"}}"#, "t".repeat(3 << 20));
    let err = hostile_realm((200, "application/json", huge.into_bytes())).await;
    let text = err.to_string();
    assert!(text.contains("answer larger than 1048576 bytes"), "{text}");
}

#[tokio::test]
async fn a_realm_answer_without_a_token_or_not_json_is_refused() {
    let err = hostile_realm((200, "application/json", br#"{"expires_in":300}"#.to_vec())).await;
    assert!(err.to_string().contains("answer has no token"), "{err}");
    let err = hostile_realm((200, "text/html", b"<html>login</html>".to_vec())).await;
    let text = err.to_string();
    assert!(text.contains("answer is not a token"), "{text}");
    assert!(!text.contains("login"), "{text}");
    let err = hostile_realm((500, "text/plain", b"oops".to_vec())).await;
    assert!(err.to_string().contains("status 500"), "{err}");
}

#[tokio::test]
async fn a_realm_that_is_not_http_is_never_asked() {
    for realm in [
        "file:///etc/shadow",
        "ftp://127.0.0.1:21/token",
        "unix:/run/x.sock",
    ] {
        let registry = TokenRegistry::start(REFRESH).await;
        *registry.realm.lock().unwrap() = Some(realm.to_string());
        let (_dir, store) = store_for(&registry).await;
        let image = format!("{}/private/tiny:1", registry.address());
        let err = store.pull(&image, identity(REFRESH)).await.unwrap_err();
        assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("not http or https"), "{realm}: {text}");
        assert!(registry.last_form.lock().unwrap().is_empty());
    }
}
