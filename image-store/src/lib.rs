//! Pulling, storing and unpacking OCI images, and container root filesystems.
//!
//! This crate will own the content-addressed blob store, the unpacked layer
//! snapshots shared between images, image metadata (tags, digests, ids) and
//! the per-container writable overlay root filesystem. It is filled in by the
//! image-store issue.
