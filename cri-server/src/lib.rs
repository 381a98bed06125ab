//! The CRI v1 daemon.
//!
//! The thin gRPC layer that kubelet and crictl talk to over a unix socket: it
//! maps CRI requests onto the runtime crates (`netns`, `sandbox-core`,
//! `trust-policy`, `oci-shim`, `image-store`, `cni`), persists and restores the
//! daemon's state, and maps crate errors to gRPC codes in one place. No crate
//! depends on this one.

pub mod config;
pub mod image_service;
pub mod runtime_service;
pub mod server;
pub mod socket;
