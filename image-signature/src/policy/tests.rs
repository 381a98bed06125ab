use super::*;
use crate::key::tests::{ed25519_key, ed25519_pem, p256_key, p256_pem};
use proptest::prelude::*;
use std::path::PathBuf;

/// A directory with `p256.pub`, `other.pub` and `ed25519.pub`.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p256.pub"), p256_pem(&p256_key(1))).unwrap();
        std::fs::write(dir.path().join("other.pub"), p256_pem(&p256_key(2))).unwrap();
        std::fs::write(dir.path().join("ed25519.pub"), ed25519_pem(&ed25519_key(3))).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn data(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem)
}

fn with_docker(scopes: &str) -> String {
    format!(r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{{scopes}}}}}}}"#)
}

fn sigstore(keys: &str, identity: &str) -> String {
    let identity = if identity.is_empty() {
        String::new()
    } else {
        format!(r#","signedIdentity":{identity}"#)
    };
    format!(r#"{{"type":"sigstoreSigned",{keys}{identity}}}"#)
}

fn only_requirement(json: &str) -> Requirement {
    let policy =
        SignaturePolicy::from_json(with_docker(&format!(r#""quay.io":[{json}]"#)).as_bytes())
            .unwrap_or_else(|e| panic!("{json}: {e}"));
    let (_, list) = policy.requirements_for(&"quay.io/a:1".parse().unwrap());
    list[0].clone()
}

#[test]
fn every_supported_requirement_parses() {
    let keys = Keys::new();
    assert_eq!(
        only_requirement(r#"{"type":"insecureAcceptAnything"}"#),
        Requirement::InsecureAcceptAnything
    );
    assert_eq!(
        only_requirement(r#"{"type":"reject"}"#),
        Requirement::Reject
    );
    let p256 = p256_pem(&p256_key(1));
    let ed = ed25519_pem(&ed25519_key(3));
    let cases = [
        (format!(r#""keyPath":"{}""#, keys.path("p256.pub")), 1),
        (
            format!(
                r#""keyPaths":["{}","{}"]"#,
                keys.path("p256.pub"),
                keys.path("ed25519.pub")
            ),
            2,
        ),
        (format!(r#""keyData":"{}""#, data(&p256)), 1),
        (
            format!(r#""keyDatas":["{}","{}"]"#, data(&p256), data(&ed)),
            2,
        ),
    ];
    for (key_fields, count) in cases {
        match only_requirement(&sigstore(&key_fields, "")) {
            Requirement::SigstoreSigned {
                keys,
                signed_identity,
            } => {
                assert_eq!(keys.len(), count, "{key_fields}");
                assert_eq!(signed_identity, SignedIdentity::MatchRepoDigestOrExact);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn every_signed_identity_parses() {
    let key = format!(r#""keyData":"{}""#, data(&p256_pem(&p256_key(1))));
    let cases = [
        (r#"{"type":"matchExact"}"#, SignedIdentity::MatchExact),
        (
            r#"{"type":"matchRepoDigestOrExact"}"#,
            SignedIdentity::MatchRepoDigestOrExact,
        ),
        (
            r#"{"type":"matchRepository"}"#,
            SignedIdentity::MatchRepository,
        ),
        (
            r#"{"type":"exactReference","dockerReference":"quay.io/a:v1"}"#,
            SignedIdentity::ExactReference("quay.io/a:v1".into()),
        ),
        (
            r#"{"type":"exactRepository","dockerRepository":"quay.io/a"}"#,
            SignedIdentity::ExactRepository("quay.io/a".into()),
        ),
        (
            r#"{"type":"remapIdentity","prefix":"mirror.local/v","signedPrefix":"vendor.example"}"#,
            SignedIdentity::RemapIdentity {
                prefix: "mirror.local/v".into(),
                signed_prefix: "vendor.example".into(),
            },
        ),
    ];
    for (json, want) in cases {
        match only_requirement(&sigstore(&key, json)) {
            Requirement::SigstoreSigned {
                signed_identity, ..
            } => assert_eq!(signed_identity, want, "{json}"),
            other => panic!("{other:?}"),
        }
    }
}

/// The error's variant (and reason variant), for tables.
fn kind(e: &PolicyError) -> String {
    match e {
        PolicyError::Read { .. } => "read".into(),
        PolicyError::TooLarge { .. } => "too-large".into(),
        PolicyError::Syntax { .. } => "syntax".into(),
        PolicyError::Invalid { reason, .. } => match reason {
            InvalidPolicy::EmptyRequirements => "empty",
            InvalidPolicy::UnsupportedRequirement { .. } => "unsupported",
            InvalidPolicy::UnknownRequirement(_) => "unknown-requirement",
            InvalidPolicy::FieldNotAllowed { .. } => "field",
            InvalidPolicy::KeySources(_) => "key-sources",
            InvalidPolicy::Key { source, .. } => match source {
                KeyError::Read(_) => "key-read",
                KeyError::RelativePath => "key-relative",
                KeyError::TooLarge { .. } => "key-too-large",
                KeyError::Base64(_) => "key-base64",
                KeyError::Pem(_) => "key-pem",
                KeyError::UnsupportedAlgorithm(_) => "key-algorithm",
                KeyError::Invalid(_) => "key-invalid",
            },
            InvalidPolicy::UnknownIdentity(_) => "unknown-identity",
            InvalidPolicy::Identity { .. } => "identity",
            InvalidPolicy::Scope { .. } => "scope",
        }
        .into(),
    }
}

#[test]
fn malformed_or_unsupported_policies_are_refused_with_typed_errors() {
    let keys = Keys::new();
    let key = format!(r#""keyPath":"{}""#, keys.path("p256.pub"));
    let in_scope = |req: &str| with_docker(&format!(r#""quay.io":[{req}]"#));
    let cases: Vec<(String, &str)> = vec![
        (r#"{"transports":{}}"#.into(), "syntax"),
        (r#"{"default":[{"type":"reject"}],"extra":1}"#.into(), "syntax"),
        (r#"{"default":[{"type":"reject"}],"default":[{"type":"reject"}]}"#.into(), "syntax"),
        (r#"{"default":[{"type":"reject"}],"transports":{"docker":{},"docker":{}}}"#.into(), "syntax"),
        (with_docker(r#""quay.io":[{"type":"reject"}],"quay.io":[{"type":"reject"}]"#), "syntax"),
        (in_scope(r#"{"type":"reject","type":"reject"}"#), "syntax"),
        (in_scope(r#"{"type":"reject","color":"red"}"#), "syntax"),
        (in_scope(r#"{"keyPath":"/k"}"#), "syntax"),
        ("not json".into(), "syntax"),
        (r#"{"default":[]}"#.into(), "empty"),
        (with_docker(r#""quay.io":[]"#), "empty"),
        (in_scope(r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k.gpg"}"#), "unsupported"),
        (in_scope(r#"{"type":"signedBaseLayer","baseLayerIdentity":{"type":"matchExact"}}"#), "unsupported"),
        (in_scope(r#"{"type":"sigstoreSigned","fulcio":{"caPath":"/ca","oidcIssuer":"i","subjectEmail":"e"},"rekorPublicKeyPath":"/r"}"#), "unsupported"),
        (in_scope(r#"{"type":"sigstoreSigned","pki":{"caRootsPath":"/ca","subjectEmail":"e"}}"#), "unsupported"),
        (in_scope(&sigstore(&format!(r#"{key},"rekorPublicKeyPath":"/rekor.pub""#), "")), "unsupported"),
        (in_scope(&sigstore(&format!(r#"{key},"rekorPublicKeyDatas":["eA=="]"#), "")), "unsupported"),
        (in_scope(r#"{"type":"acceptEverything"}"#), "unknown-requirement"),
        (in_scope(&format!(r#"{{"type":"reject",{key}}}"#)), "field"),
        (in_scope(r#"{"type":"insecureAcceptAnything","signedIdentity":{"type":"matchExact"}}"#), "field"),
        (in_scope(&sigstore(&format!(r#"{key},"keyType":"GPGKeys""#), "")), "field"),
        (in_scope(r#"{"type":"sigstoreSigned"}"#), "key-sources"),
        (in_scope(&sigstore(&format!(r#"{key},"keyData":"eA==""#), "")), "key-sources"),
        (in_scope(&sigstore(r#""keyPaths":[]"#, "")), "key-sources"),
        (in_scope(&sigstore(r#""keyPath":"relative/cosign.pub""#, "")), "key-relative"),
        (in_scope(&sigstore(&format!(r#""keyPath":"{}""#, keys.path("missing.pub")), "")), "key-read"),
        (in_scope(&sigstore(r#""keyData":"not base64!""#, "")), "key-base64"),
        (in_scope(&sigstore(&format!(r#""keyData":"{}""#, data("hello")), "")), "key-pem"),
        (in_scope(&sigstore(&format!(r#""keyDatas":["{}","eA=="]"#, data(&p256_pem(&p256_key(1)))), "")), "key-pem"),
        (in_scope(&sigstore(&key, r#"{"type":"matchAnything"}"#)), "unknown-identity"),
        (in_scope(&sigstore(&key, r#"{"type":"exactReference"}"#)), "identity"),
        (in_scope(&sigstore(&key, r#"{"type":"exactReference","dockerReference":"quay.io/a"}"#)), "identity"),
        (in_scope(&sigstore(&key, r#"{"type":"exactRepository","dockerRepository":"Not Valid"}"#)), "identity"),
        (in_scope(&sigstore(&key, r#"{"type":"matchExact","prefix":"quay.io"}"#)), "identity"),
        (in_scope(&sigstore(&key, r#"{"type":"remapIdentity","prefix":"quay.io"}"#)), "identity"),
        (in_scope(&sigstore(&key, r#"{"type":"remapIdentity","prefix":"quay.io","signedPrefix":"x.io/a:1"}"#)), "identity"),
        (in_scope(&sigstore(&key, r#"{"type":"matchExact","color":"red"}"#)), "syntax"),
        (with_docker(r#""busybox":[{"type":"reject"}]"#), "scope"),
        (with_docker(r#""example*.*.com":[{"type":"reject"}]"#), "scope"),
        (
            r#"{"default":[{"type":"reject"}],"transports":{"atomic":{"h:5000/ns":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]}}}"#.into(),
            "unsupported",
        ),
    ];
    for (json, want) in cases {
        let err = SignaturePolicy::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(kind(&err), want, "{json}\n{err}");
    }
}

#[test]
fn errors_name_the_place_and_the_requirement() {
    let json = with_docker(
        r#""quay.io/a":[{"type":"insecureAcceptAnything"},{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]"#,
    );
    let err = SignaturePolicy::from_json(json.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"transports.docker["quay.io/a"][1]"#),
        "{err}"
    );
    assert!(err.contains("signedBy"), "{err}");
    let err = SignaturePolicy::from_json(
        with_docker(r#""q.io":[{"type":"sigstoreSigned","fulcio":{}}]"#).as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("sigstoreSigned with fulcio"), "{err}");
    let err = SignaturePolicy::from_json(br#"{"default":[{"type":"reject","x":1}]}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `x`"), "{err}");
}

#[test]
fn scope_precedence_most_specific_wins() {
    let d = format!("sha256:{}", "a".repeat(64));
    let json = format!(
        r#"{{"default":[{{"type":"reject"}}],"transports":{{
            "docker":{{
                "":[{{"type":"reject"}}],
                "*.com":[{{"type":"reject"}}],
                "*.example.com":[{{"type":"reject"}}],
                "reg.example.com":[{{"type":"reject"}}],
                "reg.example.com/ns":[{{"type":"reject"}}],
                "reg.example.com/ns/app":[{{"type":"reject"}}],
                "reg.example.com/ns/app:v1":[{{"type":"reject"}}],
                "reg.example.com/ns/app@{d}":[{{"type":"reject"}}],
                "localhost:5000":[{{"type":"reject"}}],
                "docker.io/library":[{{"type":"reject"}}]
            }},
            "oci":{{"":[{{"type":"insecureAcceptAnything"}}]}}
        }}}}"#
    );
    let policy = SignaturePolicy::from_json(json.as_bytes()).unwrap();
    let cases = [
        ("reg.example.com/ns/app:v1", "reg.example.com/ns/app:v1"),
        (
            &format!("reg.example.com/ns/app:v1@{d}"),
            &format!("reg.example.com/ns/app@{d}"),
        ),
        ("reg.example.com/ns/app:v2", "reg.example.com/ns/app"),
        ("reg.example.com/ns/other", "reg.example.com/ns"),
        ("reg.example.com/x/y", "reg.example.com"),
        ("other.example.com/ns/app:v1", "*.example.com"),
        ("deep.sub.example.com/app", "*.example.com"),
        ("example.com/app", "*.com"),
        ("quay.io/app", ""),
        ("localhost:5000/app", "localhost:5000"),
        ("busybox", "docker.io/library"),
        ("foo/bar", ""),
    ];
    for (image, want) in cases {
        let (scope, _) = policy.requirements_for(&image.parse().unwrap());
        let got = match scope {
            PolicyScope::Scope { scope, .. } => scope,
            PolicyScope::TransportDefault { .. } => String::new(),
            PolicyScope::Default => "<default>".into(),
        };
        assert_eq!(got, want, "{image}");
    }
    let plain =
        SignaturePolicy::from_json(br#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    assert_eq!(
        plain.requirements_for(&"busybox".parse().unwrap()).0,
        PolicyScope::Default
    );
}

#[test]
fn files_are_read_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(&path, br#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    assert!(SignaturePolicy::load(&path).is_ok());
    let mut big = br#"{"default":[{"type":"insecureAcceptAnything"}]}"#.to_vec();
    big.resize(MAX_POLICY_BYTES + 1, b' ');
    std::fs::write(&path, &big).unwrap();
    assert_eq!(
        kind(&SignaturePolicy::load(&path).unwrap_err()),
        "too-large"
    );
    assert_eq!(
        kind(&SignaturePolicy::from_json(&big).unwrap_err()),
        "too-large"
    );
    let missing = PathBuf::from("/nonexistent/policy.json");
    assert_eq!(kind(&SignaturePolicy::load(&missing).unwrap_err()), "read");
    // Devices and FIFOs are refused at once, never read or waited on.
    assert_eq!(
        kind(&SignaturePolicy::load(Path::new("/dev/zero")).unwrap_err()),
        "read"
    );
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert_eq!(kind(&SignaturePolicy::load(&fifo).unwrap_err()), "read");
    for special in ["/dev/zero".to_string(), fifo.display().to_string()] {
        let json = with_docker(&format!(
            r#""quay.io":[{}]"#,
            sigstore(&format!(r#""keyPath":"{special}""#), "")
        ));
        assert_eq!(
            kind(&SignaturePolicy::from_json(json.as_bytes()).unwrap_err()),
            "key-read",
            "{special}"
        );
    }
    let key = dir.path().join("big.pub");
    std::fs::write(&key, vec![b' '; MAX_KEY_BYTES + 1]).unwrap();
    let json = with_docker(&format!(
        r#""quay.io":[{}]"#,
        sigstore(&format!(r#""keyPath":"{}""#, key.display()), "")
    ));
    assert_eq!(
        kind(&SignaturePolicy::from_json(json.as_bytes()).unwrap_err()),
        "key-too-large"
    );
}

proptest! {
    #[test]
    fn parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = SignaturePolicy::from_json(&bytes);
    }

    #[test]
    fn parser_never_panics_on_near_policies(
        scope in "(\\*\\.)?[a-z.:0-9/@*-]{0,30}",
        kind in "(reject|insecureAcceptAnything|sigstoreSigned|signedBy|x)",
        identity in "(matchExact|matchRepository|exactReference|remapIdentity|y)",
        value in "[a-zA-Z0-9./:@-]{0,30}",
    ) {
        let json = format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{scope}":[{{"type":"{kind}","keyData":"{value}","signedIdentity":{{"type":"{identity}","prefix":"{value}","signedPrefix":"{value}"}}}}]}}}}}}"#
        );
        let _ = SignaturePolicy::from_json(json.as_bytes());
    }
}
