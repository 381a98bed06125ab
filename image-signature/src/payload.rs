//! The simple-signing payload cosign signs (containers-signature(5), in
//! its sigstore form):
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"registry.example/app"},
//!              "image":{"docker-manifest-digest":"sha256:…"},
//!              "type":"cosign container image signature"},
//!  "optional":null}
//! ```
//!
//! Parsed as strictly as containers/image parses it: every `critical` field
//! present, nothing else there, no duplicated field; `optional` is `null`
//! or an object whose `creator` (a string) and `timestamp` (an integer) are
//! checked and whose other members are free-form. The payload is only
//! parsed after its signature verified: until then it is attacker-chosen
//! bytes and nothing in it is believed.

use crate::error::PayloadError;
use serde::Deserialize;

/// The layer media type of a cosign signature.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// The layer annotation holding the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// `critical.type` of every cosign (and containers/image sigstore)
/// signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// The largest payload we read: real payloads are a few hundred bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// What a verified payload claims.
///
/// # Examples
///
/// ```
/// use image_signature::SimpleSigningPayload;
/// let digest = format!("sha256:{}", "a".repeat(64));
/// let json = format!(
///     r#"{{"critical":{{"identity":{{"docker-reference":"quay.io/app"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
/// );
/// let payload = SimpleSigningPayload::parse(json.as_bytes())?;
/// assert_eq!(payload.docker_reference, "quay.io/app");
/// assert_eq!(payload.manifest_digest, digest);
/// # Ok::<(), image_signature::PayloadError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimpleSigningPayload {
    /// `critical.identity.docker-reference`: the image the signer named
    /// (cosign writes the repository only, containers/image `repo:tag`).
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`: the manifest signed.
    pub manifest_digest: String,
    /// `optional.creator`, if given.
    pub creator: Option<String>,
    /// `optional.timestamp` (Unix seconds), if given.
    pub timestamp: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    critical: Critical,
    // A plain Value so that the field is required (an Option would let it
    // be missing); its shape is checked by hand below.
    optional: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

impl SimpleSigningPayload {
    /// Parses payload bytes (at most [`MAX_PAYLOAD_BYTES`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(PayloadError::TooLarge {
                size: bytes.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(PayloadError::Json)?;
        if raw.critical.kind != SIGNATURE_TYPE {
            return Err(PayloadError::WrongType(raw.critical.kind));
        }
        let digest = raw.critical.image.docker_manifest_digest;
        if !is_digest(&digest) {
            return Err(PayloadError::BadDigest(digest));
        }
        let (creator, timestamp) = optional_fields(&raw.optional)?;
        Ok(Self {
            docker_reference: raw.critical.identity.docker_reference,
            manifest_digest: digest,
            creator,
            timestamp,
        })
    }
}

/// `creator` and `timestamp` out of `optional`, which cosign writes as
/// `null` when the signer added no annotations.
fn optional_fields(
    optional: &serde_json::Value,
) -> Result<(Option<String>, Option<i64>), PayloadError> {
    let map = match optional {
        serde_json::Value::Null => return Ok((None, None)),
        serde_json::Value::Object(map) => map,
        _ => return Err(PayloadError::Optional("neither null nor an object")),
    };
    let creator = match map.get("creator") {
        None => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(PayloadError::Optional("creator is not a string")),
    };
    let timestamp = match map.get("timestamp") {
        None => None,
        // A float with a fraction is refused, as containers/image does:
        // whole seconds are the format.
        Some(serde_json::Value::Number(n)) => Some(
            n.as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or(PayloadError::Optional("timestamp is not an integer"))?,
        ),
        Some(_) => return Err(PayloadError::Optional("timestamp is not a number")),
    };
    Ok((creator, timestamp))
}

/// Whether `s` is an OCI digest of a SHA-2 algorithm: `algorithm:hex` with
/// lowercase hex of the algorithm's length.
pub(crate) fn is_digest(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The hex part of `sha256:<64 lowercase hex>`, the only digest form a
/// cosign signature tag is made from here.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|_| is_digest(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00";

    fn payload(critical: &str, optional: &str) -> String {
        format!(r#"{{"critical":{critical},"optional":{optional}}}"#)
    }

    fn critical(reference: &str, digest: &str, kind: &str) -> String {
        format!(
            r#"{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{kind}"}}"#
        )
    }

    #[test]
    fn cosign_and_containers_image_payloads_parse() {
        let cosign = payload(&critical("quay.io/a/b", D, SIGNATURE_TYPE), "null");
        let p = SimpleSigningPayload::parse(cosign.as_bytes()).unwrap();
        assert_eq!(
            (p.docker_reference.as_str(), p.manifest_digest.as_str()),
            ("quay.io/a/b", D)
        );
        assert_eq!((p.creator, p.timestamp), (None, None));
        let skopeo = payload(
            &critical("quay.io/a/b:v1", D, SIGNATURE_TYPE),
            r#"{"creator":"containers/image 5.21","timestamp":1657296609,"x":[1]}"#,
        );
        let p = SimpleSigningPayload::parse(skopeo.as_bytes()).unwrap();
        assert_eq!(p.creator.as_deref(), Some("containers/image 5.21"));
        assert_eq!(p.timestamp, Some(1657296609));
        let annotated = payload(&critical("a/b", D, SIGNATURE_TYPE), r#"{"team":"x"}"#);
        assert!(SimpleSigningPayload::parse(annotated.as_bytes()).is_ok());
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let good = critical("a/b", D, SIGNATURE_TYPE);
        let cases: Vec<(String, &str)> = vec![
            (
                payload(&critical("a/b", D, "atomic container signature"), "null"),
                "type",
            ),
            (
                payload(&critical("a/b", "sha256:abc", SIGNATURE_TYPE), "null"),
                "digest",
            ),
            (
                payload(&critical("a/b", &D.to_uppercase(), SIGNATURE_TYPE), "null"),
                "digest",
            ),
            (format!(r#"{{"critical":{good}}}"#), "json"),
            (
                format!(r#"{{"critical":{good},"optional":null,"extra":1}}"#),
                "json",
            ),
            (
                format!(r#"{{"critical":{good},"critical":{good},"optional":null}}"#),
                "json",
            ),
            (
                payload(&good.replace(r#","type""#, r#","more":1,"type""#), "null"),
                "json",
            ),
            (payload(&good, "[]"), "optional"),
            (payload(&good, r#"{"creator":1}"#), "optional"),
            (payload(&good, r#"{"timestamp":1.5}"#), "optional"),
            (payload(&good, r#"{"timestamp":"now"}"#), "optional"),
            ("null".into(), "json"),
            ("".into(), "json"),
        ];
        for (bytes, want) in cases {
            let err = SimpleSigningPayload::parse(bytes.as_bytes()).unwrap_err();
            let got = match err {
                PayloadError::WrongType(_) => "type",
                PayloadError::BadDigest(_) => "digest",
                PayloadError::Json(_) => "json",
                PayloadError::Optional(_) => "optional",
                PayloadError::TooLarge { .. } => "size",
            };
            assert_eq!(got, want, "{bytes}");
        }
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            SimpleSigningPayload::parse(&big),
            Err(PayloadError::TooLarge { .. })
        ));
    }

    #[test]
    fn digests() {
        assert!(is_digest(D));
        assert!(is_digest(&format!("sha512:{}", "0".repeat(128))));
        assert!(!is_digest("sha256:"));
        assert!(!is_digest(&format!("md5:{}", "0".repeat(32))));
        assert_eq!(sha256_hex(D), Some(&D[7..]));
        assert_eq!(sha256_hex(&format!("sha512:{}", "0".repeat(128))), None);
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SimpleSigningPayload::parse(&bytes);
        }

        #[test]
        fn parser_never_panics_on_near_payloads(
            reference in "\\PC{0,40}",
            digest in "(sha256:[0-9a-f]{0,70}|\\PC{0,20})",
            optional in "(null|\\{\\}|\\{\"timestamp\":-?[0-9e.]{1,25}\\}|\\PC{0,10})",
        ) {
            let json = serde_json::json!({
                "critical": {"identity": {"docker-reference": reference},
                             "image": {"docker-manifest-digest": digest},
                             "type": SIGNATURE_TYPE}});
            let text = json.to_string();
            let text = format!("{},\"optional\":{optional}}}", &text[..text.len() - 1]);
            if let Ok(p) = SimpleSigningPayload::parse(text.as_bytes()) {
                prop_assert_eq!(p.docker_reference, reference);
                prop_assert!(is_digest(&p.manifest_digest));
            }
        }
    }
}
