//! The CRI v1 daemon.
//!
//! This crate will own the thin gRPC layer that kubelet and crictl talk to over
//! a unix socket: it maps CRI requests onto the runtime crates (`netns`,
//! `sandbox-core`, `trust-policy`, `oci-shim`, `image-store`, `cni`), persists
//! and restores the daemon's state, and maps crate errors to gRPC codes in one
//! place. It is filled in by the cri-server issue; no crate depends on it.
