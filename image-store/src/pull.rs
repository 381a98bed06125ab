//! Fetching an image over the OCI distribution API: each endpoint (mirrors,
//! then the registry) in turn until one serves it; index → linux/amd64
//! manifest → config → layers, each verified against its digest, layers
//! unpacked on blocking threads.
//!
//! Nothing here makes the image visible: the caller records it once
//! [`fetch`] returns, so a pull that dies leaves at most complete,
//! unreferenced blobs and layers (collected at the next open) and temporary
//! files (deleted at the next open).

use crate::blob_store::{sha256_digest, BlobStore};
use crate::error::{Error, Result};
use crate::layer_store::{chain_ids, LayerStore};
use crate::layer_unpack::{unpack, Compression};
use crate::reference::ImageReference;
use crate::registries::Endpoint;
use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
use oci_client::manifest::{
    OciDescriptor, OciImageIndex, OciImageManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What a successful fetch produced; every blob and layer named here is
/// complete in the store.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Config digest: the image id.
    pub id: String,
    /// The digest the reference resolved to (the index's, if any): the
    /// RepoDigests entry.
    pub top_digest: String,
    /// Config plus compressed layer sizes.
    pub size: u64,
    /// Layer chain ids, bottom first.
    pub layers: Vec<String>,
    /// Every blob the image holds.
    pub blobs: Vec<String>,
}

/// Whether a failure is the endpoint's (try the next one) or ours (stop).
enum Failure {
    Remote(String),
    Local(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Local(e)
    }
}

fn remote(e: impl std::fmt::Display) -> Failure {
    Failure::Remote(e.to_string())
}

/// Fetches `reference` from the first endpoint that has it, adding the
/// bytes of every blob it stores to `pulled`.
pub(crate) async fn fetch(
    blobs: &BlobStore,
    layers: &LayerStore,
    reference: &ImageReference,
    endpoints: &[Endpoint],
    auth: &RegistryAuth,
    pulled: &AtomicU64,
) -> Result<Fetched> {
    let image = reference.to_string();
    let mut attempts = Vec::new();
    for endpoint in endpoints {
        let client = Client::new(ClientConfig {
            protocol: if endpoint.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            platform_resolver: Some(Box::new(linux_amd64_resolver)),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        });
        let at = reference.on_endpoint(&endpoint.host, &endpoint.repository);
        let scheme = if endpoint.insecure { "http" } else { "https" };
        let store = Store {
            blobs,
            layers,
            pulled,
        };
        match fetch_from(&client, &at, auth, &store, &image).await {
            Ok(fetched) => return Ok(fetched),
            Err(Failure::Local(e @ (Error::Io { .. } | Error::Metadata { .. }))) => {
                return Err(Error::Store {
                    image,
                    source: Box::new(e),
                })
            }
            Err(Failure::Local(e)) => return Err(e),
            Err(Failure::Remote(why)) => {
                tracing::info!(%image, endpoint = %endpoint.host, %why, "endpoint failed");
                attempts.push(format!(
                    "{scheme}://{}/{}: {why}",
                    endpoint.host, endpoint.repository
                ));
            }
        }
    }
    Err(Error::Registry { image, attempts })
}

/// Where fetched content goes, and the count of bytes that went there.
struct Store<'a> {
    blobs: &'a BlobStore,
    layers: &'a LayerStore,
    pulled: &'a AtomicU64,
}

impl Store<'_> {
    fn count(&self, bytes: u64) {
        self.pulled.fetch_add(bytes, Ordering::Relaxed);
    }
}

async fn fetch_from(
    client: &Client,
    at: &Reference,
    auth: &RegistryAuth,
    store: &Store<'_>,
    image: &str,
) -> std::result::Result<Fetched, Failure> {
    let (blobs, layers) = (store.blobs, store.layers);
    let bad = |reason: String| {
        Failure::Local(Error::BadImage {
            image: image.to_string(),
            reason,
        })
    };
    let accepted = [
        OCI_IMAGE_INDEX_MEDIA_TYPE,
        IMAGE_MANIFEST_LIST_MEDIA_TYPE,
        OCI_IMAGE_MEDIA_TYPE,
        IMAGE_MANIFEST_MEDIA_TYPE,
    ];
    // oci-client checks the bytes against the digest when the reference
    // pins one (and against the registry's Docker-Content-Digest header).
    let (bytes, top_digest) = client
        .pull_manifest_raw(at, auth, &accepted)
        .await
        .map_err(remote)?;
    let mut held = vec![top_digest.clone()];
    store_blob(blobs, &top_digest, bytes.clone(), image).await?;
    store.count(bytes.len() as u64);
    let (manifest_bytes, manifest_digest) = match media_type_of(&bytes) {
        Some(t) if t == OCI_IMAGE_INDEX_MEDIA_TYPE || t == IMAGE_MANIFEST_LIST_MEDIA_TYPE => {
            let index: OciImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("image index {top_digest}: {e}")))?;
            let chosen = linux_amd64_resolver(&index.manifests)
                .ok_or_else(|| bad(format!("image index {top_digest} has no linux/amd64 image")))?;
            let (bytes, digest) = client
                .pull_manifest_raw(&at.clone_with_digest(chosen.clone()), auth, &accepted)
                .await
                .map_err(remote)?;
            let actual = sha256_digest(&bytes);
            if actual != chosen {
                return Err(Failure::Local(Error::DigestMismatch {
                    image: image.into(),
                    expected: chosen,
                    actual,
                }));
            }
            store_blob(blobs, &digest, bytes.clone(), image).await?;
            store.count(bytes.len() as u64);
            held.push(digest.clone());
            (bytes, digest)
        }
        Some(t) if t == DOCKER_SCHEMA1 => {
            return Err(bad("Docker schema 1 manifests are not supported".into()))
        }
        _ => (bytes, top_digest.clone()),
    };
    let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| bad(format!("manifest {manifest_digest}: {e}")))?;

    let config_digest = manifest.config.digest.clone();
    let cached = {
        let (blobs, digest) = (blobs.clone(), config_digest.clone());
        blocking(move || {
            Ok(if blobs.contains(&digest) {
                Some(blobs.read(&digest)?)
            } else {
                None
            })
        })
        .await?
    };
    let config = if let Some(config) = cached {
        config
    } else {
        let mut buf = Vec::new();
        client
            .pull_blob(at, &manifest.config, &mut buf)
            .await
            .map_err(remote)?;
        store_blob(blobs, &config_digest, buf.clone().into(), image).await?;
        store.count(buf.len() as u64);
        buf
    };
    held.push(config_digest.clone());
    let config_json: serde_json::Value =
        serde_json::from_slice(&config).map_err(|e| bad(format!("config {config_digest}: {e}")))?;
    let diff_ids: Vec<String> = config_json
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|ids| {
            ids.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers.len() {
        return Err(bad(format!(
            "config lists {} diff ids for {} layers",
            diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let chain = chain_ids(&diff_ids);
    let mut size = config.len() as u64;
    for ((layer, diff_id), chain_id) in manifest.layers.iter().zip(&diff_ids).zip(&chain) {
        size += u64::try_from(layer.size).unwrap_or(0);
        held.push(layer.digest.clone());
        let (have_layer, have_blob) = {
            let (blobs, layers) = (blobs.clone(), layers.clone());
            let (chain_id, digest) = (chain_id.clone(), layer.digest.clone());
            blocking(move || Ok((layers.contains(&chain_id), blobs.contains(&digest)))).await?
        };
        if have_layer && have_blob {
            continue;
        }
        let compression = Compression::from_media_type(&layer.media_type).ok_or_else(|| {
            bad(format!(
                "layer {}: unsupported media type {}",
                layer.digest, layer.media_type
            ))
        })?;
        if !have_blob {
            store.count(download(client, at, layer, blobs, image).await?);
        }
        if !have_layer {
            unpack_layer(blobs, layers, layer, compression, diff_id, chain_id, image).await?;
        }
    }
    Ok(Fetched {
        id: config_digest,
        top_digest,
        size,
        layers: chain,
        blobs: held,
    })
}

fn media_type_of(manifest: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    if let Some(t) = v.get("mediaType").and_then(|t| t.as_str()) {
        return Some(t.to_string());
    }
    // The OCI spec makes mediaType optional; an index is the one with
    // `manifests`.
    v.get("manifests")
        .map(|_| OCI_IMAGE_INDEX_MEDIA_TYPE.to_string())
}

/// Runs store file work on a blocking thread, never on a tokio worker.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Error::Task("storing pulled content"))?
}

/// Stores `bytes` as blob `digest` (verifying it) on a blocking thread.
async fn store_blob(
    blobs: &BlobStore,
    digest: &str,
    bytes: bytes::Bytes,
    image: &str,
) -> Result<()> {
    let (blobs, digest) = (blobs.clone(), digest.to_string());
    blocking(move || blobs.write(&digest, &bytes))
        .await
        .map_err(|e| named(e, image))
}

/// Puts the image name on errors raised below the level that knows it.
fn named(e: Error, image: &str) -> Error {
    match e {
        Error::DigestMismatch {
            expected, actual, ..
        } => Error::DigestMismatch {
            image: image.into(),
            expected,
            actual,
        },
        Error::BadImage { reason, .. } => Error::BadImage {
            image: image.into(),
            reason,
        },
        other => other,
    }
}

/// Downloads one layer blob into the store; returns its size.
async fn download(
    client: &Client,
    at: &Reference,
    layer: &OciDescriptor,
    blobs: &BlobStore,
    image: &str,
) -> std::result::Result<u64, Failure> {
    let mut writer = blobs.writer().await?;
    if let Err(e) = client.pull_blob(at, layer, &mut writer).await {
        // A full disk is ours, not the endpoint's: no point trying a mirror.
        return Err(match writer.discard() {
            Some(local) => Failure::Local(local),
            None => remote(format!("layer {}: {e}", layer.digest)),
        });
    }
    blobs
        .commit(writer, &layer.digest)
        .await
        .map_err(|e| Failure::Local(named(e, image)))
}

async fn unpack_layer(
    blobs: &BlobStore,
    layers: &LayerStore,
    layer: &OciDescriptor,
    compression: Compression,
    diff_id: &str,
    chain_id: &str,
    image: &str,
) -> Result<()> {
    let (blobs, layers) = (blobs.clone(), layers.clone());
    let (digest, diff_id, chain_id, image) = (
        layer.digest.clone(),
        diff_id.to_string(),
        chain_id.to_string(),
        image.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let path = blobs.path(&digest)?;
        let file = std::fs::File::open(&path).map_err(crate::error::io(&path, "open"))?;
        let staging = layers.staging_dir()?;
        let result = unpack(std::io::BufReader::new(file), compression, &staging);
        let unpacked = match result {
            Ok(u) => u,
            Err(source) => {
                crate::layer_store::discard(&staging);
                // A blob that verified but does not decode would only make
                // the next attempt fail the same way; a full disk is no
                // fault of the blob's.
                if matches!(source, crate::layer_unpack::UnpackError::Read(_)) {
                    let _ = blobs.remove(&digest);
                }
                return Err(Error::Unpack {
                    image,
                    digest,
                    source,
                });
            }
        };
        if unpacked.diff_id != diff_id {
            crate::layer_store::discard(&staging);
            return Err(Error::DigestMismatch {
                image,
                expected: diff_id,
                actual: unpacked.diff_id,
            });
        }
        layers.commit(&staging, &chain_id)
    })
    .await
    .map_err(|_| Error::Task("unpacking a layer"))?
}
