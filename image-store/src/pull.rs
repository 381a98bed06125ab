//! Fetching an image over the OCI distribution API: each endpoint (mirrors,
//! then the registry) in turn until one serves it; index → linux/amd64
//! manifest → config → layers.
//!
//! Registry input is validated at the boundary: manifests, indexes and the
//! config are read to at most [`MAX_DOCUMENT_SIZE`] (and to their
//! descriptor's size), parsed into typed documents whose digests and diff
//! ids are [`Digest`]s, and checked against each other, all before anything
//! is written. Layers are then fetched several at a time (`layers.rs`), each
//! streamed through a blocking job that hashes, decompresses and unpacks it
//! as it arrives (`stream.rs`, `crate::layer_stream`): capped at its
//! descriptor's size, verified against its digest and its diff id before it
//! is renamed into place (or only hashed when a layer of that chain id is
//! unpacked already but this blob was never checked against it).
//!
//! Nothing here makes the image visible: the caller records it once
//! [`fetch`] returns, so a pull that dies leaves at most complete,
//! unreferenced blobs and layers (collected at the next open) and temporary
//! files (deleted at the next open).
//!
//! One [`Progress`] watches the whole pull, across endpoints: a pull that
//! stalls fails as a whole ([`Error::Stalled`]), in band, so a download in
//! progress is discarded on the way out like any other failure.
//!
//! The pull-time check ([`crate::PullCheck`]) runs as soon as the top
//! manifest's digest is known and the manifest parses, before the platform
//! manifest, the config or any layer is fetched: a refused image costs one
//! manifest request and leaves nothing behind.

mod layers;
mod report;
mod stream;

use crate::blob_store::BlobStore;
use crate::check::CheckSlot;
use crate::digest::Digest;
use crate::distribution::{Capped, Cut, FetchError, Session};
use crate::error::{Error, Refusal, Result};
use crate::evidence::PullEvidence;
use crate::flights::Flights;
use crate::layer_store::{chain_ids, ChainId, LayerStore};
use crate::oci::{Descriptor, Document, ImageConfig, Manifest, MAX_DOCUMENT_SIZE};
use crate::options::PullOptions;
use crate::platform::PlatformChoice;
use crate::progress::{Progress, Stall};
use crate::reference::ImageReference;
use crate::registries::Endpoint;
use crate::RegistryAuth;
use layers::ms;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What a successful fetch produced; every blob and layer named here is
/// complete in the store.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Config digest: the image id.
    pub id: Digest,
    /// The digest the reference resolved to (the index's, if any): the
    /// RepoDigests entry.
    pub top_digest: Digest,
    /// Config plus compressed layer sizes.
    pub size: u64,
    /// Layer chain ids, bottom first.
    pub layers: Vec<ChainId>,
    /// The layers' compressed digests, bottom first: each was verified to
    /// unpack to its chain id.
    pub layer_digests: Vec<Digest>,
    /// Every blob the image holds in the store: its manifests (and index)
    /// and its config. Layer blobs are not kept.
    pub blobs: Vec<Digest>,
    /// The config as fetched.
    pub config: Vec<u8>,
    /// What the pull-time check said about `top_digest`; `None` when no
    /// check is installed.
    pub evidence: Option<PullEvidence>,
}

/// Where a pull puts what it fetches and what it counts, and the check it
/// runs.
pub(crate) struct Target<'a> {
    /// The blob store.
    pub blobs: &'a BlobStore,
    /// The unpacked layers.
    pub layers: &'a LayerStore,
    /// Bytes fetched and stored, for metrics.
    pub pulled: &'a AtomicU64,
    /// The pull-time check.
    pub check: &'a CheckSlot,
    /// Layers in flight and known, shared with the store's other pulls.
    pub flights: &'a Flights,
}

/// Whether a failure is the endpoint's (try the next one; `Denied` when it
/// refused access) or ours or the image's (stop), or the pull's as a whole
/// (stop); or a layer's that was stopped because another layer failed
/// first.
enum Failure {
    Remote(String),
    Denied(String),
    Local(Error),
    Stalled(Stall),
    Aborted,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Local(e)
    }
}

impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Self {
        match e.stall() {
            Some(stall) => Failure::Stalled(stall),
            None if e.is_auth_failure() => Failure::Denied(e.to_string()),
            None => Failure::Remote(e.to_string()),
        }
    }
}

type Fetch<T> = std::result::Result<T, Failure>;

/// Fetches `reference` from the first endpoint that has it into `target`,
/// asking each endpoint with its own credentials, adding the bytes of every
/// blob it stores to its count, once its check (given the caller's `auth`)
/// accepted the top manifest; `options` says when the pull as a whole has
/// stalled and how many layers it downloads at once.
pub(crate) async fn fetch(
    target: Target<'_>,
    reference: &ImageReference,
    endpoints: &[(Endpoint, RegistryAuth)],
    auth: &RegistryAuth,
    options: &PullOptions,
) -> Result<Fetched> {
    let image = reference.to_string();
    let progress = Arc::new(Progress::new(options));
    let mut attempts = Vec::new();
    let mut denied = false;
    for (endpoint, endpoint_auth) in endpoints {
        let pull = Pull {
            image: &image,
            blobs: target.blobs,
            layers: target.layers,
            pulled: target.pulled,
            check: target.check,
            flights: target.flights,
            options,
            auth,
        };
        let fetched = match Session::new(endpoint, endpoint_auth.clone(), Arc::clone(&progress)) {
            Ok(session) => pull.fetch_from(&session, reference).await,
            Err(e) => Err(e.into()),
        };
        let why = match fetched {
            Ok(fetched) => return Ok(fetched),
            Err(Failure::Local(e)) => return Err(local(image, e)),
            Err(Failure::Stalled(stall)) => return Err(stalled(image, stall)),
            // Only ever a layer's, behind the failure that stopped it.
            Err(Failure::Aborted) => return Err(Error::Task("pulling an image")),
            Err(Failure::Remote(why)) => why,
            Err(Failure::Denied(why)) => {
                denied = true;
                why
            }
        };
        // The next endpoint gets a window of its own: a mirror that failed
        // slowly must not count against the registry.
        progress.completed();
        tracing::info!(%image, endpoint = %endpoint.host, %why, "endpoint failed");
        let scheme = if endpoint.insecure { "http" } else { "https" };
        attempts.push(format!(
            "{scheme}://{}/{}: {why}",
            endpoint.host, endpoint.repository
        ));
    }
    Err(match denied {
        true => Error::Unauthorized { image, attempts },
        false => Error::Registry { image, attempts },
    })
}

/// A failure of ours or the image's, as the pull reports it: a full disk
/// as [`Error::NoSpace`], other store failures naming the image.
fn local(image: String, e: Error) -> Error {
    match e.out_of_space(&image) {
        e @ (Error::Io { .. } | Error::Metadata { .. }) => Error::Store {
            image,
            source: Box::new(e),
        },
        other => other,
    }
}

fn stalled(image: String, stall: Stall) -> Error {
    Error::Stalled {
        image,
        object: stall.object,
        bytes: stall.bytes,
        window: stall.window,
    }
}

/// One pull's view of the store, the count of bytes it fetches, and its
/// check.
struct Pull<'a> {
    image: &'a str,
    blobs: &'a BlobStore,
    layers: &'a LayerStore,
    pulled: &'a AtomicU64,
    check: &'a CheckSlot,
    flights: &'a Flights,
    options: &'a PullOptions,
    auth: &'a RegistryAuth,
}

/// A validated manifest and the documents that led to it, not yet stored.
struct Resolved {
    top_digest: Digest,
    manifest: Manifest,
    /// Manifests (and index) to store once everything checks out.
    documents: Vec<(Digest, Vec<u8>)>,
    /// What the check said about `top_digest`.
    evidence: Option<PullEvidence>,
}

impl Pull<'_> {
    fn count(&self, bytes: u64) {
        self.pulled.fetch_add(bytes, Ordering::Relaxed);
    }

    fn refuse(&self, object: impl std::fmt::Display, cause: Refusal) -> Failure {
        Failure::Local(Error::Refused {
            image: self.image.to_string(),
            object: object.to_string(),
            cause,
        })
    }

    async fn fetch_from(&self, session: &Session, reference: &ImageReference) -> Fetch<Fetched> {
        let started = Instant::now();
        let resolved = self.resolve(session, reference).await?;
        let manifest = &resolved.manifest;
        let (config_bytes, config) = self.config(session, &manifest.config).await?;
        let config_digest = &manifest.config.digest;
        config
            .check_layers(manifest)
            .map_err(|cause| self.refuse(format!("config {config_digest}"), cause))?;
        let chain = chain_ids(&config.diff_ids);
        tracing::debug!(image = %self.image, endpoint = %session.base(), layers = chain.len(), resolve_ms = ms(started), "resolved");
        let fetching = Instant::now();
        self.layers(session, &manifest.layers, &config.diff_ids, &chain)
            .await?;
        tracing::debug!(image = %self.image, layers_ms = ms(fetching), "every layer in place");
        // The manifests and config are written last, once every layer has
        // checked out too: a refused image leaves none of its documents.
        let storing = Instant::now();
        let mut held = Vec::new();
        let documents = resolved.documents.iter().map(|(d, b)| (d, b.as_slice()));
        for (digest, bytes) in documents.chain([(config_digest, config_bytes.as_slice())]) {
            self.store_blob(digest, bytes).await?;
            held.push(digest.clone());
        }
        tracing::debug!(image = %self.image, documents_ms = ms(storing), "documents stored");
        let layer_sizes = manifest.layers.iter().map(|l| l.size);
        Ok(Fetched {
            id: config_digest.clone(),
            top_digest: resolved.top_digest,
            size: layer_sizes.fold(config_bytes.len() as u64, u64::saturating_add),
            layers: chain,
            layer_digests: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
            blobs: held,
            config: config_bytes,
            evidence: resolved.evidence,
        })
    }

    /// The manifest `reference` names on this endpoint, through the index
    /// if it is one.
    async fn resolve(&self, session: &Session, reference: &ImageReference) -> Fetch<Resolved> {
        let pinned = match reference.digest() {
            Some(d) => Some(d.parse::<Digest>().map_err(|source| {
                let field = "digest".to_string();
                self.refuse("reference", Refusal::Digest { field, source })
            })?),
            None => None,
        };
        let target = match &pinned {
            Some(d) => d.to_string(),
            None => reference.tag().unwrap_or("latest").to_string(),
        };
        let what = match &pinned {
            Some(d) => format!("manifest {d}"),
            None => format!("manifest for tag {target}"),
        };
        let (bytes, header) = session
            .manifest(&target, MAX_DOCUMENT_SIZE)
            .await
            .map_err(|e| self.over(e, &what, |limit| Refusal::OverLimit { limit }))?;
        self.count(bytes.len() as u64);
        let top_digest = top_digest(&bytes, pinned, header.as_deref())?;
        let document = Document::parse(&bytes)
            .map_err(|cause| self.refuse(format!("manifest {top_digest}"), cause))?;
        let evidence = self.checked(reference, &top_digest).await?;
        let mut documents = vec![(top_digest.clone(), bytes)];
        let manifest = match document {
            Document::Manifest(manifest) => manifest,
            Document::Index(index) => {
                let object = format!("image index {top_digest}");
                let platforms = self.options.platforms();
                let chosen = platforms.choose(&index.manifests).ok_or_else(|| {
                    let refusal = Refusal::NoPlatform {
                        wanted: platforms.wanted().iter().map(ToString::to_string).collect(),
                        offered: PlatformChoice::offered(&index.manifests),
                    };
                    self.refuse(&object, refusal)
                })?;
                let (bytes, manifest) = self.platform_manifest(session, chosen).await?;
                documents.push((chosen.digest.clone(), bytes));
                manifest
            }
        };
        Ok(Resolved {
            top_digest,
            manifest,
            documents,
            evidence,
        })
    }

    /// Runs the pull-time check on the top manifest digest: a refusal is the
    /// image's fault, not the endpoint's, so no other endpoint is tried.
    async fn checked(
        &self,
        reference: &ImageReference,
        top_digest: &Digest,
    ) -> Fetch<Option<PullEvidence>> {
        self.check
            .run(reference, top_digest, self.auth)
            .await
            .map_err(|refusal| {
                tracing::debug!(image = %self.image, digest = %top_digest, %refusal, "refused by the pull check");
                Failure::Local(Error::PolicyRefused {
                    image: self.image.to_string(),
                    digest: top_digest.clone(),
                    refusal,
                })
            })
    }

    /// The index entry's manifest, read to at most its declared size.
    async fn platform_manifest(
        &self,
        session: &Session,
        chosen: &Descriptor,
    ) -> Fetch<(Vec<u8>, Manifest)> {
        let object = format!("manifest {}", chosen.digest);
        declared_within(chosen, MAX_DOCUMENT_SIZE).map_err(|c| self.refuse(&object, c))?;
        let (bytes, _) = session
            .manifest(chosen.digest.as_str(), chosen.size)
            .await
            .map_err(|e| self.over(e, &object, |declared| Refusal::OverDeclared { declared }))?;
        self.count(bytes.len() as u64);
        let actual = Digest::of(chosen.digest.algorithm(), &bytes);
        if actual != chosen.digest {
            return Err(Failure::Local(Error::DigestMismatch {
                image: self.image.into(),
                expected: chosen.digest.to_string(),
                actual: actual.to_string(),
            }));
        }
        same_size(chosen, bytes.len() as u64).map_err(|c| self.refuse(&object, c))?;
        match Document::parse(&bytes).map_err(|c| self.refuse(&object, c))? {
            Document::Manifest(manifest) => Ok((bytes, manifest)),
            Document::Index(_) => Err(self.refuse(&object, Refusal::NestedIndex)),
        }
    }

    /// The config blob (stored or fetched, capped at its declared size) and
    /// its parsed diff ids.
    async fn config(&self, session: &Session, desc: &Descriptor) -> Fetch<(Vec<u8>, ImageConfig)> {
        let object = format!("config {}", desc.digest);
        declared_within(desc, MAX_DOCUMENT_SIZE).map_err(|c| self.refuse(&object, c))?;
        let stored = {
            let (blobs, digest) = (self.blobs.clone(), desc.digest.clone());
            blocking(move || {
                Ok(match blobs.contains(&digest) {
                    true => Some(blobs.read(&digest, MAX_DOCUMENT_SIZE)?),
                    false => None,
                })
            })
            .await?
        };
        let bytes = match stored {
            Some(bytes) => bytes,
            None => {
                let url = session.blob_url(&desc.digest);
                let response = session.blob(&desc.digest).await?;
                let bytes =
                    session
                        .read_capped(response, desc.size)
                        .await
                        .map_err(|e| match e {
                            Capped::TooLarge { .. } => self.refuse(
                                &object,
                                Refusal::OverDeclared {
                                    declared: desc.size,
                                },
                            ),
                            Capped::Cut(Cut::Transport(e)) => {
                                Failure::Remote(format!("{url}: {e}"))
                            }
                            Capped::Cut(Cut::Stalled(stall)) => Failure::Stalled(stall),
                        })?;
                self.count(bytes.len() as u64);
                let actual = Digest::of(desc.digest.algorithm(), &bytes);
                if actual != desc.digest {
                    return Err(Failure::Remote(format!(
                        "{object}: digest mismatch, got {actual}"
                    )));
                }
                bytes
            }
        };
        same_size(desc, bytes.len() as u64).map_err(|c| self.refuse(&object, c))?;
        let config = ImageConfig::parse(&bytes).map_err(|c| self.refuse(&object, c))?;
        Ok((bytes, config))
    }

    /// Stores a document blob unless it is stored already (verifying it
    /// again on the way in).
    async fn store_blob(&self, digest: &Digest, bytes: &[u8]) -> Fetch<()> {
        let (blobs, digest, bytes) = (self.blobs.clone(), digest.clone(), bytes.to_vec());
        let stored = blocking(move || match blobs.contains(&digest) {
            true => Ok(()),
            false => blobs.write(&digest, &bytes),
        });
        Ok(stored.await?)
    }

    /// Maps a capped read's overflow to a refusal of `object` (with the cap
    /// put into words by `cause`); other failures are the endpoint's.
    fn over(&self, e: FetchError, object: &str, cause: impl FnOnce(u64) -> Refusal) -> Failure {
        match e {
            FetchError::TooLarge { limit, .. } => self.refuse(object, cause(limit)),
            other => other.into(),
        }
    }
}

/// The digest a manifest request resolved to: the pinned one if any (which
/// the bytes must match), else the bytes' sha256; a `Docker-Content-Digest`
/// header, when sent, must match the bytes too.
fn top_digest(bytes: &[u8], pinned: Option<Digest>, header: Option<&str>) -> Fetch<Digest> {
    if let Some(header) = header {
        let claimed: Digest = header
            .parse()
            .map_err(|e| Failure::Remote(format!("Docker-Content-Digest header: {e}")))?;
        let actual = Digest::of(claimed.algorithm(), bytes);
        if actual != claimed {
            return Err(Failure::Remote(format!(
                "manifest {claimed}: digest mismatch, got {actual}"
            )));
        }
    }
    match pinned {
        Some(pinned) => {
            let actual = Digest::of(pinned.algorithm(), bytes);
            if actual != pinned {
                return Err(Failure::Remote(format!(
                    "manifest {pinned}: digest mismatch, got {actual}"
                )));
            }
            Ok(pinned)
        }
        None => Ok(Digest::of(crate::digest::Algorithm::Sha256, bytes)),
    }
}

/// Refuses a descriptor that declares more than `limit` bytes.
fn declared_within(desc: &Descriptor, limit: u64) -> std::result::Result<(), Refusal> {
    if desc.size > limit {
        return Err(Refusal::Declared {
            declared: desc.size,
            limit,
        });
    }
    Ok(())
}

/// Refuses content whose size is not the one its descriptor declares.
fn same_size(desc: &Descriptor, actual: u64) -> std::result::Result<(), Refusal> {
    if actual != desc.size {
        return Err(Refusal::SizeMismatch {
            declared: desc.size,
            actual,
        });
    }
    Ok(())
}

/// Runs store file work on a blocking thread, never on a tokio worker.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Error::Task("storing pulled content"))?
}
