//! Where signatures come from. The crate does no networking of its own: a
//! [`SignatureSource`] fetches the signature image (cosign's
//! `<repository>:sha256-<hex>.sig` tag) and its simple-signing payloads,
//! within [`Limits`]; [`crate::RegistrySource`] does so over image-store's
//! bounded distribution client with the daemon's mirrors, [`MemorySource`]
//! from memory.
//!
//! Nothing a source returns is trusted: the verifier checks each payload
//! against its layer digest and signature before reading it.

use crate::error::SourceError;
use crate::payload::{sha256_hex, MAX_PAYLOAD_BYTES, SIMPLE_SIGNING_MEDIA_TYPE};
use async_trait::async_trait;
use image_store::ImageReference;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Bounds on what a source reads for one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The signature manifest's size.
    pub manifest_bytes: usize,
    /// One payload's size.
    pub payload_bytes: usize,
    /// Simple-signing layers in the manifest. More is refused as a whole:
    /// each is a blob fetch and a signature check.
    pub signatures: usize,
}

impl Default for Limits {
    /// 4 MiB manifests (containers/image's limit), 64 KiB payloads, 32
    /// signatures.
    fn default() -> Self {
        Self {
            manifest_bytes: 4 * 1024 * 1024,
            payload_bytes: MAX_PAYLOAD_BYTES,
            signatures: 32,
        }
    }
}

/// The cosign signature tag of manifest `digest`: `sha256-<hex>.sig`.
///
/// # Examples
///
/// ```
/// let digest = format!("sha256:{}", "ab".repeat(32));
/// assert_eq!(
///     image_signature::signature_tag(&digest),
///     Some(format!("sha256-{}.sig", "ab".repeat(32)))
/// );
/// assert_eq!(image_signature::signature_tag("latest"), None);
/// ```
pub fn signature_tag(digest: &str) -> Option<String> {
    sha256_hex(digest).map(|hex| format!("sha256-{hex}.sig"))
}

/// The signature image of one manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureImage {
    /// Where it came from (`http://127.0.0.1:5000/app:sha256-….sig`), for
    /// messages.
    pub location: String,
    /// Its simple-signing layers, in manifest order; other layers
    /// (attachments of other kinds) are left out.
    pub layers: Vec<SignatureLayer>,
}

/// One simple-signing layer: a signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The layer descriptor's digest: the payload's sha256.
    pub digest: String,
    /// The layer descriptor's annotations (the signature is in
    /// [`crate::SIGNATURE_ANNOTATION`]).
    pub annotations: BTreeMap<String, String>,
    /// The payload, or `None` when it is larger than
    /// [`Limits::payload_bytes`] (by its descriptor or by what the registry
    /// sent) and was not read whole.
    pub payload: Option<Vec<u8>>,
}

/// A layer of a signature manifest, before its payload is fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// `digest`.
    pub digest: String,
    /// `size`.
    pub size: u64,
    /// `annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// Fetches signature images. Implemented over the registries by
/// [`crate::RegistrySource`]; with the `mock` feature, `MockSignatureSource`
/// (mockall) stands in for it in other crates' tests.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SignatureSource: Send + Sync {
    /// The signature image for manifest `digest` of `image` (the logical
    /// reference; the source maps it to mirrors), or `None` when there is
    /// none. Reads stay within `limits`.
    async fn signatures(
        &self,
        image: &ImageReference,
        digest: &str,
        limits: &Limits,
    ) -> Result<Option<SignatureImage>, SourceError>;
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// OCI image manifests (what cosign writes) and Docker v2 schema 2
/// manifests (what cosign writes with `COSIGN_DOCKER_MEDIA_TYPES=1`).
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The simple-signing layers of a signature manifest, checked against
/// `limits`. For sources: call it on the manifest bytes, then fetch each
/// layer's payload (unless its size is over [`Limits::payload_bytes`]).
///
/// # Examples
///
/// ```
/// use image_signature::{parse_signature_manifest, Limits};
/// let manifest = br#"{"schemaVersion":2,"layers":[]}"#;
/// let layers = parse_signature_manifest(manifest, "example", &Limits::default())?;
/// assert!(layers.is_empty());
/// # Ok::<(), image_signature::SourceError>(())
/// ```
pub fn parse_signature_manifest(
    bytes: &[u8],
    location: &str,
    limits: &Limits,
) -> Result<Vec<LayerDescriptor>, SourceError> {
    let bad = |why: String| SourceError::BadManifest {
        location: location.to_string(),
        why,
    };
    if bytes.len() > limits.manifest_bytes {
        return Err(SourceError::ManifestTooLarge {
            location: location.to_string(),
            size: Some(bytes.len()),
            limit: limits.manifest_bytes,
        });
    }
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not an image manifest: {e}")))?;
    if raw.schema_version != 2 {
        return Err(bad(format!("schemaVersion {}", raw.schema_version)));
    }
    if let Some(t) = raw
        .media_type
        .filter(|t| !MANIFEST_TYPES.contains(&t.as_str()))
    {
        return Err(bad(format!("media type {t:?} is not an image manifest")));
    }
    let layers: Vec<LayerDescriptor> = raw
        .layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .map(|l| LayerDescriptor {
            digest: l.digest,
            size: l.size,
            annotations: l.annotations,
        })
        .collect();
    if layers.len() > limits.signatures {
        return Err(SourceError::TooManySignatures {
            location: location.to_string(),
            count: layers.len(),
            limit: limits.signatures,
        });
    }
    Ok(layers)
}

/// Signature images held in memory, keyed by repository name
/// (`registry/repository`) and manifest digest: for tests, and for
/// signatures obtained some other way (an air-gapped bundle).
///
/// # Examples
///
/// ```
/// use image_signature::{Limits, MemorySource, SignatureImage, SignatureSource};
/// # tokio_test(async {
/// let digest = format!("sha256:{}", "0".repeat(64));
/// let mut source = MemorySource::default();
/// source.insert("quay.io/app", &digest, SignatureImage::default());
/// let image = "quay.io/app:v1".parse().unwrap();
/// let found = source.signatures(&image, &digest, &Limits::default()).await;
/// assert_eq!(found, Ok(Some(SignatureImage::default())));
/// # });
/// # fn tokio_test(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemorySource {
    images: HashMap<(String, String), SignatureImage>,
}

impl MemorySource {
    /// Holds `signatures` for manifest `digest` of repository `name`.
    pub fn insert(&mut self, name: &str, digest: &str, signatures: SignatureImage) {
        self.images
            .insert((name.to_string(), digest.to_string()), signatures);
    }
}

#[async_trait]
impl SignatureSource for MemorySource {
    async fn signatures(
        &self,
        image: &ImageReference,
        digest: &str,
        limits: &Limits,
    ) -> Result<Option<SignatureImage>, SourceError> {
        let Some(found) = self.images.get(&(image.name(), digest.to_string())) else {
            return Ok(None);
        };
        if found.layers.len() > limits.signatures {
            return Err(SourceError::TooManySignatures {
                location: found.location.clone(),
                count: found.layers.len(),
                limit: limits.signatures,
            });
        }
        Ok(Some(found.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(layers: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:x"}},"layers":[{layers}]}}"#
        )
    }

    fn layer(media_type: &str, n: u32) -> String {
        format!(
            r#"{{"mediaType":"{media_type}","size":{n},"digest":"sha256:{n}","annotations":{{"dev.cosignproject.cosign/signature":"c2ln"}}}}"#
        )
    }

    #[test]
    fn simple_signing_layers_are_kept_in_order() {
        let other = "application/vnd.dsse.envelope.v1+json";
        let m = manifest(
            &[
                layer(SIMPLE_SIGNING_MEDIA_TYPE, 1),
                layer(other, 2),
                layer(SIMPLE_SIGNING_MEDIA_TYPE, 3),
            ]
            .join(","),
        );
        let layers = parse_signature_manifest(m.as_bytes(), "x", &Limits::default()).unwrap();
        let digests: Vec<_> = layers.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(digests, ["sha256:1", "sha256:3"]);
        assert_eq!(
            layers[0].annotations["dev.cosignproject.cosign/signature"],
            "c2ln"
        );
    }

    #[test]
    fn limits_and_shapes_are_enforced() {
        let limits = Limits {
            signatures: 2,
            ..Limits::default()
        };
        let three = manifest(&vec![layer(SIMPLE_SIGNING_MEDIA_TYPE, 1); 3].join(","));
        assert!(matches!(
            parse_signature_manifest(three.as_bytes(), "x", &limits),
            Err(SourceError::TooManySignatures { count: 3, .. })
        ));
        let small = Limits {
            manifest_bytes: 10,
            ..Limits::default()
        };
        assert!(matches!(
            parse_signature_manifest(three.as_bytes(), "x", &small),
            Err(SourceError::ManifestTooLarge { .. })
        ));
        for bad in [
            r#"{"schemaVersion":1,"layers":[]}"#.to_string(),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","layers":[]}"#.into(),
            r#"{"schemaVersion":2}"#.into(),
            "[]".into(),
        ] {
            assert!(
                matches!(
                    parse_signature_manifest(bad.as_bytes(), "x", &Limits::default()),
                    Err(SourceError::BadManifest { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn tags_are_made_from_sha256_digests_only() {
        assert_eq!(signature_tag("sha256:abc"), None);
        assert_eq!(signature_tag(&format!("sha512:{}", "0".repeat(128))), None);
    }
}
