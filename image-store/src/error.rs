//! The crate's error type: every variant names the image (or container, or
//! path) and the cause.

use crate::layer_unpack::UnpackError;
use crate::reference::ReferenceError;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Every endpoint (mirrors, then the registry) failed; each attempt is
    /// listed as `endpoint: cause`.
    #[error("pull {image}: {}", attempts.join("; "))]
    Registry {
        /// The image as asked for.
        image: String,
        /// One line per endpoint tried.
        attempts: Vec<String>,
    },
    /// The registry sent something that is not a usable image.
    #[error("pull {image}: {reason}")]
    BadImage {
        /// The image as asked for.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Content did not match the digest that names it.
    #[error("pull {image}: blob {expected}: digest mismatch, got {actual}")]
    DigestMismatch {
        /// The image as asked for.
        image: String,
        /// The digest the manifest or config promised.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A layer could not be unpacked.
    #[error("pull {image}: layer {digest}: {source}")]
    Unpack {
        /// The image as asked for.
        image: String,
        /// The layer blob's digest.
        digest: String,
        /// Why.
        #[source]
        source: UnpackError,
    },
    /// A filesystem operation on the store failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What we were doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A metadata file is not valid JSON for its record.
    #[error("{}: corrupt metadata: {source}", path.display())]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The image is used by containers and cannot be removed.
    #[error("image {image} is in use by container(s) {}", containers.join(", "))]
    InUse {
        /// The image id.
        image: String,
        /// The containers whose root filesystems use it.
        containers: Vec<String>,
    },
    /// No image by that reference or id is stored.
    #[error("image {0}: not found in the store")]
    NotFound(String),
    /// A container's root filesystem could not be mounted or unmounted.
    #[error("rootfs of container {container}: {op}: {errno}")]
    Mount {
        /// The container id.
        container: String,
        /// What we were doing.
        op: &'static str,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// A container id that cannot be used as a directory name.
    #[error("container id {0:?}: must be non-empty [A-Za-z0-9_.-] and not start with '.'")]
    BadContainerId(String),
    /// A concurrent pull of the same reference, which this call joined, failed.
    #[error("{source} (in a concurrent pull of {image} this one joined)")]
    SharedPull {
        /// The image as asked for.
        image: String,
        /// The failure of the shared pull.
        #[source]
        source: Arc<Error>,
    },
    /// Storing a pulled image failed locally (for example, a full disk).
    #[error("pull {image}: {source}")]
    Store {
        /// The image as asked for.
        image: String,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// Another process has the store open.
    #[error("image store {}: in use by another process", path.display())]
    Locked {
        /// The store's lock file.
        path: PathBuf,
    },
    /// A blocking task died (a panic in the store's own code).
    #[error("{0}: background task failed")]
    Task(&'static str),
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an [`Error::Io`] mapper naming `path` and `op`.
pub(crate) fn io(
    path: impl Into<PathBuf>,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, op, source }
}
