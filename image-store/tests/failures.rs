//! Bad input: every failure names the image and the cause and leaves nothing
//! half-written. Needs `cargo xtask fixtures` for the registry-backed cases;
//! digest mismatch and 401 use a tiny in-test HTTP server on loopback.

mod common;

use common::fake_registry;

use common::*;
use image_store::{Error, ImageStore};

fn assert_nothing_left(root: &std::path::Path) {
    for sub in ["tmp", "layers", "images", "blobs/sha256"] {
        let left = entries(&root.join(sub));
        // Manifests and configs that verified may stay until the next open's
        // collection; unpacked layers, records and temporaries may not.
        if sub != "blobs/sha256" {
            assert!(left.is_empty(), "{sub}: {left:?}");
        }
    }
}

#[tokio::test]
async fn malformed_reference_is_named() {
    let (_dir, store) = store().await;
    let err = store.pull("UPPER/case:tag", None).await.unwrap_err();
    assert!(matches!(err, Error::Reference(_)), "{err}");
    assert!(err.to_string().contains("UPPER/case:tag"), "{err}");
}

#[tokio::test]
async fn missing_image_is_a_404_naming_the_image_and_endpoint() {
    let (dir, store) = store().await;
    let err = store
        .pull("127.0.0.1:5000/does-not-exist:latest", None)
        .await
        .unwrap_err();
    let text = err.to_string();
    eprintln!("error as reported: {text}");
    assert!(matches!(err, Error::Registry { .. }), "{text}");
    assert!(
        text.contains("127.0.0.1:5000/does-not-exist:latest"),
        "{text}"
    );
    assert!(
        text.contains("http://127.0.0.1:5000/does-not-exist"),
        "{text}"
    );
    assert_nothing_left(&dir.path().join("store"));
}

#[tokio::test]
async fn unknown_registry_is_a_connection_error() {
    let (dir, store) = store().await;
    let err = store
        .pull("127.0.0.1:1/nothing:latest", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert_nothing_left(&dir.path().join("store"));
}

#[tokio::test]
async fn truncated_and_corrupt_layers_fail_cleanly() {
    for image in [TRUNCATED, CORRUPT] {
        let (dir, store) = store().await;
        let err = store.pull(image, None).await.unwrap_err();
        assert!(matches!(err, Error::Unpack { .. }), "{image}: {err}");
        assert!(err.to_string().contains(image), "{err}");
        assert!(store.list().is_empty());
        assert_nothing_left(&dir.path().join("store"));
    }
}

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

fn lying_registry(path: &str) -> fake_registry::Response {
    let config_digest = image_store::blob_store::sha256_digest(CONFIG);
    if path == "/v2/" {
        return (200, vec![], vec![]);
    }
    if path.contains("/manifests/") {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": CONFIG.len()},
            "layers": [],
        });
        return (
            200,
            vec![(
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            serde_json::to_vec(&manifest).unwrap(),
        );
    }
    // Every blob comes back as something else than was asked for.
    (200, vec![], b"not the config you are looking for".to_vec())
}

#[tokio::test]
async fn digest_mismatch_is_refused() {
    let address = fake_registry::serve(lying_registry, None).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = ImageStore::open(&root, fake_registry::insecure(&address))
        .await
        .unwrap();
    let image = format!("{address}/liar:latest");
    let err = store.pull(&image, None).await.unwrap_err();
    let text = err.to_string();
    eprintln!("error as reported: {text}");
    assert!(text.contains(&image), "{text}");
    assert!(text.to_lowercase().contains("digest"), "{text}");
    assert!(store.list().is_empty());
    let config = image_store::blob_store::sha256_digest(CONFIG);
    assert!(!root.join("blobs/sha256").join(&config[7..]).exists());
    assert_nothing_left(&root);
}

fn locked_registry(_path: &str) -> fake_registry::Response {
    (
        401,
        vec![("WWW-Authenticate", "Basic realm=\"fixtures\"".into())],
        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
    )
}

#[tokio::test]
async fn unauthorized_is_reported() {
    let address = fake_registry::serve(locked_registry, None).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("s"), fake_registry::insecure(&address))
        .await
        .unwrap();
    let image = format!("{address}/private:latest");
    let creds = image_store::Credentials {
        username: "me".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = store.pull(&image, Some(creds)).await.unwrap_err();
    let text = err.to_string();
    eprintln!("error as reported: {text}");
    assert!(matches!(err, Error::Unauthorized { .. }), "{text}");
    assert!(!text.contains("wrong"), "the password leaked: {text}");
    assert!(text.contains(&image), "{text}");
    assert!(
        text.to_lowercase().contains("auth") || text.contains("401"),
        "{text}"
    );
}

/// Unmounts the tmpfs when the test ends, pass or fail.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn full_disk_fails_cleanly() {
    require_registry();
    // The layer is unpacked as it downloads (its blob is not kept): 600k
    // fills up early in it, 1500k late.
    for size in ["600k", "1500k"] {
        let dir = tempfile::tempdir().unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .unwrap();
        let _guard = Tmpfs(dir.path().to_path_buf());
        let root = dir.path().join("store");
        let store = ImageStore::open(&root, registries()).await.unwrap();
        let err = store.pull(BUSYBOX, None).await.unwrap_err();
        let text = err.to_string();
        eprintln!("error as reported: {text}");
        assert!(matches!(err, Error::NoSpace { .. }), "{size}: {text}");
        assert!(text.contains("No space left on device"), "{size}: {text}");
        assert!(text.contains(BUSYBOX), "{size}: {text}");
        // Local failures stop at the mirror: no attempt on registry.k8s.io.
        assert!(!text.contains("https://registry.k8s.io"), "{size}: {text}");
        assert!(store.list().is_empty());
        assert_nothing_left(&root);
    }
}
