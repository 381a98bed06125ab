//! The one place where errors become gRPC status codes.
//!
//! Every handler returns [`Error`]; the conversion into [`tonic::Status`] at
//! the bottom of this file is the only mapping from crate errors to codes, so
//! a reader can check in one screen which failure kubelet sees as what.

use tonic::{Code, Status};

/// Everything a CRI request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (a missing field, a bad value).
    #[error("{0}")]
    InvalidArgument(String),
    /// The object named by the request does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The operation ran out of time (an exec's timeout).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The daemon failed; the message names the object and the cause.
    #[error("{0}")]
    Internal(String),
    /// The pod and container model refused (lookups, names, transitions).
    #[error(transparent)]
    Model(#[from] sandbox_core::Error),
    /// The trust policy refused the pod.
    #[error(transparent)]
    Trust(#[from] trust_policy::DecisionError),
    /// A network namespace operation failed.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// The OCI runtime or a monitor failed.
    #[error(transparent)]
    Oci(#[from] oci_shim::Error),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] image_store::Error),
    /// A container's user could not be resolved in its image: unknown, or
    /// the image's user database is hostile (a device, FIFO or symlink out
    /// of the image) or unreadable.
    #[error("container {container} (image {image}): {source}")]
    ContainerUser {
        /// The container's name.
        container: String,
        /// The image it was created from.
        image: String,
        /// Why.
        source: cri_spec::image_config::UserError,
    },
}

/// Shorthand for handler results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An internal error that names `what` was being done to `object`.
    pub fn internal(object: impl std::fmt::Display, what: impl std::fmt::Display) -> Error {
        Error::Internal(format!("{object}: {what}"))
    }

    fn code(&self) -> Code {
        use sandbox_core::Error as M;
        use trust_policy::DecisionError as T;
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Internal(_) => Code::Internal,
            Error::Model(e) => match e {
                M::EmptyPrefix { .. }
                | M::InvalidPrefix { .. }
                | M::InvalidId { .. }
                | M::Ambiguous { .. }
                | M::EmptyName { .. } => Code::InvalidArgument,
                M::NotFound { .. } => Code::NotFound,
                M::AlreadyExists { .. } | M::NameReserved { .. } => Code::AlreadyExists,
                M::InvalidTransition { .. } => Code::FailedPrecondition,
                _ => Code::Internal,
            },
            Error::Trust(e) => match e {
                // The pod is fine; the node's policy refuses it as it is.
                T::PrivilegedUntrustedRejected { .. } | T::UnverifiedImage { .. } => {
                    Code::FailedPrecondition
                }
                // Unknown handlers, bad hints, a handler that contradicts an
                // untrusted hint: the request is wrong.
                _ => Code::InvalidArgument,
            },
            // A hung runtime, killed: the caller may retry.
            Error::Oci(oci_shim::Error::RuntimeTimeout { .. }) => Code::DeadlineExceeded,
            Error::Netns(_) | Error::Oci(_) => Code::Internal,
            Error::ContainerUser { source, .. } => {
                use cri_spec::image_config::UserError as U;
                match source {
                    U::File(file) if !file.is_refusal() => Code::Internal,
                    // The image (or the request's user) is at fault.
                    _ => Code::InvalidArgument,
                }
            }
            Error::Image(e) => image_code(e),
        }
    }
}

/// The code of an image store failure (a joined pull's is its source's).
fn image_code(e: &image_store::Error) -> Code {
    use image_store::Error as I;
    match e {
        I::Reference(_) => Code::InvalidArgument,
        I::NotFound(_) => Code::NotFound,
        I::InUse { .. } => Code::FailedPrecondition,
        // The registry sent an image the store will not use: the caller's
        // to fix (another image), not the daemon's.
        I::Refused { .. } | I::DigestMismatch { .. } => Code::FailedPrecondition,
        // The signature policy refuses the image, or the registries
        // configuration blocks it: the node will not have it.
        I::PolicyRefused { .. } | I::Blocked { .. } => Code::PermissionDenied,
        // The registry (or its token realm) refused the credentials.
        I::Unauthorized { .. } => Code::Unauthenticated,
        // The node's disk, not the daemon: kubelet's image garbage
        // collection (or an operator) can make room.
        I::NoSpace { .. } => Code::ResourceExhausted,
        I::SharedPull { source, .. } => match image_code(source) {
            code @ (Code::PermissionDenied | Code::Unauthenticated | Code::ResourceExhausted) => {
                code
            }
            _ => Code::Internal,
        },
        _ => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = error.code();
        // The request log shows only the code; the reason belongs in the
        // daemon's log too.
        if code == Code::Internal {
            tracing::error!(%error, "request failed");
        } else {
            tracing::debug!(%error, ?code, "request refused");
        }
        Status::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_errors_map_to_cri_codes() {
        let not_found = sandbox_core::Error::NotFound {
            kind: sandbox_core::ObjectKind::Sandbox,
            prefix: "ab".into(),
        };
        assert_eq!(Status::from(Error::from(not_found)).code(), Code::NotFound);
        let empty = sandbox_core::Error::EmptyPrefix {
            kind: sandbox_core::ObjectKind::Container,
        };
        assert_eq!(
            Status::from(Error::from(empty)).code(),
            Code::InvalidArgument
        );
        let taken = sandbox_core::Error::NameReserved {
            name: "k8s_POD_a_b_c_0".into(),
            holder: "f00".into(),
        };
        let status = Status::from(Error::from(taken));
        assert_eq!(status.code(), Code::AlreadyExists);
        assert!(status.message().contains("k8s_POD_a_b_c_0"));
    }

    #[test]
    fn a_full_image_store_is_resource_exhausted_joined_or_not() {
        let full = || image_store::Error::NoSpace {
            image: "registry.k8s.io/pause:3.9".into(),
            object: "layer sha256:ab: entry bin/sh: writing content".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let status = Status::from(Error::from(full()));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("registry.k8s.io/pause:3.9"));
        let joined = image_store::Error::SharedPull {
            image: "registry.k8s.io/pause:3.9".into(),
            source: std::sync::Arc::new(full()),
        };
        assert_eq!(
            Status::from(Error::from(joined)).code(),
            Code::ResourceExhausted
        );
    }

    #[test]
    fn blocked_images_and_refused_credentials_have_their_codes_joined_or_not() {
        let blocked = || image_store::Error::Blocked {
            image: "quay.io/x/app:1".into(),
            prefix: "quay.io/x".into(),
        };
        let refused = || image_store::Error::Unauthorized {
            image: "r.example/app:1".into(),
            attempts: vec!["https://r.example/app: Not authorized".into()],
        };
        for (error, code) in [
            (blocked(), Code::PermissionDenied),
            (refused(), Code::Unauthenticated),
        ] {
            let joined = image_store::Error::SharedPull {
                image: "x".into(),
                source: std::sync::Arc::new(error),
            };
            assert_eq!(Status::from(Error::from(joined)).code(), code);
        }
        assert_eq!(
            Status::from(Error::from(blocked())).code(),
            Code::PermissionDenied
        );
        let status = Status::from(Error::from(refused()));
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("https://r.example/app"));
    }
}
