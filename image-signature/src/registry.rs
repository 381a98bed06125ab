//! [`RegistrySource`]: signature images fetched with image-store's bounded
//! distribution client ([`RegistryClient`]), through the same mirror
//! configuration as the pull (image-store's [`Registries::endpoints`]:
//! the longest matching prefix's mirrors in order, then the registry itself
//! unless `mirrors_only`, each over plain HTTP when `insecure`, with its
//! entry's TLS files; nothing for a blocked image), with the pull's
//! authentication (the caller's, or the node's auth file's for each
//! endpoint: [`Registries::auth_for`]), timeouts and stall watch.
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
//! Bounds: every read goes through image-store's bounded client
//! ([`RegistryClient`], the pull's own), so nothing is buffered past its
//! cap: the manifest is refused once more than [`Limits::manifest_bytes`]
//! arrived (or as soon as its `Content-Length` says it would), each
//! payload once more than [`Limits::payload_bytes`] did, and error bodies
//! and token answers are capped too. A registry that stops sending, or
//! drips, fails the endpoint once a whole stall timeout passes with too
//! little progress (image-store's default, or the pull's own through
//! [`RegistrySource::with_options`]).

use crate::error::SourceError;
use crate::source::{
    parse_signature_manifest, signature_tag, LayerDescriptor, Limits, SignatureImage,
    SignatureLayer, SignatureSource,
};
use async_trait::async_trait;
use image_store::digest::Digest;
use image_store::distribution::{FetchError, RegistryClient};
use image_store::oci::{DOCKER_MANIFEST, OCI_MANIFEST};
use image_store::{Endpoint, ImageReference, PullOptions, Registries, RegistryAuth};

/// Fetches cosign signature images from registries and their mirrors.
///
/// # Examples
///
/// ```
/// use image_signature::RegistrySource;
/// use image_store::{PullOptions, RegistriesConfig, RegistryAuth, RegistryConfig};
/// use std::time::Duration;
/// let registries = RegistriesConfig { registries: vec![RegistryConfig {
///     prefix: "registry.k8s.io".into(),
///     mirrors: vec!["127.0.0.1:5000".into()],
///     insecure: true,
///     mirrors_only: true,
///     ..Default::default()
/// }]};
/// let options = PullOptions::default().with_stall_timeout(Duration::from_secs(30))?;
/// let source = RegistrySource::new(registries.load()?, RegistryAuth::Anonymous).with_options(options);
/// # let _ = source;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct RegistrySource {
    registries: Registries,
    auth: RegistryAuth,
    options: PullOptions,
}

impl RegistrySource {
    /// A source over the daemon's `registries`, authenticating as the pull
    /// did (`auth`, the caller's; each endpoint gets what
    /// [`Registries::auth_for`] gives it), with the default stall timeout.
    pub fn new(registries: Registries, auth: RegistryAuth) -> Self {
        Self {
            registries,
            auth,
            options: PullOptions::default(),
        }
    }

    /// The same, fetching under `options` (the pull's stall timeout): each
    /// endpoint fails once, for a whole stall timeout, too little arrives.
    pub fn with_options(mut self, options: PullOptions) -> Self {
        self.options = options;
        self
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
            let location = location(&endpoint, &tag);
            // One client (one stall watch, one token) per endpoint: a
            // mirror that failed slowly does not count against the next.
            let auth = self.registries.auth_for(&endpoint, image, &self.auth);
            let attempt = match RegistryClient::new(&endpoint, auth, &self.options) {
                Ok(client) => from_endpoint(&client, &tag, &location, limits).await,
                Err(e) => Err(Attempt::Failed(e.to_string())),
            };
            match attempt {
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

/// The signature image at `tag` on `client`'s endpoint, every read within
/// `limits`.
async fn from_endpoint(
    client: &RegistryClient,
    tag: &str,
    location: &str,
    limits: &Limits,
) -> Result<SignatureImage, Attempt> {
    let accepted = [OCI_MANIFEST, DOCKER_MANIFEST];
    let limit = limits.manifest_bytes as u64;
    let manifest = match client.fetch_manifest(tag, &accepted, limit).await {
        Ok(manifest) => manifest,
        Err(e) if e.is_not_found() => return Err(Attempt::NotFound),
        // The image's signatures are not to be read here; another endpoint
        // serving a smaller manifest would not make this one less hostile.
        Err(FetchError::TooLarge { declared, .. }) => {
            return Err(Attempt::Refused(SourceError::ManifestTooLarge {
                location: location.to_string(),
                size: declared.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                limit: limits.manifest_bytes,
            }))
        }
        Err(e) => return Err(Attempt::Failed(e.to_string())),
    };
    let descriptors =
        parse_signature_manifest(&manifest.bytes, location, limits).map_err(Attempt::Refused)?;
    let mut layers = Vec::with_capacity(descriptors.len());
    for descriptor in descriptors {
        let payload = if descriptor.size > limits.payload_bytes as u64 {
            None
        } else {
            payload(client, &descriptor, location, limits.payload_bytes).await?
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
    client: &RegistryClient,
    descriptor: &LayerDescriptor,
    location: &str,
    limit: usize,
) -> Result<Option<Vec<u8>>, Attempt> {
    // The digest names the blob in a URL: a manifest whose layer digest is
    // not one is refused rather than fetched from somewhere odd.
    let digest: Digest = descriptor.digest.parse().map_err(|e| {
        Attempt::Refused(SourceError::BadManifest {
            location: location.to_string(),
            why: format!("layer digest {:?}: {e}", descriptor.digest),
        })
    })?;
    match client.fetch_blob(&digest, limit as u64).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(FetchError::TooLarge { .. }) => Ok(None),
        Err(e) => Err(Attempt::Failed(format!("signature payload {digest}: {e}"))),
    }
}
