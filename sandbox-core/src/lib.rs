//! The pod and container domain model of a CRI runtime.
//!
//! This crate knows what a pod sandbox and a container *are* and how to keep
//! track of many of them; it does not run anything. It has no kernel calls,
//! no I/O and no async, so servers, tools and tests can all use it.
//!
//! - [`Sandbox`] and [`Container`]: plain serialisable records of
//!   everything a runtime remembers about a pod or container, with their
//!   lifecycle rules ([`SandboxState`], [`ContainerState`]).
//! - [`id`]: 64-hex-digit ids from the OS CSPRNG.
//! - [`PrefixIndex`]: resolving the short id prefixes people type.
//! - [`NameRegistrar`]: making kubelet-style names unique, reporting who
//!   holds a taken name.
//! - [`kube_name`]: those names, `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`
//!   and `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`.
//! - [`Store`] ([`SandboxStore`], [`ContainerStore`]): concurrent stores
//!   looked up by id prefix and listed with CRI filters ([`SandboxFilter`],
//!   [`ContainerFilter`]).
//!
//! # Design
//!
//! - Plain Rust types, not the generated CRI messages: the server maps at
//!   its edge, and this model can be saved as JSON and evolve on its own.
//!   Times are `i64` nanoseconds since the Unix epoch, as CRI sends them.
//! - The network namespace is kept as a path only, so this crate does not
//!   depend on the `netns` crate.
//! - Lifecycle rules live on the records ([`Sandbox::mark_ready`],
//!   [`Container::mark_exited`], ...) and refuse impossible moves with
//!   [`Error::InvalidTransition`] without changing anything.
//! - Stores hand out `Arc` snapshots and replace records whole, so a reader
//!   keeps its snapshot without holding the lock and never sees half an
//!   update, and a lock poisoned by a panicking caller still guards
//!   consistent data.
//!
//! # Examples
//!
//! What a `RunPodSandbox` handler does with this crate, minus the actual
//! running:
//!
//! ```
//! use sandbox_core::{id, kube_name, Error, NameRegistrar, PodMetadata, Sandbox, SandboxStore};
//!
//! let names = NameRegistrar::new();
//! let sandboxes = SandboxStore::new();
//!
//! let metadata = PodMetadata::new("web", "default", "6f1a", 0);
//! let id = id::generate()?;
//! if let Err(err) = names.reserve(&kube_name::pod_name(&metadata), &id) {
//!     // On `Error::NameReserved { holder, .. }` a real server looks at
//!     // `holder`: a kubelet retry of a request it already served.
//!     return Err(err);
//! }
//! let mut sandbox = Sandbox::new(id.clone(), metadata);
//! sandbox.trusted = true;
//! sandboxes.add(sandbox)?;
//! sandboxes.try_update(&id, |s| s.mark_ready(sandbox_core::timestamp::now()))?;
//! assert!(sandboxes.get(&id[..6])?.state == sandbox_core::SandboxState::Ready);
//! # Ok::<(), Error>(())
//! ```

#![warn(missing_docs)]

pub mod container;
pub mod error;
pub mod filter;
pub mod id;
pub mod kube_name;
pub mod name_registrar;
pub mod prefix_index;
pub mod sandbox;
pub mod store;
pub mod timestamp;

pub use container::{
    Container, ContainerMetadata, ContainerState, ImageTrust, Mount, MountPropagation, ProcessUser,
    Resources,
};
pub use error::{Error, ObjectKind, Result};
pub use filter::{All, ContainerFilter, Filter, SandboxFilter};
pub use name_registrar::NameRegistrar;
pub use prefix_index::PrefixIndex;
pub use sandbox::{
    IdMapping, NamespaceMode, NamespaceOptions, PodMetadata, PortMapping, Protocol, Sandbox,
    SandboxState, UserNamespace,
};
pub use store::{ContainerStore, Record, SandboxStore, Store};
