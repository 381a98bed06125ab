//! [`ImageStore`]: the CRI ImageService's verbs over the blob, layer,
//! metadata and rootfs directories of one store root.
//!
//! Layout under the root:
//!
//! ```text
//! blobs/<algorithm>/<hex> manifests, indexes, configs
//! layers/<chain id hex>/  unpacked layers (overlayfs lower directories)
//! images/<id hex>.json    image records (names, layers, blobs, evidence)
//! containers/<id>/        per-container upper, work, rootfs mount, image.json
//! tmp/                    anything half-written; emptied by open
//! ```
//!
//! The root and every directory above are 0700: layers hold setuid binaries
//! and device nodes from images, and no local user may reach them through
//! the store (cf. Docker's CVE-2021-41091). [`ImageStore::open`] sets the
//! modes every time, so a store made before is fixed too.
//!
//! A pull-time check ([`crate::PullCheck`], installed with
//! [`ImageStore::set_pull_check`]) decides on the top manifest digest before
//! anything else is fetched; what it says is recorded with the image, one
//! entry per reference. A pull is recorded only with the evidence of the
//! check in force when it is recorded (a pull that raced a replacement is
//! checked again), and [`ImageStore::recheck_evidence`] brings stored
//! evidence up to a new check.

use crate::blob_store::BlobStore;
use crate::check::{CheckSlot, PullCheck, RegistryAuth};
use crate::credentials::Credentials;
use crate::digest::Digest;
use crate::error::{io, Error, Result};
use crate::evidence::PullEvidence;
use crate::flights::Flights;
use crate::image::Image;
use crate::layer_store::{ChainId, LayerStore};
use crate::metadata::{ImageRecord, MetadataStore};
use crate::options::PullOptions;
use crate::pull;
use crate::reference::{image_id_of, ImageReference};
use crate::registries::Registries;
use crate::rootfs::{RootFs, RootFsDir, RootFsIdmap};
use crate::rootfs_tree::RootFsTree;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

type SharedPull = Shared<BoxFuture<'static, std::result::Result<Image, Arc<Error>>>>;

/// A pull in flight is shared by callers asking for the same reference with
/// the same credentials, and only by them: a caller must not be handed an
/// image fetched with someone else's credentials, nor their failure. Nor
/// one checked by a pull check since replaced (the generation of the
/// check): after a policy reload, new pulls see the new policy.
type PullKey = (String, [u8; 32], u64);

/// The store's directories, all made 0700 at open.
const DIRS: [&str; 8] = [
    "blobs",
    "blobs/sha256",
    "blobs/sha512",
    "layers",
    "images",
    "containers",
    "tmp",
    crate::rootfs::CONTAINERS_TMP,
];

/// Where interrupted operations leave their temporary files: emptied at
/// open. Root filesystems have their own, inside `containers/`, which may
/// be a mount of its own that no rename crosses ([`RootFsTree`]).
const TMP_DIRS: [&str; 2] = ["tmp", crate::rootfs::CONTAINERS_TMP];

/// Bytes and inodes the store uses, for CRI's `ImageFsInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsUsage {
    /// The store's root directory.
    pub mountpoint: PathBuf,
    /// Bytes allocated to blobs, layers and metadata.
    pub used_bytes: u64,
    /// Inodes they use (hard links counted once).
    pub inodes_used: u64,
}

/// A store of images, their layers and container root filesystems.
///
/// Cheap to clone: clones share the store.
///
/// # Examples
///
/// ```no_run
/// use image_store::{ImageStore, Registries};
/// # async fn demo() -> Result<(), image_store::Error> {
/// let store = ImageStore::open("/var/lib/cri-server/images", Registries::default()).await?;
/// let image = store.pull("registry.k8s.io/pause:3.9", None).await?;
/// let rootfs = store.create_rootfs(&image.id, "container-1", false).await?;
/// println!("rootfs at {}", rootfs.path.display());
/// store.remove_rootfs("container-1").await?;
/// store.remove(&image.id).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Held for the store's life: cleaning `tmp/` at open would destroy a
    /// second process's downloads in flight.
    _lock: nix::fcntl::Flock<std::fs::File>,
    root: PathBuf,
    /// Swapped whole by [`ImageStore::set_registries`].
    registries: Mutex<Registries>,
    blobs: BlobStore,
    layers: LayerStore,
    metadata: MetadataStore,
    rootfs: RootFsDir,
    /// Image records and their config JSON, by image id.
    state: Mutex<HashMap<Digest, (ImageRecord, String)>>,
    /// Pulls in progress by normalised reference and credentials; joiners
    /// share the result.
    in_flight: Mutex<HashMap<PullKey, SharedPull>>,
    /// Pulls hold it shared, removal exclusively: garbage collection must not
    /// delete blobs a pull has fetched but not yet recorded.
    gc: tokio::sync::RwLock<()>,
    /// Bytes fetched from registries and stored since the store was opened.
    pulled_bytes: AtomicU64,
    /// How pulls are run (when one has stalled).
    pull_options: PullOptions,
    /// The pull-time check and its generation. Taken after `state` when
    /// both are held: recording compares generations under `state`.
    check: Mutex<CheckSlot>,
    /// Layers being fetched, and (chain id, blob) pairs verified, shared by
    /// every pull.
    flights: Flights,
    /// Deletes removed root filesystems' files; a blocking task when unset.
    deleter: Mutex<Option<Deleter>>,
}

/// Deletes the files of a removed root filesystem, already moved into the
/// store's `tmp/` (which [`ImageStore::open`] empties), when its owner
/// likes: see [`ImageStore::set_deleter`].
pub type Deleter = Arc<dyn Fn(PathBuf) + Send + Sync>;

/// What [`ImageStore::recheck_evidence`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recheck {
    /// Evidence entries checked again and replaced.
    pub replaced: usize,
    /// Entries that now say verified where they did not, or the reverse.
    pub changed: usize,
    /// Entries left alone: a newer pull replaced them meanwhile, their
    /// image was removed, or they cannot be parsed back.
    pub skipped: usize,
    /// Whether the check was replaced again before the end (the next
    /// recheck covers the rest).
    pub superseded: bool,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, pulling through
    /// `registries`: deletes whatever a previous process left
    /// half-written, and blobs and layers no image references (a pull that
    /// died after fetching them).
    pub async fn open(root: impl AsRef<Path>, registries: Registries) -> Result<Self> {
        Self::open_with(root, registries, PullOptions::default()).await
    }

    /// [`ImageStore::open`], with pulls run by `options` (its stall
    /// timeout) rather than the defaults.
    pub async fn open_with(
        root: impl AsRef<Path>,
        registries: Registries,
        options: PullOptions,
    ) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let mut inner = tokio::task::spawn_blocking(move || Inner::open(root, registries))
            .await
            .map_err(|_| Error::Task("opening the image store"))??;
        inner.pull_options = options;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Pulls `reference` (fetching only what is missing) and records it
    /// under its tag and digest. Concurrent pulls of the same reference with
    /// the same credentials share one download; a caller with other
    /// credentials pulls on its own.
    pub async fn pull(&self, reference: &str, credentials: Option<Credentials>) -> Result<Image> {
        let parsed: ImageReference = reference.parse()?;
        let name = parsed.to_string();
        let slot = lock(&self.inner.check).clone();
        let key = (
            name.clone(),
            credentials.clone().unwrap_or_default().fingerprint(),
            slot.generation,
        );
        let shared = {
            let mut in_flight = lock(&self.inner.in_flight);
            match in_flight.get(&key) {
                Some(existing) => existing.clone(),
                None => {
                    let inner = Arc::clone(&self.inner);
                    let task_key = key.clone();
                    // A task of its own: a caller that gives up (kubelet
                    // timing out) must not cancel a download others share.
                    let task = tokio::spawn(async move {
                        let result = Arc::clone(&inner)
                            .pull(parsed, credentials, slot)
                            .await
                            .map_err(Arc::new);
                        lock(&inner.in_flight).remove(&task_key);
                        result
                    });
                    let fut: BoxFuture<'static, _> = async move {
                        task.await
                            .unwrap_or_else(|_| Err(Arc::new(Error::Task("pulling an image"))))
                    }
                    .boxed();
                    let shared = fut.shared();
                    in_flight.insert(key.clone(), shared.clone());
                    shared
                }
            }
        };
        shared.await.map_err(|e| match Arc::try_unwrap(e) {
            Ok(e) => e,
            Err(source) => Error::SharedPull {
                image: name,
                source,
            },
        })
    }

    /// Bytes of manifests, configs and layers fetched from registries and
    /// stored since the store was opened, failed pulls' complete blobs
    /// included; content already stored is not fetched, so not counted.
    /// Pulls that share one download count it once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: image_store::ImageStore) -> image_store::Result<()> {
    /// let before = store.bytes_pulled();
    /// store.pull("registry.k8s.io/pause:3.9", None).await?;
    /// println!("fetched {} bytes", store.bytes_pulled() - before);
    /// # Ok(()) }
    /// ```
    pub fn bytes_pulled(&self) -> u64 {
        self.inner.pulled_bytes.load(Ordering::Relaxed)
    }

    /// Puts `registries` (mirrors, insecure and blocked registries, TLS
    /// files, stored credentials) in force for every pull that starts from
    /// now on (a configuration reload); pulls under way finish with the
    /// endpoints and credentials they started with.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: image_store::ImageStore) -> Result<(), image_store::tls::TlsError> {
    /// use image_store::{RegistriesConfig, RegistryConfig};
    /// let registries = RegistriesConfig {
    ///     registries: vec![RegistryConfig {
    ///         prefix: "registry.k8s.io".into(),
    ///         mirrors: vec!["mirror.example:5000".into()],
    ///         ..Default::default()
    ///     }],
    /// };
    /// store.set_registries(registries.load()?);
    /// # Ok(()) }
    /// ```
    pub fn set_registries(&self, registries: Registries) {
        *lock(&self.inner.registries) = registries;
    }

    /// The registries in force.
    pub fn registries(&self) -> Registries {
        lock(&self.inner.registries).clone()
    }

    /// Installs `check` as the pull-time check (`None` removes it), for
    /// every pull that starts from now on. A pull under way is checked
    /// again with it before it is recorded; stored evidence is not touched
    /// ([`ImageStore::recheck_evidence`] re-evaluates it).
    pub fn set_pull_check(&self, check: Option<Arc<dyn PullCheck>>) {
        let mut slot = lock(&self.inner.check);
        slot.generation += 1;
        slot.check = check;
    }

    /// Records `evidence` for image `image_id` (its full id), in place of
    /// the entry for the same reference if that entry is for the same
    /// digest, or as a new entry if the image has none for that reference.
    /// An entry for another digest was made by a later pull and is left
    /// alone, as is an image no longer stored: `Ok(false)`.
    pub async fn set_evidence(&self, image_id: &str, evidence: PullEvidence) -> Result<bool> {
        let inner = Arc::clone(&self.inner);
        let id = image_id.to_string();
        let written = tokio::task::spawn_blocking(move || inner.set_evidence(&id, evidence, None))
            .await
            .map_err(|_| Error::Task("recording evidence"))??;
        Ok(written == Written::Yes)
    }

    /// Runs the current pull-time check again on every evidence entry of
    /// every stored image, replacing each with its answer (a refusal as
    /// unverified evidence saying why): after the check changed (a policy
    /// reloaded), stored images are judged as a new pull would be. Checks
    /// run one at a time, without credentials (the store keeps none): an
    /// image whose check needs them ends up unverified until it is pulled
    /// again. Stops early when the check is replaced meanwhile.
    pub async fn recheck_evidence(&self) -> Result<Recheck> {
        let slot = lock(&self.inner.check).clone();
        let mut report = Recheck::default();
        if slot.check.is_none() {
            return Ok(report);
        }
        let entries = self.list().into_iter().flat_map(|image| {
            image
                .evidence
                .into_iter()
                .map(move |e| (image.id.clone(), e))
        });
        for (id, old) in entries {
            let Some(new) = recheck_entry(&slot, &old).await else {
                report.skipped += 1;
                continue;
            };
            let changed = new.verified != old.verified;
            let inner = Arc::clone(&self.inner);
            let generation = Some(slot.generation);
            let written =
                tokio::task::spawn_blocking(move || inner.set_evidence(&id, new, generation))
                    .await
                    .map_err(|_| Error::Task("recording evidence"))??;
            match written {
                Written::Yes => {
                    report.replaced += 1;
                    report.changed += usize::from(changed);
                }
                Written::Skipped => report.skipped += 1,
                Written::Superseded => {
                    report.superseded = true;
                    break;
                }
            }
        }
        Ok(report)
    }

    /// Every image, once each, ordered by id.
    pub fn list(&self) -> Vec<Image> {
        let state = lock(&self.inner.state);
        let mut images: Vec<Image> = state
            .values()
            .map(|(record, config)| Image::from_record(record, config.clone()))
            .collect();
        images.sort_by(|a, b| a.id.cmp(&b.id));
        images
    }

    /// The image named by `reference_or_id` (a reference, `name@digest`, or
    /// an image id), or `None` if no such image is stored. Only a malformed
    /// reference is an error.
    pub fn status(&self, reference_or_id: &str) -> Result<Option<Image>> {
        let state = lock(&self.inner.state);
        let id = find(&state, reference_or_id)?;
        Ok(id.and_then(|id| {
            state
                .get(&id)
                .map(|(record, config)| Image::from_record(record, config.clone()))
        }))
    }

    /// Removes the image named by `reference_or_id` with all its names, and
    /// any blobs and layers no other image uses. Absent is Ok; an image a
    /// container's root filesystem uses is refused.
    pub async fn remove(&self, reference_or_id: &str) -> Result<()> {
        let _exclusive = exclusive_behind_readers(&self.inner.gc).await;
        let inner = Arc::clone(&self.inner);
        let wanted = reference_or_id.to_string();
        tokio::task::spawn_blocking(move || inner.remove(&wanted))
            .await
            .map_err(|_| Error::Task("removing an image"))?
    }

    /// Bytes and inodes used by blobs, layers and metadata.
    pub async fn fs_info(&self) -> Result<FsUsage> {
        let root = self.inner.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut seen = HashSet::new();
            let mut bytes = 0;
            for sub in ["blobs", "layers", "images"] {
                usage(&root.join(sub), &mut seen, &mut bytes)?;
            }
            Ok(FsUsage {
                mountpoint: root,
                used_bytes: bytes,
                inodes_used: seen.len() as u64,
            })
        })
        .await
        .map_err(|_| Error::Task("measuring the image store"))?
    }

    /// Mounts a writable (or read-only) overlay root filesystem for
    /// `container_id` from the image `image_id` (an id or a reference).
    /// While it exists the image cannot be removed. Calling it again for a
    /// mounted container returns the existing one.
    pub async fn create_rootfs(
        &self,
        image_id: &str,
        container_id: &str,
        readonly: bool,
    ) -> Result<RootFs> {
        self.create_rootfs_mapped(image_id, container_id, readonly, None)
            .await
    }

    /// [`ImageStore::create_rootfs`] for a container in a user namespace:
    /// with `idmap`, the image's layers are shown through its mapping (see
    /// [`RootFsIdmap`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: image_store::ImageStore) -> image_store::Result<()> {
    /// use image_store::RootFsIdmap;
    ///
    /// let idmap = RootFsIdmap { userns: "/run/cri-server/netns/p.user".into(), root: (65536, 65536) };
    /// let rootfs = store.create_rootfs_mapped("busybox", "c1", false, Some(idmap)).await?;
    /// println!("runc's root.path: {}", rootfs.path.display());
    /// # Ok(()) }
    /// ```
    pub async fn create_rootfs_mapped(
        &self,
        image_id: &str,
        container_id: &str,
        readonly: bool,
        idmap: Option<RootFsIdmap>,
    ) -> Result<RootFs> {
        // Shared with pulls, exclusive with removal: the image's layers
        // cannot be collected between the lookup and the mount.
        let _shared = self.inner.gc.read().await;
        let (id, chain) = {
            let state = lock(&self.inner.state);
            let id = find(&state, image_id)?.ok_or_else(|| Error::NotFound(image_id.into()))?;
            let record = &state
                .get(&id)
                .ok_or_else(|| Error::NotFound(image_id.into()))?
                .0;
            (id.to_string(), record.layers.clone())
        };
        let inner = Arc::clone(&self.inner);
        let container = container_id.to_string();
        tokio::task::spawn_blocking(move || {
            inner
                .rootfs
                .create(&id, &chain, &container, readonly, idmap.as_ref())
        })
        .await
        .map_err(|_| Error::Task("creating a root filesystem"))?
    }

    /// Makes `containers/`, where every root filesystem is mounted, a
    /// private mount of its own (see [`RootFsTree`]); `None` where root
    /// filesystems mounted before are already below it. Idempotent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: image_store::ImageStore) -> image_store::Result<()> {
    /// let tree = store.isolate_root_filesystems().await?;
    /// println!("{:?}", tree.map(|t| t.mount_point("c1")));
    /// # Ok(()) }
    /// ```
    pub async fn isolate_root_filesystems(&self) -> Result<Option<RootFsTree>> {
        let dir = self.inner.rootfs.dir().to_path_buf();
        tokio::task::spawn_blocking(move || crate::rootfs_tree::isolate(&dir))
            .await
            .map_err(|_| Error::Task("isolating the root filesystems"))?
    }

    /// Bytes and inodes the writable layer of `container_id` uses (CRI's
    /// `writable_layer` stats); `None` when it has no root filesystem.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: image_store::ImageStore) -> image_store::Result<()> {
    /// if let Some((bytes, inodes)) = store.writable_layer_usage("c1").await? {
    ///     println!("{bytes} bytes in {inodes} inodes");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn writable_layer_usage(&self, container_id: &str) -> Result<Option<(u64, u64)>> {
        let inner = Arc::clone(&self.inner);
        let container = container_id.to_string();
        tokio::task::spawn_blocking(move || inner.rootfs.upper_usage(&container))
            .await
            .map_err(|_| Error::Task("measuring a writable layer"))?
    }

    /// [`ImageStore::writable_layer_usage`] of every container in `ids`, in
    /// their order, measured on one blocking thread: a stats call over a
    /// node's containers costs one thread hand-off, not one per container.
    /// A container without a root filesystem (or a malformed id) is `None`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: image_store::ImageStore) -> image_store::Result<()> {
    /// let usages = store.writable_layer_usages(vec!["c1".into(), "c2".into()]).await?;
    /// assert_eq!(usages.len(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn writable_layer_usages(&self, ids: Vec<String>) -> Result<Vec<Option<(u64, u64)>>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| inner.rootfs.upper_usage(id).ok().flatten())
                .collect()
        })
        .await
        .map_err(|_| Error::Task("measuring writable layers"))
    }

    /// The root filesystem of `container_id`, if it has one.
    pub async fn rootfs(&self, container_id: &str) -> Result<Option<RootFs>> {
        let inner = Arc::clone(&self.inner);
        let container = container_id.to_string();
        tokio::task::spawn_blocking(move || inner.rootfs.get(&container))
            .await
            .map_err(|_| Error::Task("reading a root filesystem"))?
    }

    /// The ids of every container with a root filesystem in the store, so
    /// that a runtime can remove those it has no record of (a crash between
    /// mounting one and recording its container).
    pub async fn root_filesystems(&self) -> Result<Vec<String>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.rootfs.ids())
            .await
            .map_err(|_| Error::Task("listing root filesystems"))?
    }

    /// Unmounts the root filesystem of `container_id` and takes it out of
    /// the store; its files are deleted in the background. Absent is Ok.
    pub async fn remove_rootfs(&self, container_id: &str) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let container = container_id.to_string();
        let taken = tokio::task::spawn_blocking(move || inner.rootfs.take_out(&container))
            .await
            .map_err(|_| Error::Task("removing a root filesystem"))??;
        // Unmounted and out of containers/: the root filesystem is gone for
        // every reader. Its files are deleted off the caller's path (most of
        // a removal's time under load); a crash first leaves them in tmp/,
        // which `open` empties.
        let Some(doomed) = taken else {
            return Ok(());
        };
        let deleter = lock(&self.inner.deleter).clone();
        match deleter {
            Some(delete) => delete(doomed),
            None => {
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = std::fs::remove_dir_all(&doomed) {
                        tracing::warn!(path = %doomed.display(), error = %e, "deleting a removed root filesystem");
                    }
                });
            }
        }
        Ok(())
    }

    /// Hands the files of every root filesystem removed from now on to
    /// `deleter` instead of a blocking task started at once, so that their
    /// deletion can wait for a moment that suits the caller (a runtime
    /// daemon defers it while pods start and stop).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> image_store::Result<()> {
    /// use image_store::{ImageStore, Registries};
    /// use std::sync::Arc;
    ///
    /// let store = ImageStore::open("/var/lib/cri-server/images", Registries::default()).await?;
    /// store.set_deleter(Arc::new(|doomed| {
    ///     std::thread::spawn(move || std::fs::remove_dir_all(doomed));
    /// }));
    /// # Ok(()) }
    /// ```
    pub fn set_deleter(&self, deleter: Deleter) {
        *lock(&self.inner.deleter) = Some(deleter);
    }
}

/// The current check's answer for a stored evidence entry, a refusal as
/// unverified evidence; `None` when the entry does not parse back (written
/// by hand?) or no check is installed.
async fn recheck_entry(slot: &CheckSlot, old: &PullEvidence) -> Option<PullEvidence> {
    let reference = old.reference.parse::<ImageReference>().ok()?;
    let digest = old.digest.parse::<Digest>().ok()?;
    match slot
        .run(&reference, &digest, &RegistryAuth::Anonymous)
        .await
    {
        Ok(evidence) => evidence,
        Err(refusal) => Some(refusal.evidence(&reference, &digest)),
    }
}

/// Whether [`Inner::set_evidence`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    /// The entry is recorded.
    Yes,
    /// The image is gone, or a later pull made the entry for another
    /// digest.
    Skipped,
    /// The check changed since the evidence was made: it is stale.
    Superseded,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data, still consistent
    // with the files on disk (which are written before the map changes).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The id of the image `reference_or_id` names, if stored.
fn find(
    state: &HashMap<Digest, (ImageRecord, String)>,
    reference_or_id: &str,
) -> Result<Option<Digest>> {
    if let Some(id) = image_id_of(reference_or_id) {
        let id = id.parse::<Digest>().ok();
        return Ok(id.filter(|id| state.contains_key(id)));
    }
    let reference: ImageReference = reference_or_id.parse()?;
    let found = match reference.digest() {
        Some(digest) => {
            let wanted = reference.repo_digest(digest);
            state
                .values()
                .find(|(r, _)| r.repo_digests.contains(&wanted))
        }
        None => reference
            .repo_tag()
            .and_then(|wanted| state.values().find(|(r, _)| r.repo_tags.contains(&wanted))),
    };
    Ok(found.map(|(r, _)| r.id.clone()))
}

fn usage(path: &Path, seen: &mut HashSet<(u64, u64)>, bytes: &mut u64) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Removed while we walk: no longer used.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path, "stat")(e)),
    };
    if seen.insert((meta.dev(), meta.ino())) {
        *bytes += meta.blocks() * 512;
    }
    if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(path, "list")(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(path, "list"))?;
            usage(&entry.path(), seen, bytes)?;
        }
    }
    Ok(())
}

/// Makes `dir` 0700 (whatever an older daemon or a umask left). No local
/// user may reach a layer or a mounted root filesystem (setuid binaries
/// and device nodes from images: cf. CVE-2021-41091), not even a pod's
/// mapped root: a container in a user namespace reaches its root
/// filesystem through a bind the runtime makes elsewhere.
fn private(dir: &Path) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(dir, "make private (0700)"))
}

/// The image records and their configs. A record whose config is over the
/// size a pull accepts (pulled before configs were capped) is dropped like
/// one with malformed digests: its content is collected as unreferenced.
fn load_images(
    blobs: &BlobStore,
    metadata: &MetadataStore,
) -> Result<HashMap<Digest, (ImageRecord, String)>> {
    let limit = crate::oci::MAX_DOCUMENT_SIZE;
    let mut state = HashMap::new();
    for record in metadata.load_all()? {
        if blobs.size(&record.id).is_some_and(|size| size > limit) {
            tracing::warn!(image = %record.id, limit, "dropping an image whose config is over the limit");
            metadata.remove(&record.id)?;
            continue;
        }
        let config = match blobs.read(&record.id, limit) {
            Ok(config) => config,
            // Its config is gone (a crash, a disk error): the image is
            // forgotten, to be pulled again, rather than the store unusable.
            Err(e) => {
                tracing::warn!(image = %record.id, error = %e, "dropping an image whose config cannot be read");
                metadata.remove(&record.id)?;
                continue;
            }
        };
        let config = String::from_utf8_lossy(&config).into_owned();
        state.insert(record.id.clone(), (record, config));
    }
    Ok(state)
}

impl Inner {
    fn open(root: PathBuf, registries: Registries) -> Result<Self> {
        for dir in std::iter::once(root.clone()).chain(DIRS.map(|sub| root.join(sub))) {
            std::fs::create_dir_all(&dir).map_err(io(&dir, "create"))?;
            private(&dir)?;
        }
        let lock_path = root.join("lock");
        let lock_file = std::fs::File::create(&lock_path).map_err(io(&lock_path, "create"))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| match errno {
                nix::errno::Errno::EWOULDBLOCK => Error::Locked {
                    path: lock_path.clone(),
                },
                other => io(&lock_path, "lock")(other.into()),
            })?;
        let leftovers = TMP_DIRS.iter().map(|t| root.join(t)).map(|tmp| {
            let entries = std::fs::read_dir(&tmp).map_err(io(&tmp, "list"))?;
            entries
                .map(|e| e.map(|e| e.path()).map_err(io(&tmp, "list")))
                .collect::<Result<Vec<PathBuf>>>()
        });
        for path in leftovers.collect::<Result<Vec<_>>>()?.into_iter().flatten() {
            tracing::info!(path = %path.display(), "removing leftover of an interrupted operation");
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io(&path, "remove leftover"))?;
        }
        let blobs = BlobStore::new(&root);
        let metadata = MetadataStore::new(&root);
        let state = load_images(&blobs, &metadata)?;
        let flights = Flights::new(state.values().flat_map(|(record, _)| {
            // Both bottom first; an older record has no layer digests.
            record
                .layers
                .iter()
                .cloned()
                .zip(record.layer_digests.clone())
        }));
        let inner = Self {
            _lock: lock,
            blobs,
            layers: LayerStore::new(&root),
            metadata,
            rootfs: RootFsDir::new(&root),
            root,
            registries: Mutex::new(registries),
            state: Mutex::new(state),
            in_flight: Mutex::new(HashMap::new()),
            gc: tokio::sync::RwLock::new(()),
            pulled_bytes: AtomicU64::new(0),
            pull_options: PullOptions::default(),
            check: Mutex::new(CheckSlot::default()),
            flights,
            deleter: Mutex::new(None),
        };
        inner.collect_garbage()?;
        Ok(inner)
    }

    /// The endpoints to pull `reference` from, each with the credentials
    /// to ask it with (the caller's `auth`, or the auth file's); a blocked
    /// image is refused here, before any endpoint is contacted.
    fn endpoints(
        &self,
        reference: &ImageReference,
        auth: &RegistryAuth,
    ) -> Result<Vec<(crate::Endpoint, RegistryAuth)>> {
        let registries = lock(&self.registries).clone();
        if let Some(prefix) = registries.blocked(reference) {
            return Err(Error::Blocked {
                image: reference.to_string(),
                prefix: prefix.to_string(),
            });
        }
        Ok(registries
            .endpoints(reference)
            .into_iter()
            .map(|e| {
                let auth = registries.auth_for(&e, reference, auth);
                (e, auth)
            })
            .collect())
    }

    async fn pull(
        self: Arc<Self>,
        reference: ImageReference,
        credentials: Option<Credentials>,
        slot: CheckSlot,
    ) -> Result<Image> {
        let started = std::time::Instant::now();
        let _shared = self.gc.read().await;
        let auth = credentials
            .unwrap_or_default()
            .to_registry_auth()
            .map_err(|reason| Error::BadImage {
                image: reference.to_string(),
                reason: format!("credentials: {reason}"),
            })?;
        let endpoints = self.endpoints(&reference, &auth)?;
        let target = pull::Target {
            blobs: &self.blobs,
            layers: &self.layers,
            pulled: &self.pulled_bytes,
            check: &slot,
            flights: &self.flights,
        };
        let fetched = pull::fetch(target, &reference, &endpoints, &auth, &self.pull_options).await;
        let fetched = match fetched {
            Err(Error::PolicyRefused {
                image,
                digest,
                refusal,
            }) => {
                let refused = (digest, refusal, slot.generation);
                return Err(self.refused(&reference, image, refused).await);
            }
            other => Arc::new(other?),
        };
        let recording = std::time::Instant::now();
        let mut checked = (slot.generation, fetched.evidence.clone());
        // Recorded only with the current check's evidence: if the check was
        // replaced while this pull ran (a reload), the image is checked
        // again, and recorded only once no newer check came meanwhile.
        loop {
            let this = Arc::clone(&self);
            let (r, f) = (reference.clone(), Arc::clone(&fetched));
            let recorded = tokio::task::spawn_blocking(move || this.record(&r, &f, checked))
                .await
                .map_err(|_| Error::Task("recording a pulled image"))??;
            if let Some(image) = recorded {
                tracing::debug!(
                    image = %reference,
                    record_ms = recording.elapsed().as_millis() as u64,
                    total_ms = started.elapsed().as_millis() as u64,
                    "pull recorded"
                );
                return Ok(image);
            }
            let slot = lock(&self.check).clone();
            checked = match slot.run(&reference, &fetched.top_digest, &auth).await {
                Ok(evidence) => (slot.generation, evidence),
                Err(refusal) => {
                    let refused = (fetched.top_digest.clone(), refusal, slot.generation);
                    return Err(self
                        .refused(&reference, reference.to_string(), refused)
                        .await);
                }
            };
        }
    }

    /// A refused pull's error, once the stored evidence it makes stale (the
    /// same reference and digest) says so too: a re-pull refused under a
    /// new policy must not leave the old verdict standing. `refused` is the
    /// digest, the refusal and the generation of the check that refused.
    async fn refused(
        self: &Arc<Self>,
        reference: &ImageReference,
        image: String,
        (digest, refusal, generation): (Digest, crate::PullRefusal, u64),
    ) -> Error {
        let evidence = refusal.evidence(reference, &digest);
        let this = Arc::clone(self);
        let withdrawn =
            tokio::task::spawn_blocking(move || this.withdraw(evidence, generation)).await;
        if let Ok(Err(e)) = withdrawn {
            tracing::warn!(%image, error = %e, "could not record a refusal on the stored image");
        }
        Error::PolicyRefused {
            image,
            digest,
            refusal,
        }
    }

    /// Replaces every stored entry for `evidence`'s reference and digest
    /// with it, unless the check that refused (of `generation`) was replaced
    /// meanwhile: the new one (and its recheck) has the say.
    fn withdraw(&self, evidence: PullEvidence, generation: u64) -> Result<()> {
        let mut state = lock(&self.state);
        if lock(&self.check).generation != generation {
            return Ok(());
        }
        for (record, _) in state.values_mut() {
            let stale =
                |e: &PullEvidence| e.reference == evidence.reference && e.digest == evidence.digest;
            if record.evidence.iter().any(stale) {
                record.evidence.retain(|e| !stale(e));
                record.evidence.push(evidence.clone());
                self.metadata.save(record)?;
            }
        }
        Ok(())
    }

    /// Makes a fetched image visible under its names: the tag moves here
    /// from whichever image had it, and the check's evidence replaces the
    /// image's entry for this reference. `None` when the check's generation
    /// is no longer `checked`'s: the image is checked again first.
    fn record(
        &self,
        reference: &ImageReference,
        fetched: &pull::Fetched,
        (generation, evidence): (u64, Option<PullEvidence>),
    ) -> Result<Option<Image>> {
        let mut state = lock(&self.state);
        // Compared under `state`: a recheck that starts after the check
        // changed lists the images after this record is made, so it sees
        // the record, or this sees the change.
        if lock(&self.check).generation != generation {
            return Ok(None);
        }
        let config = String::from_utf8_lossy(&fetched.config).into_owned();
        let tag = reference.repo_tag();
        let digest = reference.repo_digest(fetched.top_digest.as_str());
        if let Some(tag) = &tag {
            let losers: Vec<Digest> = state
                .values()
                .filter(|(r, _)| r.id != fetched.id && r.repo_tags.contains(tag))
                .map(|(r, _)| r.id.clone())
                .collect();
            for id in losers {
                if let Some((record, _)) = state.get_mut(&id) {
                    record.repo_tags.retain(|t| t != tag);
                    self.metadata.save(record)?;
                }
            }
        }
        let (record, _) = state.entry(fetched.id.clone()).or_insert_with(|| {
            (
                ImageRecord {
                    id: fetched.id.clone(),
                    repo_tags: Vec::new(),
                    repo_digests: Vec::new(),
                    size: fetched.size,
                    layers: fetched.layers.clone(),
                    blobs: Vec::new(),
                    layer_digests: Vec::new(),
                    evidence: Vec::new(),
                },
                config.clone(),
            )
        });
        if let Some(tag) = tag {
            if !record.repo_tags.contains(&tag) {
                record.repo_tags.push(tag);
            }
        }
        if !record.repo_digests.contains(&digest) {
            record.repo_digests.push(digest);
        }
        for blob in &fetched.blobs {
            if !record.blobs.contains(blob) {
                record.blobs.push(blob.clone());
            }
        }
        // Another manifest may carry the same config with other blobs
        // (recompressed layers): the pairs first recorded stay.
        if record.layer_digests.is_empty() {
            record.layer_digests = fetched.layer_digests.clone();
        }
        if let Some(evidence) = evidence {
            record
                .evidence
                .retain(|e| e.reference != evidence.reference);
            record.evidence.push(evidence);
        }
        self.metadata.save(record)?;
        Ok(Some(Image::from_record(record, config)))
    }

    /// [`ImageStore::set_evidence`], refused as [`Written::Superseded`]
    /// when `generation` is given and is no longer the check's.
    fn set_evidence(
        &self,
        image_id: &str,
        evidence: PullEvidence,
        generation: Option<u64>,
    ) -> Result<Written> {
        let mut state = lock(&self.state);
        if generation.is_some_and(|g| g != lock(&self.check).generation) {
            return Ok(Written::Superseded);
        }
        let Some((record, _)) = image_id
            .parse::<Digest>()
            .ok()
            .and_then(|id| state.get_mut(&id))
        else {
            return Ok(Written::Skipped);
        };
        let same_reference = record
            .evidence
            .iter()
            .position(|e| e.reference == evidence.reference);
        match same_reference {
            Some(i) if record.evidence[i].digest != evidence.digest => return Ok(Written::Skipped),
            Some(i) => record.evidence[i] = evidence,
            None => record.evidence.push(evidence),
        }
        self.metadata.save(record)?;
        Ok(Written::Yes)
    }

    fn remove(&self, wanted: &str) -> Result<()> {
        let id = {
            let state = lock(&self.state);
            match find(&state, wanted)? {
                Some(id) => id,
                None => return Ok(()),
            }
        };
        let users = self.rootfs.users_of(id.as_str())?;
        if !users.is_empty() {
            return Err(Error::InUse {
                image: id.to_string(),
                containers: users,
            });
        }
        self.metadata.remove(&id)?;
        lock(&self.state).remove(&id);
        self.collect_garbage()
    }

    /// Deletes blobs and layers no recorded image refers to.
    fn collect_garbage(&self) -> Result<()> {
        let (blobs, layers): (HashSet<Digest>, HashSet<ChainId>) = {
            let state = lock(&self.state);
            (
                state.values().flat_map(|(r, _)| r.blobs.clone()).collect(),
                state.values().flat_map(|(r, _)| r.layers.clone()).collect(),
            )
        };
        for chain in self.layers.list()? {
            if !layers.contains(&chain) {
                self.layers.remove(&chain)?;
            }
        }
        self.flights.retain(&layers);
        for digest in self.blobs.list()? {
            if !blobs.contains(&digest) {
                self.blobs.remove(&digest)?;
            }
        }
        Ok(())
    }
}

/// Takes `lock` exclusively once no reader holds it, without queueing: a
/// writer waiting in tokio's fair lock would hold up every reader that comes
/// after it, so a removal waiting on a stalled pull would stall every
/// CreateContainer (which mounts root filesystems under the shared lock).
async fn exclusive_behind_readers(
    lock: &tokio::sync::RwLock<()>,
) -> tokio::sync::RwLockWriteGuard<'_, ()> {
    loop {
        if let Ok(guard) = lock.try_write() {
            return guard;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_waiting_removal_never_holds_up_readers() {
        let lock = std::sync::Arc::new(tokio::sync::RwLock::new(()));
        // A stalled pull holds the shared lock.
        let pull = lock.clone().read_owned().await;
        let removal = tokio::spawn({
            let lock = lock.clone();
            async move {
                let _held = super::exclusive_behind_readers(&lock).await;
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // A root filesystem still mounts meanwhile.
        let mount = tokio::time::timeout(std::time::Duration::from_millis(500), lock.read()).await;
        assert!(mount.is_ok(), "a reader queued behind the waiting removal");
        drop(mount);
        drop(pull);
        tokio::time::timeout(std::time::Duration::from_secs(2), removal)
            .await
            .expect("the removal proceeds once the pull is done")
            .unwrap();
    }

    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn fetched(id: char, top: char) -> pull::Fetched {
        pull::Fetched {
            id: digest(id),
            top_digest: digest(top),
            size: 10,
            layers: vec![],
            layer_digests: vec![],
            blobs: vec![],
            config: b"{}".to_vec(),
            evidence: None,
        }
    }

    /// Records `fetched` under the current check's generation.
    fn record(inner: &Inner, r: &ImageReference, fetched: pull::Fetched) -> Image {
        let generation = lock(&inner.check).generation;
        inner
            .record(r, &fetched, (generation, fetched.evidence.clone()))
            .unwrap()
            .expect("the generation is current")
    }

    fn open() -> (tempfile::TempDir, Inner) {
        let dir = tempfile::tempdir().unwrap();
        let inner = Inner::open(dir.path().to_path_buf(), Registries::default()).unwrap();
        (dir, inner)
    }

    fn tags(inner: &Inner, id: char) -> Vec<String> {
        lock(&inner.state)
            .get(&digest(id))
            .unwrap()
            .0
            .repo_tags
            .clone()
    }

    #[test]
    fn a_tag_moves_to_the_image_pulled_last_and_the_old_one_keeps_its_digest() {
        let (_dir, inner) = open();
        let r: ImageReference = "example.com/app:v1".parse().unwrap();
        let old = record(&inner, &r, fetched('1', 'a'));
        let new = record(&inner, &r, fetched('2', 'b'));
        assert!(tags(&inner, '1').is_empty());
        assert_eq!(tags(&inner, '2'), ["example.com/app:v1"]);
        let state = lock(&inner.state);
        assert_eq!(
            find(&state, "example.com/app:v1").unwrap(),
            Some(new.id.parse().unwrap())
        );
        assert_eq!(
            find(&state, &old.repo_digests[0]).unwrap(),
            Some(old.id.parse().unwrap()),
            "still reachable by digest"
        );
        drop(state);
        // And that survives a restart: records are on disk.
        let records = inner.metadata.load_all().unwrap();
        assert_eq!(records.len(), 2);
    }

    #[tokio::test]
    async fn a_replaced_check_refuses_stale_records_and_rechecks_stored_evidence() {
        let (_dir, inner) = open();
        let store = ImageStore {
            inner: Arc::new(inner),
        };
        let r: ImageReference = "example.com/app:v1".parse().unwrap();
        let mut signed = fetched('1', 'a');
        signed.evidence = Some(PullEvidence {
            reference: r.to_string(),
            digest: digest('a').to_string(),
            verified: true,
            ..Default::default()
        });
        record(&store.inner, &r, signed);
        let mut check = crate::check::MockPullCheck::new();
        check
            .expect_check()
            .withf(|r, d, auth| {
                r.to_string() == "example.com/app:v1"
                    && *d == digest('a')
                    && *auth == RegistryAuth::Anonymous
            })
            .times(1)
            .returning(|_, _, _| {
                Err(crate::PullRefusal::new(
                    std::fmt::Error,
                    serde_json::json!("why"),
                ))
            });
        store.set_pull_check(Some(Arc::new(check)));
        // Fetched under the check before: recorded only after another check.
        let stale = store.inner.record(&r, &fetched('1', 'a'), (0, None));
        assert!(stale.unwrap().is_none());
        let report = store.recheck_evidence().await.unwrap();
        assert_eq!((report.replaced, report.changed), (1, 1));
        let evidence = &store
            .status("example.com/app:v1")
            .unwrap()
            .unwrap()
            .evidence;
        assert_eq!(evidence.len(), 1);
        assert!(!evidence[0].verified);
        assert_eq!(evidence[0].detail, serde_json::json!("why"));
    }

    #[test]
    fn an_image_whose_config_is_gone_is_forgotten_not_fatal() {
        let (dir, inner) = open();
        let r: ImageReference = "example.com/app:v1".parse().unwrap();
        let image = record(&inner, &r, fetched('1', 'a'));
        let id: Digest = image.id.parse().unwrap();
        let config = inner.blobs.path(&id);
        if config.exists() {
            std::fs::remove_file(&config).unwrap();
        }
        drop(inner);
        let reopened = Inner::open(dir.path().to_path_buf(), Registries::default()).unwrap();
        assert!(lock(&reopened.state).is_empty());
        assert!(reopened.metadata.load_all().unwrap().is_empty());
    }

    #[test]
    fn names_accumulate_without_duplicates() {
        let (_dir, inner) = open();
        for reference in [
            "example.com/app:v1",
            "example.com/app:v2",
            "example.com/app:v1",
        ] {
            let r: ImageReference = reference.parse().unwrap();
            record(&inner, &r, fetched('1', 'a'));
        }
        assert_eq!(
            tags(&inner, '1'),
            ["example.com/app:v1", "example.com/app:v2"]
        );
        let state = lock(&inner.state);
        assert_eq!(state.get(&digest('1')).unwrap().0.repo_digests.len(), 1);
    }

    #[test]
    fn ids_are_found_in_both_forms_and_unknown_ids_are_none() {
        let (_dir, inner) = open();
        let r: ImageReference = "example.com/app:v1".parse().unwrap();
        record(&inner, &r, fetched('1', 'a'));
        let state = lock(&inner.state);
        let hex = "1".repeat(64);
        let id = digest('1');
        assert_eq!(find(&state, &hex).unwrap(), Some(id.clone()));
        assert_eq!(find(&state, id.as_str()).unwrap(), Some(id));
        assert_eq!(find(&state, &"2".repeat(64)).unwrap(), None);
        assert!(find(&state, "Bad Reference").is_err());
    }

    #[test]
    fn open_makes_every_directory_private_even_in_an_old_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        for sub in ["blobs/sha256", "layers", "images", "containers", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            let open = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(root.join(sub), open).unwrap();
        }
        let _inner = Inner::open(root.clone(), Registries::default()).unwrap();
        for sub in std::iter::once("").chain(DIRS) {
            let mode = std::fs::metadata(root.join(sub))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o700, "{sub}");
        }
    }
}
