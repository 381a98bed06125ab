//! [`RegistrySource`]: signature images fetched over oci-client, through
//! the same mirror configuration as the pull (image-store's
//! [`RegistriesConfig::endpoints`]: the longest matching prefix's mirrors
//! in order, then the registry itself unless `mirrors_only`, each over
//! plain HTTP when `insecure`), with the same client settings as
//! image-store's pull.
//!
//! Which endpoint is asked: each in turn until one has the signature tag.
//! An endpoint that answers "no such manifest" sends us to the next; one
//! that cannot be reached too, but then "none has it" is no longer a
//! conclusion (the image might be signed where we could not look), so the
//! result is [`SourceError::Unreachable`], not "unsigned". containers/image
//! asks only the endpoint the image came from; image-store does not say
//! which that was, and any endpoint will do: nothing fetched is believed
//! before it verifies against the policy's keys and `D`.
//!
//! Bounds: payload blobs are streamed and cut at
//! [`Limits::payload_bytes`]. The manifest's size is checked against
//! [`Limits::manifest_bytes`] once received: oci-client 0.18 reads manifest
//! bodies whole and has no hook to stop earlier.

use crate::error::SourceError;
use crate::source::{
    parse_signature_manifest, signature_tag, LayerDescriptor, Limits, SignatureImage,
    SignatureLayer, SignatureSource,
};
use async_trait::async_trait;
use futures_util::StreamExt as _;
use image_store::{Endpoint, ImageReference, RegistriesConfig};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::time::Duration;

/// Fetches cosign signature images from registries and their mirrors.
///
/// # Examples
///
/// ```
/// use image_signature::RegistrySource;
/// use image_store::{RegistriesConfig, RegistryConfig};
/// use oci_client::secrets::RegistryAuth;
/// let registries = RegistriesConfig { registries: vec![RegistryConfig {
///     prefix: "registry.k8s.io".into(),
///     mirrors: vec!["127.0.0.1:5000".into()],
///     insecure: true,
///     mirrors_only: true,
/// }]};
/// let source = RegistrySource::new(registries, RegistryAuth::Anonymous);
/// # let _ = source;
/// ```
#[derive(Clone, Debug)]
pub struct RegistrySource {
    registries: RegistriesConfig,
    auth: RegistryAuth,
}

impl RegistrySource {
    /// A source over the daemon's `registries`, authenticating as the pull
    /// did (`auth`).
    pub fn new(registries: RegistriesConfig, auth: RegistryAuth) -> Self {
        Self { registries, auth }
    }
}

/// How one endpoint's attempt ended, when it did not produce signatures.
enum Attempt {
    /// The endpoint has no such tag.
    NotFound,
    /// The endpoint could not say (network, server error, refused).
    Failed(String),
    /// The endpoint served something we refuse: no point asking further.
    Refused(SourceError),
}

#[async_trait]
impl SignatureSource for RegistrySource {
    async fn signatures(
        &self,
        image: &ImageReference,
        digest: &str,
        limits: &Limits,
    ) -> Result<Option<SignatureImage>, SourceError> {
        let tag = signature_tag(digest).ok_or_else(|| SourceError::BadDigest {
            image: image.to_string(),
            digest: digest.to_string(),
        })?;
        let mut failures = Vec::new();
        for endpoint in self.registries.endpoints(image) {
            let at = Reference::with_tag(
                endpoint.host.clone(),
                endpoint.repository.clone(),
                tag.clone(),
            );
            let location = location(&endpoint, &tag);
            match from_endpoint(&client(&endpoint), &at, &self.auth, &location, limits).await {
                Ok(found) => return Ok(Some(found)),
                Err(Attempt::NotFound) => {
                    tracing::debug!(%image, %location, "no signature image here");
                }
                Err(Attempt::Failed(why)) => {
                    tracing::info!(%image, %location, %why, "signature endpoint failed");
                    failures.push(format!("{location}: {why}"));
                }
                Err(Attempt::Refused(e)) => return Err(e),
            }
        }
        if failures.is_empty() {
            Ok(None)
        } else {
            Err(SourceError::Unreachable {
                image: image.to_string(),
                attempts: failures,
            })
        }
    }
}

fn location(endpoint: &Endpoint, tag: &str) -> String {
    let scheme = if endpoint.insecure { "http" } else { "https" };
    format!("{scheme}://{}/{}:{tag}", endpoint.host, endpoint.repository)
}

/// A client configured as image-store's pull configures its own (its
/// builder is private to image-store), with a shorter read timeout: a
/// signature image is a few KiB.
fn client(endpoint: &Endpoint) -> Client {
    Client::new(ClientConfig {
        protocol: if endpoint.insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    })
}

async fn from_endpoint(
    client: &Client,
    at: &Reference,
    auth: &RegistryAuth,
    location: &str,
    limits: &Limits,
) -> Result<SignatureImage, Attempt> {
    let accepted = [OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE];
    let (manifest, _) = client
        .pull_manifest_raw(at, auth, &accepted)
        .await
        .map_err(|e| {
            if is_not_found(&e) {
                Attempt::NotFound
            } else {
                Attempt::Failed(e.to_string())
            }
        })?;
    let descriptors =
        parse_signature_manifest(&manifest, location, limits).map_err(Attempt::Refused)?;
    let mut layers = Vec::with_capacity(descriptors.len());
    for descriptor in descriptors {
        let payload = if descriptor.size > limits.payload_bytes as u64 {
            None
        } else {
            payload(client, at, &descriptor, limits.payload_bytes).await?
        };
        layers.push(SignatureLayer {
            digest: descriptor.digest,
            annotations: descriptor.annotations,
            payload,
        });
    }
    Ok(SignatureImage {
        location: location.to_string(),
        layers,
    })
}

/// The payload blob, read up to `limit` bytes; `None` past that.
async fn payload(
    client: &Client,
    at: &Reference,
    descriptor: &LayerDescriptor,
    limit: usize,
) -> Result<Option<Vec<u8>>, Attempt> {
    let failed = |e: &dyn std::fmt::Display| {
        Attempt::Failed(format!("signature payload {}: {e}", descriptor.digest))
    };
    let blob = OciDescriptor {
        digest: descriptor.digest.clone(),
        size: i64::try_from(descriptor.size).unwrap_or(i64::MAX),
        ..Default::default()
    };
    let mut stream = client
        .pull_blob_stream(at, &blob)
        .await
        .map_err(|e| failed(&e))?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failed(&e))?;
        if bytes.len() + chunk.len() > limit {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

/// Whether the registry said the signature tag (or the repository) does
/// not exist, as distribution says it: 404 with MANIFEST_UNKNOWN,
/// NAME_UNKNOWN or NOT_FOUND, or a bare 404.
fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    }
}
