//! The crate's error type: every variant names the image (or container, or
//! path) and the cause.

use crate::digest::{Digest, DigestError};
use crate::layer_unpack::UnpackError;
use crate::reference::ReferenceError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    /// Every endpoint failed and at least one refused access: a 401 after
    /// the credentials it was asked with (or without any), or no usable
    /// token from its realm. Each attempt is listed as `endpoint: cause`;
    /// no secret is.
    #[error("pull {image}: not authorized: {}", attempts.join("; "))]
    Unauthorized {
        /// The image as asked for.
        image: String,
        /// One line per endpoint tried.
        attempts: Vec<String>,
    },
    /// The image falls under a registry entry with `blocked = true` (or
    /// may come only from mirrors whose locations all do): nothing was
    /// fetched, no endpoint was contacted.
    #[error("pull {image}: registry prefix {prefix:?} is blocked by the registries configuration")]
    Blocked {
        /// The image as asked for.
        image: String,
        /// The blocked entry's prefix.
        prefix: String,
    },
    /// The pull made too little progress: for a whole window of waiting on
    /// the registry (its stall timeout), fewer than
    /// [`crate::MIN_PROGRESS_BYTES`] arrived and no request completed. The
    /// pull fails as a whole, whichever endpoint it was on.
    #[error("pull {image}: no progress for {window:?} fetching {object} ({bytes} bytes in the last {window:?})")]
    Stalled {
        /// The image as asked for.
        image: String,
        /// The URL being fetched when the window ran out.
        object: String,
        /// Bytes received in the last window.
        bytes: u64,
        /// The window: the stall timeout.
        window: Duration,
    },
    /// The pull could not be set up (credentials that do not decode).
    #[error("pull {image}: {reason}")]
    BadImage {
        /// The image as asked for.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry sent something the store refuses to use: a malformed
    /// digest, a document or blob over its limit, a layer that is not what
    /// the config says.
    #[error("pull {image}: {object}: {cause}")]
    Refused {
        /// The image as asked for.
        image: String,
        /// What was refused: `manifest sha256:…`, `config sha256:…`,
        /// `layer sha256:…`, or `manifest for tag …` before its digest is
        /// known.
        object: String,
        /// Why.
        #[source]
        cause: Refusal,
    },
    /// The pull-time check ([`crate::PullCheck`], the signature policy)
    /// refused manifest `digest`: nothing of the image was stored, and a
    /// stored image's evidence for this reference and digest now says so.
    #[error("pull {image}: {refusal}")]
    PolicyRefused {
        /// The image as asked for.
        image: String,
        /// The top manifest digest the check refused.
        digest: Digest,
        /// Why.
        #[source]
        refusal: crate::PullRefusal,
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
    /// A concurrent pull of the same reference with the same credentials,
    /// which this call joined, failed.
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
    /// The store's filesystem is full (or its quota reached) while a pull
    /// wrote to it: the pull stopped, its staging directories and
    /// temporary files are removed, and what was stored before is intact.
    #[error("pull {image}: {object}: {source}")]
    NoSpace {
        /// The image as asked for.
        image: String,
        /// The write that failed: `<path>: <operation>`, or
        /// `layer sha256:…: entry <name>: <operation>`.
        object: String,
        /// The kernel's answer (`ENOSPC` or `EDQUOT`).
        #[source]
        source: std::io::Error,
    },
    /// Another process has the store open.
    #[error("image store {}: in use by another process", path.display())]
    Locked {
        /// The store's lock file.
        path: PathBuf,
    },
    /// A container's overlay would be handed a path that is not where the
    /// store keeps it, or that overlayfs would misread.
    #[error("rootfs of container {container}: refusing {path:?} as {role}: {why}")]
    UnsafeMountPath {
        /// The container id.
        container: String,
        /// Which overlay option: `lowerdir`, `upperdir`, `workdir`.
        role: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A blocking task died (a panic in the store's own code).
    #[error("{0}: background task failed")]
    Task(&'static str),
}

/// Why registry content was refused; see [`Error::Refused`].
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not JSON of the expected shape.
    #[error("not valid JSON for {document}: {source}")]
    Json {
        /// What it should have been.
        document: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A digest or diff id that is not one.
    #[error("{field}: {source}")]
    Digest {
        /// Where in the document, e.g. `rootfs.diff_ids[0]`.
        field: String,
        /// Why it is not a digest.
        #[source]
        source: DigestError,
    },
    /// A required field is absent.
    #[error("no {0} field")]
    Missing(&'static str),
    /// Docker's long-deprecated schema 1.
    #[error("Docker schema 1 manifests are not supported")]
    Schema1,
    /// A `schemaVersion` other than 2.
    #[error("schemaVersion {0:?}: only 2 is supported")]
    SchemaVersion(Option<u64>),
    /// A manifest request answered with something else.
    #[error("media type {0:?} is not an image manifest or index")]
    MediaType(String),
    /// An index entry that is itself an index.
    #[error("the index's linux/amd64 entry is another index")]
    NestedIndex,
    /// No entry for a platform this node runs.
    #[error("the image index has no image for {} (it offers {})", .wanted.join(", "), if .offered.is_empty() { "no platform at all".to_string() } else { .offered.join(", ") })]
    NoPlatform {
        /// The host's platform and the configured fallbacks.
        wanted: Vec<String>,
        /// The platforms the index lists.
        offered: Vec<String>,
    },
    /// A layer whose media type we cannot unpack.
    #[error("unsupported layer media type {0:?}")]
    LayerMediaType(String),
    /// A descriptor declares more than the limit for its kind of content.
    #[error("its descriptor declares {declared} bytes, more than the {limit}-byte limit")]
    Declared {
        /// The size declared.
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// More bytes arrived than the limit (nothing past `limit + 1` is read).
    #[error("larger than the {limit}-byte limit")]
    OverLimit {
        /// The limit.
        limit: u64,
    },
    /// More bytes arrived than the descriptor declares.
    #[error("larger than the {declared} bytes its descriptor declares")]
    OverDeclared {
        /// The size declared.
        declared: u64,
    },
    /// The content is not the size its descriptor declares.
    #[error("{actual} bytes, but its descriptor declares {declared}")]
    SizeMismatch {
        /// The size declared.
        declared: u64,
        /// The size of the content.
        actual: u64,
    },
    /// More layers than overlayfs can stack.
    #[error("{layers} layers: more than the {limit} overlayfs can stack")]
    TooManyLayers {
        /// Layers in the manifest.
        layers: usize,
        /// The limit.
        limit: usize,
    },
    /// The config's diff ids do not pair with the manifest's layers.
    #[error("the config lists {diff_ids} diff ids for {layers} layers")]
    LayerCount {
        /// Diff ids in the config.
        diff_ids: usize,
        /// Layers in the manifest.
        layers: usize,
    },
    /// The layer's uncompressed content is not what the config says
    /// (containerd: "wrong diff id calculated on extraction").
    #[error("wrong diff id: the config says {expected}, the content is {actual}")]
    DiffId {
        /// The config's diff id.
        expected: Digest,
        /// The digest of the uncompressed layer.
        actual: Digest,
    },
}

impl Error {
    /// `e` as [`Error::NoSpace`] for a pull of `image` when it failed
    /// because the store's filesystem is full (`ENOSPC`) or the quota
    /// reached (`EDQUOT`); otherwise `e` unchanged.
    pub(crate) fn out_of_space(self, image: &str) -> Error {
        match self.space_failure() {
            Some((object, errno)) => Error::NoSpace {
                image: image.to_string(),
                object,
                source: std::io::Error::from_raw_os_error(errno),
            },
            None => self,
        }
    }

    /// The write that ran out of space and its errno, if that is what
    /// this is.
    fn space_failure(&self) -> Option<(String, i32)> {
        match self {
            Error::Io { path, op, source } => source
                .raw_os_error()
                .filter(|errno| is_full(*errno))
                .map(|errno| (format!("{}: {op}", path.display()), errno)),
            Error::Unpack { digest, source, .. } => unpack_out_of_space(source)
                .map(|(what, errno)| (format!("layer {digest}: {what}"), errno)),
            Error::Store { source, .. } => source.space_failure(),
            _ => None,
        }
    }
}

/// `ENOSPC` (the filesystem is full) or `EDQUOT` (the quota is reached).
fn is_full(errno: i32) -> bool {
    matches!(errno, libc::ENOSPC | libc::EDQUOT)
}

/// Where an unpack ran out of space, and the errno, if it did.
fn unpack_out_of_space(e: &UnpackError) -> Option<(String, i32)> {
    let (what, errno) = match e {
        UnpackError::Write { entry, source } => (
            format!("entry {entry}: writing content"),
            source.raw_os_error()?,
        ),
        UnpackError::Create { entry, op, errno } => (format!("entry {entry}: {op}"), *errno as i32),
        UnpackError::Destination { path, errno } => {
            (format!("layer directory {}", path.display()), *errno as i32)
        }
        UnpackError::Read(_) | UnpackError::Unsupported { .. } => return None,
    };
    is_full(errno).then_some((what, errno))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error(errno: i32) -> Error {
        io("/store/tmp/x", "write")(std::io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn a_full_disk_becomes_no_space_anything_else_stays() {
        let full = io_error(libc::ENOSPC).out_of_space("img");
        assert!(matches!(full, Error::NoSpace { .. }), "{full}");
        assert_eq!(
            full.to_string(),
            format!(
                "pull img: /store/tmp/x: write: {}",
                std::io::Error::from_raw_os_error(libc::ENOSPC)
            )
        );
        let wrapped = Error::Store {
            image: "img".into(),
            source: Box::new(io_error(libc::EDQUOT)),
        };
        assert!(matches!(wrapped.out_of_space("img"), Error::NoSpace { .. }));
        let denied = Error::Store {
            image: "img".into(),
            source: Box::new(io_error(libc::EACCES)),
        };
        assert!(matches!(denied.out_of_space("img"), Error::Store { .. }));
        let unpack = Error::Unpack {
            image: "img".into(),
            digest: "sha256:ab".into(),
            source: UnpackError::Create {
                entry: "bin/sh".into(),
                op: "symlink",
                errno: nix::errno::Errno::ENOSPC,
            },
        };
        let text = unpack.out_of_space("img").to_string();
        assert!(
            text.starts_with("pull img: layer sha256:ab: entry bin/sh: symlink: "),
            "{text}"
        );
        let broken = Error::Unpack {
            image: "img".into(),
            digest: "sha256:ab".into(),
            source: UnpackError::Read(std::io::ErrorKind::UnexpectedEof.into()),
        };
        assert!(matches!(broken.out_of_space("img"), Error::Unpack { .. }));
    }
}
