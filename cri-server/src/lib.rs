//! The CRI v1 daemon.
//!
//! The thin gRPC layer that kubelet and crictl talk to over a unix socket: it
//! maps CRI requests onto the runtime crates (`netns`, `sandbox-core`,
//! `trust-policy`, `oci-shim`, `image-store`, `cni`, `cgroups`, `cri-spec`),
//! persists and restores the
//! daemon's state, and maps crate errors to gRPC codes in one place
//! ([`error`]). No crate depends on this one.
//!
//! - [`config`]: the TOML contract and its embedded default.
//! - [`server`], [`socket`]: serving on the unix socket; [`systemd`]:
//!   readiness and watchdog notifications for a `Type=notify` unit.
//! - [`runtime_service`], [`image_service`]: the two CRI services, thin
//!   dispatchers to [`pod`] and [`container`] (one verb per file);
//!   [`list_stream`]: the `Stream*` twins of the `List*` RPCs.
//! - [`stats`]: container and pod stats and CRI metrics; [`metrics`]: the
//!   daemon's own Prometheus endpoint; [`otel`]: OpenTelemetry spans of
//!   every CRI call, over OTLP (`[tracing]`).
//! - [`signatures`]: `[image] signature_policy`, the image store's pull
//!   check, and its reload on SIGHUP.
//! - [`stream_backend`]: the daemon behind the `cri-streaming` server
//!   (Exec, Attach, PortForward).
//! - [`gvisor`]: what pods on gVisor get so they behave as on runc.
//! - [`daemon`]: shared state, built from [`daemon::Parts`] with no I/O;
//!   [`handlers`]: the runtime handlers in force (swapped by a reload);
//!   [`opener`]: the real parts at start; [`restore`] and [`watch`]: records
//!   back after a restart, exits followed; [`records`] and [`layout`]: what
//!   lives where on disk, [`discard`]: removed directories deleted off the
//!   request path; [`pause`]: the built-in infra process.
//! - [`quiet`]: background work that yields to the pod calls; [`turns`]:
//!   work a caller waits on (CNI ADD) a few at a time.

#![warn(missing_docs)]

pub mod config;
pub mod container;
pub mod creations;
pub mod daemon;
pub mod discard;
pub mod error;
pub mod exits;
pub mod fault;
pub mod gvisor;
pub mod handlers;
pub mod image_service;
pub mod in_flight;
pub mod layout;
pub mod list_stream;
pub mod locks;
pub mod log_level;
pub mod memory;
pub mod metrics;
pub mod opener;
pub mod orphans;
pub mod otel;
pub mod pause;
pub mod pod;
pub mod quiet;
pub mod records;
pub mod registries;
pub mod reload;
pub mod restore;
pub mod runtime_service;
pub mod server;
pub mod signatures;
pub mod socket;
pub mod state_dir;
pub mod stats;
pub mod stream_backend;
pub mod systemd;
#[cfg(test)]
pub mod testing;
pub mod turns;
pub mod watch;
