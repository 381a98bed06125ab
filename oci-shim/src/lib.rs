//! OCI bundles, the runtime command-line driver and the per-container monitor.
//!
//! This crate will own everything between a typed container spec and a process
//! running under an OCI runtime (runc for trusted workloads, gVisor's runsc for
//! untrusted ones): writing the bundle's `config.json`, driving the runtime's
//! create/start/state/kill/delete/exec verbs, and the small monitor process
//! that holds a container's stdio, writes its CRI log and records its exit
//! while the daemon comes and goes. It is filled in by the oci-shim issue.
