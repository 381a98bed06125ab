//! Pod sandbox verbs, one per file: `run`, `stop`, `remove`, `status`, `list`,
//! `update_resources`;
//! and what a pod has: its `network` (CNI) and its `release` after a stop
//! (`removed`: pods whose release outlives their removal), its shared
//! `files` (resolv.conf, hostname, hosts).
//!
//! A pod is a pinned network namespace (unless it uses the host's) plus an
//! infra container running the built-in pause program on the handler the
//! trust policy chose; the pod's containers join its namespaces, and on
//! gVisor its sandbox.

pub mod files;
pub mod list;
pub mod network;
pub mod release;
pub mod remove;
pub mod removed;
pub mod run;
pub mod status;
pub mod stop;
pub mod update_resources;
