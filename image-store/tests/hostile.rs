//! Issue #14, "Hostile input": images and registries written by an
//! attacker, served by a tiny registry inside the test. Every one is refused
//! with an error naming the image and the cause, before anything is made of
//! it: no blob, layer, record or temporary file is left.

mod common;

use common::fake_registry::{self, header, Response, Route};
use image_store::blob_store::sha256_digest;
use image_store::oci::{MAX_DOCUMENT_SIZE, MAX_LAYER_SIZE};
use image_store::{Error, ImageStore, Refusal};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What the test registry serves: manifests by tag or digest, blobs by
/// digest (each with extra headers), everything else 404.
#[derive(Default, Clone)]
struct Served {
    manifests: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
}

impl Served {
    fn route(self) -> Route {
        Arc::new(move |path: &str, _: &str| self.answer(path))
    }

    fn answer(&self, path: &str) -> Response {
        if path == "/v2/" {
            return (200, vec![], vec![]);
        }
        let found = if let Some((_, reference)) = path.split_once("/manifests/") {
            self.manifests.get(reference)
        } else if let Some((_, digest)) = path.split_once("/blobs/") {
            self.blobs.get(digest)
        } else {
            None
        };
        match found {
            Some(body) => (200, vec![], body.clone()),
            None => (
                404,
                vec![],
                br#"{"errors":[{"code":"NOT_FOUND"}]}"#.to_vec(),
            ),
        }
    }

    /// Adds `manifest` under `latest` and its digest, returning the digest.
    fn manifest(&mut self, manifest: &Value) -> String {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let digest = sha256_digest(&bytes);
        self.manifests.insert("latest".into(), bytes.clone());
        self.manifests.insert(digest.clone(), bytes);
        digest
    }

    fn blob(&mut self, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        self.blobs.insert(digest.clone(), bytes.to_vec());
        digest
    }
}

/// A plain tar holding one file.
fn layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(content.len() as u64);
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// An image of `layers` whose config lists `diff_ids`: its blobs are
/// served, its manifest returned for the caller to serve (or spoil).
fn image(served: &mut Served, diff_ids: &[String], layers: &[Vec<u8>]) -> Value {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = served.blob(&config);
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            let d = served.blob(l);
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()})
        })
        .collect();
    json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layers,
    })
}

/// A fresh store reaching `route` over plain HTTP, and the image name.
async fn store_for(route: Route) -> (tempfile::TempDir, ImageStore, String) {
    let address = fake_registry::serve_route(route, None).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("store"), fake_registry::insecure(&address))
        .await
        .unwrap();
    (dir, store, format!("{address}/hostile/x:latest"))
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    out.sort();
    out
}

fn assert_untouched(root: &Path) {
    for sub in ["blobs/sha256", "blobs/sha512", "layers", "images", "tmp"] {
        assert_eq!(names(&root.join(sub)), Vec::<String>::new(), "{sub}");
    }
}

/// Pulls the served image, which must be refused (as `check` says) fast,
/// naming the image, with nothing left in the store.
async fn refused(served: Served, check: impl FnOnce(&str, &Refusal) -> bool) -> String {
    let (dir, store, image) = store_for(served.route()).await;
    let started = Instant::now();
    let err = store.pull(&image, None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    let text = err.to_string();
    eprintln!("refused: {text}");
    assert!(text.contains(&image), "{text}");
    match &err {
        Error::Refused { object, cause, .. } => assert!(check(object, cause), "{text}"),
        other => panic!("not a refusal: {other}"),
    }
    assert!(store.list().is_empty());
    assert_untouched(&dir.path().join("store"));
    text
}

fn good_layer() -> Vec<u8> {
    layer("hi", b"hi\n")
}

#[tokio::test]
async fn diff_ids_that_are_not_digests_are_refused() {
    let upper = format!("sha256:{}", "A".repeat(64));
    let sha384 = format!("sha384:{}", "a".repeat(96));
    for bad in [
        "sha256:/etc",
        "sha256:../../../../../../etc",
        "sha256:/tmp,upperdir=/etc:/x",
        &upper,
        &sha384,
        "",
    ] {
        let mut served = Served::default();
        let layers = [good_layer(), layer("b", b"b")];
        let ids = [bad.to_string(), sha256_digest(&layers[1])];
        let manifest = image(&mut served, &ids, &layers);
        served.manifest(&manifest);
        let text = refused(served, |object, cause| {
            object.starts_with("config sha256:")
                && matches!(cause, Refusal::Digest { field, .. } if field == "rootfs.diff_ids[0]")
        })
        .await;
        assert!(text.contains("is not a valid digest"), "{text}");
    }
}

#[tokio::test]
async fn malformed_digests_in_manifests_and_indexes_are_refused() {
    for (path, bad, field) in [
        ("/config/digest", "sha256:/etc", "config.digest"),
        ("/layers/0/digest", "sha256:../../x", "layers[0].digest"),
    ] {
        let mut served = Served::default();
        let l = good_layer();
        let mut manifest = image(&mut served, &[sha256_digest(&l)], &[l]);
        *manifest.pointer_mut(path).unwrap() = json!(bad);
        served.manifest(&manifest);
        refused(served, |object, cause| {
            object.starts_with("manifest sha256:")
                && matches!(cause, Refusal::Digest { field: f, .. } if f == field)
        })
        .await;
    }
    let mut served = Served::default();
    served.manifest(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": "sha256:/etc", "size": 10,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]}),
    );
    refused(
        served,
        |_, cause| matches!(cause, Refusal::Digest { field, .. } if field == "manifests[0].digest"),
    )
    .await;
}

/// A valid manifest padded (by an annotation) to `size` bytes.
fn padded_manifest(served: &mut Served, size: usize) -> Value {
    let l = good_layer();
    let mut manifest = image(served, &[sha256_digest(&l)], &[l]);
    manifest["annotations"] = json!({"padding": "x".repeat(size)});
    manifest
}

#[tokio::test]
async fn manifests_over_the_cap_are_refused() {
    let mut served = Served::default();
    let manifest = padded_manifest(&mut served, 8 << 20);
    served.manifest(&manifest);
    let text = refused(served, |object, cause| {
        object == "manifest for tag latest"
            && matches!(cause, Refusal::OverLimit { limit } if *limit == MAX_DOCUMENT_SIZE)
    })
    .await;
    assert!(text.contains("4194304-byte limit"), "{text}");
}

/// An index whose linux/amd64 entry is `manifest`, declared `declared`
/// bytes.
fn index_of(served: &mut Served, manifest: &Value, declared: Option<u64>) {
    let bytes = serde_json::to_vec(manifest).unwrap();
    let digest = sha256_digest(&bytes);
    served.manifests.insert(digest.clone(), bytes.clone());
    let size = declared.unwrap_or(bytes.len() as u64);
    served.manifest(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]}),
    );
}

#[tokio::test]
async fn index_entries_are_held_to_their_declared_size_and_the_cap() {
    let mut served = Served::default();
    let manifest = padded_manifest(&mut served, 5 << 20);
    index_of(&mut served, &manifest, None);
    refused(served, |object, cause| {
        object.starts_with("manifest sha256:")
            && matches!(cause, Refusal::Declared { limit, .. } if *limit == MAX_DOCUMENT_SIZE)
    })
    .await;
    let mut served = Served::default();
    let manifest = padded_manifest(&mut served, 1000);
    index_of(&mut served, &manifest, Some(100));
    refused(served, |_, cause| {
        matches!(cause, Refusal::OverDeclared { declared: 100 })
    })
    .await;
}

#[tokio::test]
async fn configs_over_the_cap_or_their_descriptor_are_refused() {
    let mut served = Served::default();
    let l = good_layer();
    let mut manifest = image(&mut served, &[sha256_digest(&l)], std::slice::from_ref(&l));
    manifest["config"]["size"] = json!(64u64 << 20);
    served.manifest(&manifest);
    let text = refused(served, |object, cause| {
        object.starts_with("config sha256:")
            && matches!(cause, Refusal::Declared { declared, limit }
                if *declared == 64 << 20 && *limit == MAX_DOCUMENT_SIZE)
    })
    .await;
    assert!(text.contains("67108864"), "{text}");

    let mut served = Served::default();
    let mut manifest = image(&mut served, &[sha256_digest(&l)], &[l]);
    manifest["config"]["size"] = json!(10);
    served.manifest(&manifest);
    refused(served, |object, cause| {
        object.starts_with("config sha256:")
            && matches!(cause, Refusal::OverDeclared { declared: 10 })
    })
    .await;
}

#[tokio::test]
async fn layers_over_their_descriptor_or_the_sane_maximum_are_refused() {
    let mut served = Served::default();
    let l = layer("big", &[7; 100_000]);
    let mut manifest = image(&mut served, &[sha256_digest(&l)], std::slice::from_ref(&l));
    manifest["layers"][0]["size"] = json!(1000);
    served.manifest(&manifest);
    refused(served, |object, cause| {
        object.starts_with("layer sha256:")
            && matches!(cause, Refusal::OverDeclared { declared: 1000 })
    })
    .await;

    let mut served = Served::default();
    let mut manifest = image(&mut served, &[sha256_digest(&l)], &[l]);
    manifest["layers"][0]["size"] = json!(MAX_LAYER_SIZE + 1);
    served.manifest(&manifest);
    refused(
        served,
        |_, cause| matches!(cause, Refusal::Declared { limit, .. } if *limit == MAX_LAYER_SIZE),
    )
    .await;
}

#[tokio::test]
async fn diff_ids_must_pair_with_layers() {
    let mut served = Served::default();
    let l = good_layer();
    let manifest = image(&mut served, &[], &[l]);
    served.manifest(&manifest);
    refused(served, |_, cause| {
        matches!(
            cause,
            Refusal::LayerCount {
                diff_ids: 0,
                layers: 1
            }
        )
    })
    .await;
}

// A real digest that is not the layer's is refused on a fresh store and on
// one where a layer of that diff id is unpacked already (whose blob the
// hostile image does not have): the new blob is checked, never trusted.
#[tokio::test]
async fn a_diff_id_that_is_not_the_layers_is_refused_even_when_that_layer_exists() {
    let real = good_layer();
    let evil = layer("pwned", b"not what the config says\n");
    let mut served = Served::default();
    let good = image(
        &mut served,
        &[sha256_digest(&real)],
        std::slice::from_ref(&real),
    );
    let good_bytes = serde_json::to_vec(&good).unwrap();
    served.manifests.insert("good".into(), good_bytes);
    let hostile = image(&mut served, &[sha256_digest(&real)], &[evil]);
    served.manifest(&hostile);
    refused(served.clone(), |object, cause| {
        object.starts_with("layer sha256:") && matches!(cause, Refusal::DiffId { .. })
    })
    .await;

    let (dir, store, image_name) = store_for(served.route()).await;
    let good_name = image_name.replace(":latest", ":good");
    let pulled = store.pull(&good_name, None).await.unwrap();
    let root = dir.path().join("store");
    let before = (
        names(&root.join("layers")),
        names(&root.join("blobs/sha256")),
    );
    let err = store.pull(&image_name, None).await.unwrap_err();
    assert!(err.to_string().contains("wrong diff id"), "{err}");
    let after = (
        names(&root.join("layers")),
        names(&root.join("blobs/sha256")),
    );
    assert_eq!(before, after, "the refused blob is not kept");
    let rootfs = store.create_rootfs(&pulled.id, "c", true).await.unwrap();
    assert_eq!(std::fs::read(rootfs.path.join("hi")).unwrap(), b"hi\n");
    assert!(!rootfs.path.join("pwned").exists());
    store.remove_rootfs("c").await.unwrap();
}

#[tokio::test]
async fn error_bodies_are_not_read_whole() {
    let route: Route = Arc::new(|path: &str, _: &str| {
        if path == "/v2/" {
            return (200, vec![], vec![]);
        }
        (404, vec![], vec![b'x'; 32 << 20])
    });
    let (_dir, store, image) = store_for(route).await;
    let err = store.pull(&image, None).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Registry { .. }), "{text}");
    assert!(text.contains("status 404") && text.len() < 1000, "{text}");
}

/// A registry behind a token server, as Docker Hub is: every request needs
/// `Bearer T0K`, which `/token` hands out for the pull scope to `me:s3cret`
/// (or a 2 MiB answer when `huge_token`).
fn token_registry(me: Arc<OnceLock<String>>, huge_token: bool) -> Route {
    Arc::new(move |path: &str, request: &str| {
        let address = me.get().cloned().unwrap_or_default();
        if let Some(query) = path.strip_prefix("/token?") {
            let scope_ok = query.contains("scope=repository%3Aprivate%2Ftiny%3Apull");
            if header(request, "authorization") != Some("Basic bWU6czNjcmV0") || !scope_ok {
                return (401, vec![], vec![]);
            }
            if huge_token {
                let token = "t".repeat(2 << 20);
                return (
                    200,
                    vec![],
                    format!(r#"{{"token":"{token}"}}"#).into_bytes(),
                );
            }
            return (200, vec![], br#"{"token":"T0K"}"#.to_vec());
        }
        if header(request, "authorization") != Some("Bearer T0K") {
            let challenge = format!(r#"Bearer realm="http://{address}/token",service="fake""#);
            return (401, vec![("WWW-Authenticate", challenge)], vec![]);
        }
        fake_registry::tiny_response(path)
    })
}

#[tokio::test]
async fn bearer_challenges_get_a_token_for_the_pull_scope() {
    let me = Arc::new(OnceLock::new());
    let address = fake_registry::serve_route(token_registry(me.clone(), false), None).await;
    me.set(address.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("s"), fake_registry::insecure(&address))
        .await
        .unwrap();
    let image = format!("{address}/private/tiny:1");
    let creds = image_store::Credentials {
        username: "me".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let pulled = store.pull(&image, Some(creds)).await.unwrap();
    assert_eq!(pulled.id, sha256_digest(&fake_registry::tiny().config));
    let err = store.pull(&image, None).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("/token: credentials refused (status 401)"),
        "{err}"
    );
}

#[tokio::test]
async fn token_answers_are_capped() {
    let me = Arc::new(OnceLock::new());
    let address = fake_registry::serve_route(token_registry(me.clone(), true), None).await;
    me.set(address.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("s"), fake_registry::insecure(&address))
        .await
        .unwrap();
    let creds = image_store::Credentials {
        username: "me".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let image = format!("{address}/private/tiny:1");
    let err = store.pull(&image, Some(creds)).await.unwrap_err();
    assert!(
        err.to_string().contains("answer larger than 1048576 bytes"),
        "{err}"
    );
}
