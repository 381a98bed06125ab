//! The Kubernetes Container Runtime Interface, v1, as Rust types.
//!
//! Generated at build time (prost messages, tonic clients and servers) from
//! `proto/api.proto`, the upstream file of the release named in
//! `proto/VERSION`, vendored unmodified. Vendoring instead of depending on a
//! bindings crate means new fields (user namespaces, image volumes, CDI,
//! runtime handler features, stop signals) are here the day we take a
//! release, and the daemon decides for each whether it serves or refuses it.
//!
//! # Examples
//!
//! ```
//! use cri_api::v1::{AuthConfig, VersionRequest};
//!
//! let request = VersionRequest { version: "v1".into() };
//! assert_eq!(request.version, "v1");
//!
//! // Secrets never reach a log line through Debug.
//! let auth = AuthConfig { password: "hunter2".into(), ..Default::default() };
//! assert!(!format!("{auth:?}").contains("hunter2"));
//! ```

#![allow(missing_docs)] // generated code documents itself from the proto comments

/// `runtime.v1`: every message, enum, client and server of the CRI.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, rustdoc::all)]
    tonic::include_proto!("runtime.v1");
}

mod redact;
