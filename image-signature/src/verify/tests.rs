use super::*;
use crate::identity::IdentityKind;
use crate::key::tests::{ed25519_key, ed25519_pem, ed25519_sign, p256_key, p256_pem, p256_sign};
use crate::outcome::RefusalKind;
use crate::policy::RequirementKind;
use crate::source::{MemorySource, MockSignatureSource};
use crate::KeyAlgorithm;
use proptest::prelude::*;
use std::collections::BTreeMap;

const IMAGE: &str = "registry.example/team/app:v1";
const REPO: &str = "registry.example/team/app";

fn digest(n: u8) -> String {
    format!("sha256:{}", hex::encode([n; 32]))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// cosign's payload bytes, exactly as cosign writes them.
fn payload(identity: &str, digest: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{identity}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

fn layer(payload: Vec<u8>, signature: &[u8]) -> SignatureLayer {
    let encoded = base64::engine::general_purpose::STANDARD.encode(signature);
    SignatureLayer {
        digest: sha256(&payload),
        annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), encoded)]),
        payload: Some(payload),
    }
}

/// A layer signed with the test P-256 key `seed`.
fn signed(seed: u8, identity: &str, digest: &str) -> SignatureLayer {
    let p = payload(identity, digest);
    let sig = p256_sign(&p256_key(seed), &p);
    layer(p, &sig)
}

fn key_data(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem)
}

/// A policy whose scope `registry.example/team` needs a signature by the
/// P-256 key `1` (or the given key fields) with `identity`.
fn policy(key_fields: &str, identity: &str) -> PolicyVerifier {
    let json = format!(
        r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{
            "registry.example/team":[{{"type":"sigstoreSigned",{key_fields},"signedIdentity":{identity}}}],
            "registry.example/open":[{{"type":"insecureAcceptAnything"}}],
            "registry.example/both":[
                {{"type":"sigstoreSigned","keyData":"{a}","signedIdentity":{{"type":"matchRepository"}}}},
                {{"type":"sigstoreSigned","keyData":"{b}","signedIdentity":{{"type":"matchRepository"}}}}
            ]
        }}}}}}"#,
        a = key_data(&p256_pem(&p256_key(1))),
        b = key_data(&p256_pem(&p256_key(2))),
    );
    PolicyVerifier::new(SignaturePolicy::from_json(json.as_bytes()).unwrap())
}

fn p256_policy(identity: &str) -> PolicyVerifier {
    policy(
        &format!(r#""keyData":"{}""#, key_data(&p256_pem(&p256_key(1)))),
        identity,
    )
}

const REPOSITORY: &str = r#"{"type":"matchRepository"}"#;

fn source(image: &str, digest: &str, layers: Vec<SignatureLayer>) -> MemorySource {
    let mut source = MemorySource::default();
    let name = image.parse::<ImageReference>().unwrap().name();
    source.insert(
        &name,
        digest,
        SignatureImage {
            location: "memory".into(),
            layers,
        },
    );
    source
}

fn run(
    verifier: &PolicyVerifier,
    image: &str,
    digest: &str,
    source: &StaticSource,
) -> Result<Verification, Refusal> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(verifier.verify(&image.parse().unwrap(), digest, source))
}

#[test]
fn a_good_signature_verifies_and_says_how() {
    let d = digest(1);
    let good = signed(1, REPO, &d);
    let layer_digest = good.digest.clone();
    let v = run(
        &p256_policy(REPOSITORY),
        IMAGE,
        &d,
        &source(IMAGE, &d, vec![good]),
    )
    .unwrap();
    assert!(v.verified);
    assert_eq!(v.image, IMAGE);
    assert_eq!(v.digest, d);
    assert_eq!(
        v.scope,
        PolicyScope::Scope {
            transport: "docker".into(),
            scope: "registry.example/team".into()
        }
    );
    assert_eq!(v.requirements, [RequirementKind::SigstoreSigned]);
    let key = crate::PublicKey::from_pem(p256_pem(&p256_key(1)).as_bytes()).unwrap();
    assert_eq!(
        v.signatures,
        [AcceptedSignature {
            requirement: 0,
            key_fingerprint: key.fingerprint().to_string(),
            key_algorithm: KeyAlgorithm::EcdsaP256Sha256,
            signed_identity: REPO.into(),
            identity_rule: IdentityKind::MatchRepository,
            layer_digest,
        }]
    );
}

#[test]
fn ed25519_signatures_verify() {
    let d = digest(2);
    let p = payload(REPO, &d);
    let sig = ed25519_sign(&ed25519_key(9), &p);
    let verifier = policy(
        &format!(r#""keyData":"{}""#, key_data(&ed25519_pem(&ed25519_key(9)))),
        REPOSITORY,
    );
    let v = run(
        &verifier,
        IMAGE,
        &d,
        &source(IMAGE, &d, vec![layer(p.clone(), &sig)]),
    )
    .unwrap();
    assert_eq!(v.signatures[0].key_algorithm, KeyAlgorithm::Ed25519);
    // The P-256 policy does not take it.
    let r = run(
        &p256_policy(REPOSITORY),
        IMAGE,
        &d,
        &source(IMAGE, &d, vec![layer(p, &sig)]),
    );
    assert_eq!(r.unwrap_err().kind(), RefusalKind::BadSignature);
}

#[test]
fn any_key_of_a_key_list_will_do() {
    let d = digest(3);
    let keys = format!(
        r#""keyDatas":["{}","{}"]"#,
        key_data(&p256_pem(&p256_key(5))),
        key_data(&p256_pem(&p256_key(6)))
    );
    let v = run(
        &policy(&keys, REPOSITORY),
        IMAGE,
        &d,
        &source(IMAGE, &d, vec![signed(6, REPO, &d)]),
    )
    .unwrap();
    let six = crate::PublicKey::from_pem(p256_pem(&p256_key(6)).as_bytes()).unwrap();
    assert_eq!(v.signatures[0].key_fingerprint, six.fingerprint());
}

/// (what is wrong, layers, expected reason, expected per-signature fault)
#[test]
fn each_kind_of_bad_signature_is_refused_for_its_reason() {
    let d = digest(4);
    let good = signed(1, REPO, &d);
    let mut corrupt = good.clone();
    corrupt
        .annotations
        .insert(SIGNATURE_ANNOTATION.into(), "MEUCIQ==".into());
    let mut not_base64 = good.clone();
    not_base64
        .annotations
        .insert(SIGNATURE_ANNOTATION.into(), "%%%".into());
    let mut missing = good.clone();
    missing.annotations.clear();
    let mut swapped = good.clone();
    swapped.payload = Some(payload(REPO, &digest(5)));
    let mut oversized = good.clone();
    oversized.payload = None;
    let mut tampered = good.clone();
    tampered.digest = sha256(b"x");
    let garbage = {
        let p = b"{\"not\":\"a payload\"}".to_vec();
        let sig = p256_sign(&p256_key(1), &p);
        layer(p, &sig)
    };
    let cases: Vec<(&str, SignatureLayer, RefusalKind, SignatureFault)> = vec![
        (
            "other key",
            signed(2, REPO, &d),
            RefusalKind::BadSignature,
            SignatureFault::Unverified,
        ),
        (
            "corrupt signature",
            corrupt,
            RefusalKind::BadSignature,
            SignatureFault::Unverified,
        ),
        (
            "not base64",
            not_base64,
            RefusalKind::BadSignature,
            SignatureFault::NotBase64,
        ),
        (
            "no annotation",
            missing,
            RefusalKind::BadSignature,
            SignatureFault::MissingSignature,
        ),
        (
            "payload swapped",
            swapped.clone(),
            RefusalKind::BadSignature,
            SignatureFault::PayloadDigestMismatch {
                actual: sha256(swapped.payload.as_ref().unwrap()),
            },
        ),
        (
            "payload too large",
            oversized,
            RefusalKind::BadSignature,
            SignatureFault::PayloadTooLarge,
        ),
        (
            "layer digest lies",
            tampered,
            RefusalKind::BadSignature,
            SignatureFault::PayloadDigestMismatch {
                actual: good.digest.clone(),
            },
        ),
        (
            "wrong digest",
            signed(1, REPO, &digest(6)),
            RefusalKind::WrongDigest,
            SignatureFault::WrongDigest { signed: digest(6) },
        ),
        (
            "identity mismatch",
            signed(1, "registry.example/team/other", &d),
            RefusalKind::IdentityMismatch,
            SignatureFault::IdentityMismatch {
                signed_identity: "registry.example/team/other".into(),
            },
        ),
    ];
    let verifier = p256_policy(REPOSITORY);
    for (what, bad, kind, fault) in cases {
        let layer_digest = bad.digest.clone();
        let r = run(&verifier, IMAGE, &d, &source(IMAGE, &d, vec![bad])).unwrap_err();
        assert_eq!(r.kind(), kind, "{what}: {r}");
        assert_eq!(r.requirement, Some(0), "{what}");
        assert_eq!(
            r.rejected,
            [RejectedSignature {
                requirement: 0,
                layer_digest,
                fault
            }],
            "{what}"
        );
    }
    let r = run(&verifier, IMAGE, &d, &source(IMAGE, &d, vec![garbage])).unwrap_err();
    assert!(
        matches!(r.rejected[0].fault, SignatureFault::InvalidPayload { .. }),
        "{r}"
    );
}

#[test]
fn payloads_over_the_limit_are_not_trusted() {
    let d = digest(7);
    let mut p = payload(REPO, &d);
    // Valid JSON (trailing spaces) and a valid signature, but too large.
    p.resize(100, b' ');
    let sig = p256_sign(&p256_key(1), &p);
    let verifier = p256_policy(REPOSITORY).with_limits(Limits {
        payload_bytes: 99,
        ..Limits::default()
    });
    let r = run(
        &verifier,
        IMAGE,
        &d,
        &source(IMAGE, &d, vec![layer(p, &sig)]),
    )
    .unwrap_err();
    assert_eq!(r.rejected[0].fault, SignatureFault::PayloadTooLarge);
}

#[test]
fn identity_mismatch_for_each_signed_identity_mode() {
    let d = digest(8);
    let digest_ref = format!("{REPO}@{d}");
    // (identity rule, image, signed identity accepted, signed identity refused)
    let cases = [
        (r#"{"type":"matchExact"}"#, IMAGE, IMAGE, REPO),
        (
            r#"{"type":"matchRepoDigestOrExact"}"#,
            IMAGE,
            IMAGE,
            "registry.example/team/app:v2",
        ),
        (
            r#"{"type":"matchRepoDigestOrExact"}"#,
            digest_ref.as_str(),
            "registry.example/team/app:v9",
            REPO,
        ),
        (
            r#"{"type":"matchRepository"}"#,
            IMAGE,
            REPO,
            "registry.example/team/app2",
        ),
        (
            r#"{"type":"exactReference","dockerReference":"upstream.example/app:v1"}"#,
            IMAGE,
            "upstream.example/app:v1",
            IMAGE,
        ),
        (
            r#"{"type":"exactRepository","dockerRepository":"upstream.example/app"}"#,
            IMAGE,
            "upstream.example/app",
            REPO,
        ),
        (
            r#"{"type":"remapIdentity","prefix":"registry.example/team","signedPrefix":"upstream.example"}"#,
            IMAGE,
            "upstream.example/app:v1",
            IMAGE,
        ),
    ];
    for (rule, image, good, bad) in cases {
        let verifier = p256_policy(rule);
        let ok = run(
            &verifier,
            image,
            &d,
            &source(image, &d, vec![signed(1, good, &d)]),
        );
        assert!(ok.is_ok(), "{rule} {image} {good}: {ok:?}");
        let r = run(
            &verifier,
            image,
            &d,
            &source(image, &d, vec![signed(1, bad, &d)]),
        )
        .unwrap_err();
        assert!(
            matches!(&r.reason, RefusalReason::IdentityMismatch { signed_identity, .. } if signed_identity == bad),
            "{rule} {image} {bad}: {r}"
        );
    }
}

#[test]
fn one_good_signature_among_bad_ones_is_enough() {
    let d = digest(9);
    let layers = vec![
        signed(2, REPO, &d),
        signed(1, "elsewhere.example/x", &d),
        signed(1, REPO, &d),
    ];
    let v = run(
        &p256_policy(REPOSITORY),
        IMAGE,
        &d,
        &source(IMAGE, &d, layers),
    )
    .unwrap();
    assert_eq!(v.signatures[0].signed_identity, REPO);
}

#[test]
fn the_most_telling_fault_is_the_reason() {
    let d = digest(10);
    let layers = vec![
        signed(2, REPO, &d),
        signed(1, REPO, &digest(11)),
        signed(1, "elsewhere.example/x", &d),
    ];
    let r = run(
        &p256_policy(REPOSITORY),
        IMAGE,
        &d,
        &source(IMAGE, &d, layers),
    )
    .unwrap_err();
    assert_eq!(r.kind(), RefusalKind::IdentityMismatch);
    assert_eq!(r.rejected.len(), 3);
    let layers = vec![signed(2, REPO, &d), signed(1, REPO, &digest(11))];
    let r = run(
        &p256_policy(REPOSITORY),
        IMAGE,
        &d,
        &source(IMAGE, &d, layers),
    )
    .unwrap_err();
    assert_eq!(r.kind(), RefusalKind::WrongDigest);
}

#[test]
fn no_signature_image_or_no_layers_is_no_signature() {
    let d = digest(12);
    let verifier = p256_policy(REPOSITORY);
    let r = run(&verifier, IMAGE, &d, &MemorySource::default()).unwrap_err();
    assert_eq!(r.reason, RefusalReason::NoSignature);
    let r = run(&verifier, IMAGE, &d, &source(IMAGE, &d, vec![])).unwrap_err();
    assert_eq!(r.reason, RefusalReason::NoSignature);
    // Signatures of another manifest are not looked at.
    let r = run(
        &verifier,
        IMAGE,
        &d,
        &source(IMAGE, &digest(13), vec![signed(1, REPO, &digest(13))]),
    );
    assert_eq!(r.unwrap_err().reason, RefusalReason::NoSignature);
}

#[test]
fn every_requirement_of_the_scope_must_hold() {
    let d = digest(14);
    let image = "registry.example/both/app:1";
    let name = "registry.example/both/app";
    let verifier = p256_policy(REPOSITORY);
    let r = run(
        &verifier,
        image,
        &d,
        &source(image, &d, vec![signed(1, name, &d)]),
    )
    .unwrap_err();
    assert_eq!(r.requirement, Some(1));
    assert_eq!(r.kind(), RefusalKind::BadSignature);
    let both = vec![signed(1, name, &d), signed(2, name, &d)];
    let v = run(&verifier, image, &d, &source(image, &d, both)).unwrap();
    assert_eq!(v.signatures.len(), 2);
    assert_eq!(v.signatures[1].requirement, 1);
}

#[test]
fn accept_and_reject_need_no_signatures() {
    let verifier = p256_policy(REPOSITORY);
    let mut never = MockSignatureSource::new();
    never.expect_signatures().never();
    let v = run(&verifier, "registry.example/open/x", &digest(15), &never).unwrap();
    assert!(!v.verified);
    assert_eq!(v.requirements, [RequirementKind::InsecureAcceptAnything]);
    let r = run(&verifier, "quay.io/x", &digest(15), &never).unwrap_err();
    assert_eq!(r.reason, RefusalReason::RejectedByPolicy);
    assert_eq!(r.scope, PolicyScope::Default);
}

#[test]
fn unreadable_signatures_and_bad_digests_are_not_unsigned() {
    let verifier = p256_policy(REPOSITORY);
    let mut failing = MockSignatureSource::new();
    failing.expect_signatures().returning(|image, _, _| {
        Err(SourceError::Unreachable {
            image: image.to_string(),
            attempts: vec!["https://registry.example: connection refused".into()],
        })
    });
    let r = run(&verifier, IMAGE, &digest(16), &failing).unwrap_err();
    assert_eq!(r.kind(), RefusalKind::Unreadable);
    let mut flooding = MockSignatureSource::new();
    flooding.expect_signatures().returning(|_, d, _| {
        Ok(Some(SignatureImage {
            location: "flood".into(),
            layers: vec![signed(1, REPO, d); Limits::default().signatures + 1],
        }))
    });
    let r = run(&verifier, IMAGE, &digest(16), &flooding).unwrap_err();
    assert!(matches!(
        r.reason,
        RefusalReason::Unreadable {
            error: SourceError::TooManySignatures { .. }
        }
    ));
    let r = run(&verifier, IMAGE, "sha256:short", &MemorySource::default()).unwrap_err();
    assert!(matches!(
        r.reason,
        RefusalReason::Unreadable {
            error: SourceError::BadDigest { .. }
        }
    ));
}

#[test]
fn the_source_is_asked_with_the_logical_reference_and_limits() {
    let d = digest(17);
    let verifier = p256_policy(REPOSITORY);
    let mut source = MockSignatureSource::new();
    let want = d.clone();
    source
        .expect_signatures()
        .withf(move |image, digest, limits| {
            image.to_string() == IMAGE && digest == want && *limits == Limits::default()
        })
        .times(1)
        .returning(|_, _, _| Ok(None));
    let _ = run(&verifier, IMAGE, &d, &source);
}

#[test]
fn results_serialise_for_image_status() {
    let d = digest(18);
    let v = run(
        &p256_policy(REPOSITORY),
        IMAGE,
        &d,
        &source(IMAGE, &d, vec![signed(1, REPO, &d)]),
    )
    .unwrap();
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["scope"]["kind"], "scope");
    assert_eq!(json["signatures"][0]["keyAlgorithm"], "ecdsa-p256-sha256");
    assert_eq!(json["signatures"][0]["identityRule"], "matchRepository");
    assert_eq!(serde_json::from_value::<Verification>(json).unwrap(), v);
    let r = run(
        &p256_policy(REPOSITORY),
        IMAGE,
        &d,
        &source(IMAGE, &d, vec![signed(1, REPO, &digest(19))]),
    )
    .unwrap_err();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["reason"]["kind"], "wrongDigest");
    assert_eq!(json["rejected"][0]["fault"]["kind"], "wrongDigest");
    assert_eq!(serde_json::from_value::<Refusal>(json).unwrap(), r);
    let unreadable = RefusalReason::Unreadable {
        error: SourceError::BadDigest {
            image: "i".into(),
            digest: "d".into(),
        },
    };
    let json = serde_json::to_value(&unreadable).unwrap();
    assert_eq!(json["error"]["kind"], "badDigest");
}

#[test]
fn the_verifier_can_be_mocked() {
    let mut mock = MockImageVerifier::new();
    mock.expect_verify().returning(|image, digest, _| {
        Err(Refusal {
            image: image.to_string(),
            digest: digest.to_string(),
            scope: PolicyScope::Default,
            requirement: Some(0),
            reason: RefusalReason::RejectedByPolicy,
            rejected: Vec::new(),
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let r = runtime.block_on(mock.verify(
        &IMAGE.parse().unwrap(),
        &digest(1),
        &MemorySource::default(),
    ));
    assert_eq!(r.unwrap_err().kind(), RefusalKind::RejectedByPolicy);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // A payload verifies with the key that signed it and with no other,
    // whatever the payload, for both algorithms.
    #[test]
    fn a_payload_verifies_only_with_its_own_key(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        a in 1u8..=255,
        b in 1u8..=255,
    ) {
        prop_assume!(a != b);
        let key_a = crate::PublicKey::from_pem(p256_pem(&p256_key(a)).as_bytes()).unwrap();
        let key_b = crate::PublicKey::from_pem(p256_pem(&p256_key(b)).as_bytes()).unwrap();
        let sig = p256_sign(&p256_key(a), &bytes);
        prop_assert!(key_a.verify(&bytes, &sig));
        prop_assert!(!key_b.verify(&bytes, &sig));
        let mut other = bytes.clone();
        other.push(0);
        prop_assert!(!key_a.verify(&other, &sig));
        let ed_a = crate::PublicKey::from_pem(ed25519_pem(&ed25519_key(a)).as_bytes()).unwrap();
        let ed_b = crate::PublicKey::from_pem(ed25519_pem(&ed25519_key(b)).as_bytes()).unwrap();
        let sig = ed25519_sign(&ed25519_key(a), &bytes);
        prop_assert!(ed_a.verify(&bytes, &sig));
        prop_assert!(!ed_b.verify(&bytes, &sig));
        prop_assert!(!ed_a.verify(&other, &sig));
    }

    // Arbitrary annotations and payloads never panic the verifier and are
    // never accepted without the key's signature.
    #[test]
    fn arbitrary_layers_are_never_accepted(
        payload_bytes in proptest::collection::vec(any::<u8>(), 0..200),
        annotation in "\\PC{0,120}",
    ) {
        let d = digest(20);
        let bad = SignatureLayer {
            digest: sha256(&payload_bytes),
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), annotation)]),
            payload: Some(payload_bytes),
        };
        let r = run(&p256_policy(REPOSITORY), IMAGE, &d, &source(IMAGE, &d, vec![bad]));
        prop_assert!(r.is_err());
    }
}
