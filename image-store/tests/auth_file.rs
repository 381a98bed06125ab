//! The node's auth file (issue #19): credentials stored per registry host
//! or per repository (the longest key wins), looked up by the endpoint
//! actually asked (a mirror by its own location), with CRI's AuthConfig
//! first for the image's own registry; no secret in a log line, an error
//! or a `Debug` output.

mod common;

use common::auth_registry::TokenRegistry;
use image_store::{AuthFile, Credentials, Error, ImageStore, Registries};
use image_store::{RegistriesConfig, RegistryConfig};
use std::io::Write;
use std::sync::{Arc, Mutex};

const REFRESH: &str = "refresh-s3cret-token";
const WRONG: &str = "wrong-s3cret-token";

/// `{"auths": {key: {"identitytoken": token}, …}}`.
fn auth_file(entries: &[(&str, &str)]) -> AuthFile {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(key, token)| (key.to_string(), serde_json::json!({"identitytoken": token})))
        .collect();
    let text = serde_json::json!({ "auths": auths }).to_string();
    AuthFile::parse("/etc/cri-server/auth.json", text.as_bytes())
        .unwrap()
        .file
}

/// `registry.example` mirrored to `mirror` only, with `file`.
fn mirrored(mirror: &str, file: AuthFile) -> Registries {
    RegistriesConfig {
        registries: vec![RegistryConfig {
            prefix: "registry.example".into(),
            mirrors: vec![mirror.into()],
            insecure: true,
            mirrors_only: true,
            ..Default::default()
        }],
    }
    .load()
    .unwrap()
    .with_auth_file(file)
}

/// The registry itself, over plain HTTP, with `file`.
fn direct(address: &str, file: AuthFile) -> Registries {
    common::fake_registry::insecure(address).with_auth_file(file)
}

async fn pull(
    registries: Registries,
    image: &str,
    creds: Option<Credentials>,
) -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("s"), registries)
        .await
        .unwrap();
    store.pull(image, creds).await.map(drop)
}

fn identity(token: &str) -> Option<Credentials> {
    Some(Credentials {
        identity_token: token.into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn a_host_key_gives_credentials_to_every_repository_on_it() {
    let registry = TokenRegistry::start(REFRESH).await;
    let address = registry.address();
    let image = format!("{address}/private/tiny:1");
    let file = auth_file(&[(address, REFRESH)]);
    pull(direct(address, file), &image, None).await.unwrap();
    let file = auth_file(&[(&format!("https://{address}/v1/"), REFRESH)]);
    pull(direct(address, file), &image, None).await.unwrap();
    let err = pull(direct(address, AuthFile::default()), &image, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn the_longest_repository_key_wins() {
    let registry = TokenRegistry::start(REFRESH).await;
    let address = registry.address();
    let image = format!("{address}/private/tiny:1");
    let repo_key = format!("{address}/private/tiny");
    let file = auth_file(&[(address, WRONG), (&repo_key, REFRESH)]);
    pull(direct(address, file), &image, None).await.unwrap();
    let namespace_key = format!("{address}/private");
    let file = auth_file(&[(&namespace_key, WRONG), (address, REFRESH)]);
    let err = pull(direct(address, file), &image, None).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn a_mirror_is_asked_with_its_own_key() {
    let registry = TokenRegistry::start(REFRESH).await;
    let mirror = registry.address();
    let image = "registry.example/private/tiny:1";
    let file = auth_file(&[(mirror, REFRESH), ("registry.example", WRONG)]);
    pull(mirrored(mirror, file), image, None).await.unwrap();
    // The image's registry's key is not the mirror's.
    let file = auth_file(&[("registry.example", REFRESH)]);
    let err = pull(mirrored(mirror, file), image, None).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    // Kubelet's credentials, for the image's registry, come after the
    // mirror's own key…
    let file = auth_file(&[(mirror, REFRESH)]);
    pull(mirrored(mirror, file), image, identity(WRONG))
        .await
        .unwrap();
    // …and are what a mirror without a key of its own is asked with.
    pull(
        mirrored(mirror, AuthFile::default()),
        image,
        identity(REFRESH),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn kubelets_credentials_win_for_the_images_own_registry() {
    let registry = TokenRegistry::start(REFRESH).await;
    let address = registry.address();
    let image = format!("{address}/private/tiny:1");
    let file = auth_file(&[(address, WRONG)]);
    pull(direct(address, file), &image, identity(REFRESH))
        .await
        .unwrap();
    let file = auth_file(&[(address, REFRESH)]);
    let err = pull(direct(address, file), &image, identity(WRONG))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
}

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log lines of every test in this file: a subscriber of the whole
/// process, since a thread's own (`set_default`) misses events when another
/// test's thread hit the same call site first (tracing caches a call
/// site's interest process-wide).
fn captured_logs() -> &'static Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        captured
    })
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_an_error_or_debug_output() {
    let captured = captured_logs();
    let registry = TokenRegistry::start(REFRESH).await;
    let address = registry.address();
    let image = format!("{address}/private/tiny:1");
    let password = "basic-s3cret-password";
    let text = format!(
        r#"{{"auths": {{"{address}": {{"identitytoken": "{WRONG}"}},
            "other.example": {{"username": "me", "password": "{password}"}}}}}}"#
    );
    let file = AuthFile::parse("/etc/auth.json", text.as_bytes())
        .unwrap()
        .file;
    let registries = direct(address, file);
    let registries_debug = format!("{registries:?}");
    let err = pull(registries.clone(), &image, None).await.unwrap_err();
    let creds = identity(WRONG);
    let creds_debug = format!("{creds:?}");
    let err2 = pull(registries, &image, creds).await.unwrap_err();
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("endpoint failed"), "nothing captured: {logs}");
    for shown in [
        logs,
        registries_debug,
        creds_debug,
        format!("{err} {err:?} {err2} {err2:?}"),
    ] {
        for secret in [WRONG, password] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
