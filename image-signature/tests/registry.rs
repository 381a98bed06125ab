//! The signed fixtures of `cargo xtask fixtures` (catalogue in
//! `xtask/src/fixtures/mod.rs`), verified from the real local registry
//! through `RegistrySource`, named as the daemon's pods name them
//! (`registry.k8s.io/signed/…`, mirrored to 127.0.0.1:5000).
//!
//! Skipped, with a message, when the registry or the fixture keys are not
//! there: `cargo xtask fixtures` brings both.

use image_signature::{
    ImageVerifier, KeyAlgorithm, PolicyVerifier, PublicKey, RefusalKind, RefusalReason,
    RegistrySource, SignaturePolicy, SourceError, Verification,
};
use image_store::check::RegistryAuth;
use image_store::distribution::RegistryClient;
use image_store::{oci, Endpoint, ImageReference, PullOptions, RegistriesConfig, RegistryConfig};
use sha2::{Digest as _, Sha256};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const REGISTRY: &str = "127.0.0.1:5000";
const KEYS: &str = "/var/lib/cri-server-fixtures/signing";

/// Whether the fixtures are there; says why not when they are not.
fn fixtures_ready() -> bool {
    let up = TcpStream::connect_timeout(&REGISTRY.parse().unwrap(), Duration::from_secs(1)).is_ok();
    let keys = Path::new(KEYS).join("cosign.pub").exists();
    if !(up && keys) {
        eprintln!(
            "SKIPPED: no fixture registry on {REGISTRY} or no keys in {KEYS}: run `cargo xtask fixtures` first"
        );
    }
    up && keys
}

fn registries(mirrors: &[&str]) -> RegistriesConfig {
    RegistriesConfig {
        registries: vec![RegistryConfig {
            prefix: "registry.k8s.io".into(),
            mirrors: mirrors.iter().map(|m| m.to_string()).collect(),
            insecure: true,
            mirrors_only: true,
            ..Default::default()
        }],
    }
}

fn policy() -> PolicyVerifier {
    let json = format!(
        r#"{{
        "default": [{{"type": "reject"}}],
        "transports": {{"docker": {{
            "registry.k8s.io/signed": [{{
                "type": "sigstoreSigned",
                "keyPath": "{KEYS}/cosign.pub",
                "signedIdentity": {{"type": "matchRepository"}}
            }}],
            "registry.k8s.io/signed/good:latest": [{{
                "type": "sigstoreSigned",
                "keyPath": "{KEYS}/cosign.pub"
            }}],
            "registry.k8s.io/signed/ed25519": [{{
                "type": "sigstoreSigned",
                "keyPaths": ["{KEYS}/cosign.pub", "{KEYS}/ed25519.pub"],
                "signedIdentity": {{"type": "matchRepository"}}
            }}],
            "registry.k8s.io/e2e-test-images": [{{"type": "insecureAcceptAnything"}}]
        }}}}
    }}"#
    );
    PolicyVerifier::new(SignaturePolicy::from_json(json.as_bytes()).unwrap())
}

/// The manifest `repository:tag` names on the fixture registry, as one of
/// `accept`.
async fn manifest(repository: &str, tag: &str, accept: &[&str]) -> Vec<u8> {
    let endpoint = Endpoint {
        host: REGISTRY.into(),
        repository: repository.into(),
        insecure: true,
        ..Default::default()
    };
    let client =
        RegistryClient::new(&endpoint, RegistryAuth::Anonymous, &PullOptions::default()).unwrap();
    client
        .fetch_manifest(tag, accept, 4 << 20)
        .await
        .unwrap_or_else(|e| panic!("{repository}:{tag}: {e}"))
        .bytes
}

/// The digest `repository:tag` resolves to on the fixture registry (the
/// index's for a multi-arch image), as the daemon's pull would report it:
/// the sha256 of the manifest's bytes.
async fn resolve(repository: &str, tag: &str) -> String {
    let bytes = manifest(repository, tag, &oci::ACCEPTED).await;
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

async fn check(
    image: &str,
    digest: &str,
    mirrors: &[&str],
) -> Result<Verification, image_signature::Refusal> {
    let source = RegistrySource::new(registries(mirrors).load().unwrap(), RegistryAuth::Anonymous);
    let image: ImageReference = image.parse().unwrap();
    policy().verify(&image, digest, &source).await
}

fn fingerprint(file: &str) -> String {
    let pem = std::fs::read(Path::new(KEYS).join(file)).unwrap();
    PublicKey::from_pem(&pem).unwrap().fingerprint().to_string()
}

#[tokio::test]
async fn signed_fixtures_verify_through_the_mirror() {
    if !fixtures_ready() {
        return;
    }
    let d = resolve("signed/good", "latest").await;
    // By tag: only the containers/image-style signature (for `:latest`)
    // meets the default matchRepoDigestOrExact.
    let v = check("registry.k8s.io/signed/good:latest", &d, &[REGISTRY])
        .await
        .unwrap();
    assert!(v.verified);
    assert_eq!(
        v.signatures[0].signed_identity,
        "registry.k8s.io/signed/good:latest"
    );
    assert_eq!(v.signatures[0].key_fingerprint, fingerprint("cosign.pub"));
    assert_eq!(v.signatures[0].key_algorithm, KeyAlgorithm::EcdsaP256Sha256);
    // By digest, under the namespace's matchRepository: cosign's own
    // repository-only signature is the first that fits.
    let v = check(&format!("registry.k8s.io/signed/good@{d}"), &d, &[REGISTRY])
        .await
        .unwrap();
    assert_eq!(
        v.signatures[0].signed_identity,
        "registry.k8s.io/signed/good"
    );
    println!("{}", serde_json::to_string_pretty(&v).unwrap());

    let d = resolve("signed/ed25519", "latest").await;
    let v = check("registry.k8s.io/signed/ed25519:latest", &d, &[REGISTRY])
        .await
        .unwrap();
    assert_eq!(v.signatures[0].key_algorithm, KeyAlgorithm::Ed25519);
    assert_eq!(v.signatures[0].key_fingerprint, fingerprint("ed25519.pub"));
}

#[tokio::test]
async fn a_multi_arch_signature_covers_the_index_only() {
    if !fixtures_ready() {
        return;
    }
    let index = resolve("signed/multi-arch", "latest").await;
    let v = check(
        "registry.k8s.io/signed/multi-arch:latest",
        &index,
        &[REGISTRY],
    )
    .await
    .unwrap();
    assert!(v.verified);
    let bytes = manifest("signed/multi-arch", "latest", &[oci::OCI_INDEX]).await;
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let child = parsed["manifests"][1]["digest"].as_str().unwrap();
    let r = check(
        "registry.k8s.io/signed/multi-arch:latest",
        child,
        &[REGISTRY],
    )
    .await
    .unwrap_err();
    assert_eq!(r.kind(), RefusalKind::NoSignature);
}

#[tokio::test]
async fn bad_fixtures_are_refused_for_their_reasons() {
    if !fixtures_ready() {
        return;
    }
    let cases = [
        ("signed/unsigned", RefusalKind::NoSignature),
        ("signed/other-key", RefusalKind::BadSignature),
        ("signed/wrong-digest", RefusalKind::WrongDigest),
        ("signed/wrong-identity", RefusalKind::IdentityMismatch),
    ];
    for (repository, kind) in cases {
        let d = resolve(repository, "latest").await;
        let image = format!("registry.k8s.io/{repository}:latest");
        let r = check(&image, &d, &[REGISTRY]).await.unwrap_err();
        assert_eq!(r.kind(), kind, "{image}: {r}");
    }
    let old = resolve("signed/wrong-digest", "old").await;
    let latest = resolve("signed/wrong-digest", "latest").await;
    let r = check(
        "registry.k8s.io/signed/wrong-digest:latest",
        &latest,
        &[REGISTRY],
    )
    .await
    .unwrap_err();
    assert_eq!(r.reason, RefusalReason::WrongDigest { signed: old });
    let d = resolve("signed/wrong-identity", "latest").await;
    let r = check(
        "registry.k8s.io/signed/wrong-identity:latest",
        &d,
        &[REGISTRY],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&r.reason, RefusalReason::IdentityMismatch { signed_identity, .. }
            if signed_identity == "registry.k8s.io/signed/good"),
        "{r}"
    );
    // Outside every signed scope: the default rejects, nothing is fetched.
    let r = check("registry.k8s.io/pause:3.9", &d, &[REGISTRY])
        .await
        .unwrap_err();
    assert_eq!(r.kind(), RefusalKind::RejectedByPolicy);
    // Accepted without signatures: allowed, not verified.
    let d = resolve("e2e-test-images/busybox", "1.29-2").await;
    let v = check(
        "registry.k8s.io/e2e-test-images/busybox:1.29-2",
        &d,
        &[REGISTRY],
    )
    .await
    .unwrap();
    assert!(!v.verified);
}

#[tokio::test]
async fn mirrors_are_tried_in_order_and_unreachable_is_not_unsigned() {
    if !fixtures_ready() {
        return;
    }
    // Port 1 on loopback refuses connections at once.
    let dead = "127.0.0.1:1";
    let d = resolve("signed/good", "latest").await;
    let image = format!("registry.k8s.io/signed/good@{d}");
    assert!(check(&image, &d, &[dead, REGISTRY]).await.is_ok());
    let r = check(&image, &d, &[dead]).await.unwrap_err();
    assert!(
        matches!(&r.reason, RefusalReason::Unreadable { error: SourceError::Unreachable { attempts, .. } }
            if attempts.len() == 1 && attempts[0].contains(dead)),
        "{r}"
    );
    // Found nowhere while every endpoint answered: unsigned.
    let d = resolve("signed/unsigned", "latest").await;
    let r = check(
        "registry.k8s.io/signed/unsigned:latest",
        &d,
        &[REGISTRY, REGISTRY],
    )
    .await
    .unwrap_err();
    assert_eq!(r.kind(), RefusalKind::NoSignature);
}
