//! A signature made by the real `cosign` binary, checked with this crate:
//! the format, not our own fixtures, is the contract.
//!
//! The vector is public test material (containers/image's
//! `signature/fixtures`: `cosign.pub` and the payload and signature of
//! `dir-img-cosign-valid/signature-1`, with that image's `manifest.json`),
//! not committed here: third-party data is kept out of this repository.
//! The test reads it from `$COSIGN_TEST_VECTOR_DIR`, else from
//! `shared/cosign-test-vectors/` beside the checkout, and is skipped, with a
//! message, when neither has it. The directory holds:
//!
//! - `cosign.pub`: the PEM public key;
//! - `payload.json`: the payload bytes, exactly as signed;
//! - `signature.b64`: the `dev.cosignproject.cosign/signature` annotation;
//! - `manifest.json` (optional): the signed manifest.

use base64::Engine as _;
use image_signature::{
    ImageVerifier, KeyAlgorithm, MemorySource, PolicyVerifier, PublicKey, RefusalKind,
    SignatureImage, SignatureLayer, SignaturePolicy, SimpleSigningPayload, SIGNATURE_ANNOTATION,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn vector_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("COSIGN_TEST_VECTOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/cosign-test-vectors")
        });
    if dir.join("payload.json").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no cosign test vector in {} (set COSIGN_TEST_VECTOR_DIR; see this file's docs)",
            dir.display()
        );
        None
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[tokio::test]
async fn a_real_cosign_signature_verifies() {
    let Some(dir) = vector_dir() else {
        return;
    };
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let pem = read("cosign.pub");
    let payload = read("payload.json");
    let encoded = String::from_utf8(read("signature.b64")).unwrap();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap();

    let key = PublicKey::from_pem(&pem).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256Sha256);
    assert!(key.verify(&payload, &signature));
    let mut altered = payload.clone();
    altered[0] ^= 1;
    assert!(!key.verify(&altered, &signature));

    let parsed = SimpleSigningPayload::parse(&payload).unwrap();
    if let Ok(manifest) = std::fs::read(dir.join("manifest.json")) {
        assert_eq!(parsed.manifest_digest, sha256(&manifest));
    }

    // The whole path, as the daemon would run it: cosign signs the
    // repository only, so matchRepository accepts it for a tag …
    let d = parsed.manifest_digest.clone();
    let layer = SignatureLayer {
        digest: sha256(&payload),
        annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), encoded.trim().into())]),
        payload: Some(payload),
    };
    let image: image_store::ImageReference = format!("{}:any-tag", parsed.docker_reference)
        .parse()
        .unwrap();
    let mut source = MemorySource::default();
    source.insert(
        &image.name(),
        &d,
        SignatureImage {
            location: dir.display().to_string(),
            layers: vec![layer],
        },
    );
    let key_data = base64::engine::general_purpose::STANDARD.encode(&pem);
    let verifier = |identity: &str| {
        let json = format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{key_data}","signedIdentity":{identity}}}]}}"#
        );
        PolicyVerifier::new(SignaturePolicy::from_json(json.as_bytes()).unwrap())
    };
    let v = verifier(r#"{"type":"matchRepository"}"#)
        .verify(&image, &d, &source)
        .await
        .unwrap();
    assert_eq!(v.signatures[0].key_fingerprint, key.fingerprint());
    // … and the default matchRepoDigestOrExact does not, as
    // containers-policy.json(5) warns.
    let r = verifier(r#"{"type":"matchRepoDigestOrExact"}"#)
        .verify(&image, &d, &source)
        .await
        .unwrap_err();
    assert_eq!(r.kind(), RefusalKind::IdentityMismatch);
}
