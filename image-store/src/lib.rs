//! Pulling, storing and unpacking OCI images, and container root filesystems.
//!
//! [`ImageStore`] is the whole API, shaped for CRI's ImageService with plain
//! Rust types: [`ImageStore::pull`], [`ImageStore::list`],
//! [`ImageStore::status`], [`ImageStore::remove`], [`ImageStore::fs_info`],
//! and per-container overlay root filesystems with
//! [`ImageStore::create_rootfs`] / [`ImageStore::remove_rootfs`].
//!
//! How it fits together, bottom up:
//!
//! - [`mod@reference`] parses and normalises image references;
//!   [`registries`] maps them to endpoints (mirrors first), refuses blocked
//!   ones, and says which credentials each endpoint is asked with:
//!   [`RegistryAuth`] from the caller ([`Credentials`], CRI's
//!   `AuthConfig`) or the node's [`AuthFile`]; [`tls`] reads a registry's
//!   CA bundle and client certificate.
//! - [`digest`] is the one way to a store path: registry input is parsed
//!   into a [`digest::Digest`] (sha256 or sha512, lowercase hex of the right
//!   length) before it is used for anything; [`oci`] parses indexes,
//!   manifests and configs into typed documents and holds their limits.
//! - `pull` fetches manifests, configs and layers with our own bounded
//!   distribution client (every body read under a cap: 4 MiB for documents,
//!   the descriptor's size for blobs): documents into the [`blob_store`],
//!   layers several at a time ([`PullOptions::max_concurrent_downloads`]),
//!   each streamed through a blocking job (`layer_stream`) that hashes,
//!   decompresses and unpacks it as it arrives and commits it only once
//!   its digest and diff id check out; `flights` shares a layer in flight
//!   between pulls and skips one already verified. `progress` fails a pull
//!   that stalls (too few bytes for a whole [`PullOptions::stall_timeout`]).
//!   [`distribution::RegistryClient`] is that client's public face, for
//!   other crates fetching from the same registries just as boundedly.
//!   Registry tokens come from the realm a 401 names, an identity token
//!   exchanged there as an OAuth2 refresh token (`token`).
//! - [`layer_unpack`] turns a layer tarball into an overlayfs lower directory
//!   without ever writing outside it; [`layer_store`] keeps those directories
//!   by chain id so images share them.
//! - [`check`] is the hook a caller's pull-time check plugs into (the
//!   daemon's signature policy): it sees the top manifest digest before
//!   anything else is fetched, refuses or returns [`PullEvidence`].
//! - [`metadata`] records images (names, layers, blobs, evidence)
//!   atomically; an image becomes visible only when its record is written,
//!   after everything it needs is complete.
//! - `rootfs` mounts a container's overlay and remembers which image it uses,
//!   so images in use cannot be removed.
//!
//! # Examples
//!
//! ```no_run
//! use image_store::{ImageStore, RegistriesConfig, RegistryConfig};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let registries = RegistriesConfig { registries: vec![RegistryConfig {
//!     prefix: "registry.k8s.io".into(),
//!     mirrors: vec!["127.0.0.1:5000".into()],
//!     insecure: true,
//!     ..Default::default()
//! }]};
//! let store = ImageStore::open("/var/lib/cri-server/images", registries.load()?).await?;
//! let image = store.pull("registry.k8s.io/e2e-test-images/busybox:1.29-2", None).await?;
//! assert_eq!(store.status(&image.id)?.map(|i| i.id), Some(image.id));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod auth;
pub mod auth_file;
pub mod blob_store;
pub mod check;
mod clients;
mod credentials;
pub mod digest;
pub mod distribution;
mod error;
pub mod evidence;
mod flights;
pub mod image;
pub mod images;
pub mod layer_store;
mod layer_stream;
pub mod layer_unpack;
pub mod metadata;
mod node_file;
pub mod oci;
mod options;
mod overlay_paths;
pub mod platform;
mod progress;
mod pull;
pub mod reference;
pub mod registries;
mod rootfs;
mod rootfs_tree;
mod store;
mod temp;
pub mod tls;
mod token;

pub use auth::{BadAuth, RegistryAuth};
pub use auth_file::{AuthFile, AuthFileError, LoadedAuthFile};
#[cfg(any(test, feature = "mock"))]
pub use check::MockPullCheck;
pub use check::{PullCheck, PullRefusal};
pub use credentials::Credentials;
pub use error::{Error, Refusal, Result};
pub use evidence::PullEvidence;
pub use image::Image;
pub use images::ContainerImages;
#[cfg(any(test, feature = "mock"))]
pub use images::MockContainerImages;
pub use options::{
    PullOptions, PullOptionsError, DEFAULT_CONCURRENT_DOWNLOADS, DEFAULT_STALL_TIMEOUT,
    MAX_CONCURRENT_DOWNLOADS, MAX_STALL_TIMEOUT, MIN_STALL_TIMEOUT,
};
pub use progress::MIN_PROGRESS_BYTES;
pub use reference::{ImageReference, ReferenceError};
pub use registries::{Endpoint, Registries, RegistriesConfig, RegistryConfig};
pub use rootfs::{RootFs, RootFsIdmap};
pub use rootfs_tree::RootFsTree;
pub use store::{Deleter, FsUsage, ImageStore, Recheck};
