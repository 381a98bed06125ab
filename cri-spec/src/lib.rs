//! From a CRI container request to a typed OCI container spec.
//!
//! A CRI runtime turns kubelet's `CreateContainerRequest` (and the pod's
//! `RunPodSandboxRequest`), the image's configuration and what it knows
//! about the runtime handler into the container's OCI spec. This crate is
//! that translation, independent of any daemon, so another runtime can
//! use it and each rule is tested table by table:
//!
//! - [`container`]: the whole spec of a workload container from its
//!   request, its image and the pod's facts (pure: the caller mounts,
//!   resolves and looks up, and passes the answers in).
//! - [`image_config`]: the image's entrypoint, command, environment,
//!   working directory and user merged with the request, as kubelet and
//!   Docker define; users resolved against the image's `/etc/passwd` and
//!   `/etc/group`, read inside the image ([`rootfs_file`]).
//! - [`security`]: privileged mode, capabilities, no-new-privileges,
//!   masked and read-only paths, seccomp ([`seccomp`], with the runtime's
//!   default profile), AppArmor.
//! - [`resources`], [`devices`], [`sysctls`], [`namespaces`]: cgroup limits,
//!   device nodes, namespaced sysctls, and which namespaces are new, joined
//!   or the host's.
//! - [`annotations`]: which annotations a handler may receive.
//! - [`convert`]: CRI enums and maps to the `sandbox-core` model and back.
//!
//! The typed spec is `oci_shim::spec::ContainerSpec`, which `oci-shim`
//! writes as `config.json`.
//!
//! # Examples
//!
//! ```
//! use cri_spec::resources;
//! use cri_api::v1 as cri;
//!
//! let limits = cri::LinuxContainerResources {
//!     memory_limit_in_bytes: 64 << 20,
//!     cpu_quota: 50_000,
//!     cpu_period: 100_000,
//!     ..Default::default()
//! };
//! let oci = resources::to_oci(&limits)?;
//! assert_eq!(oci.memory().as_ref().and_then(|m| m.limit()), Some(64 << 20));
//! # Ok::<(), cri_spec::resources::ResourcesError>(())
//! ```

#![warn(missing_docs)]

pub mod annotations;
pub mod container;
pub mod convert;
pub mod devices;
pub mod gvisor_paths;
pub mod image_config;
pub mod namespaces;
pub mod resources;
pub mod rootfs_file;
pub mod seccomp;
pub mod security;
pub mod stop_signal;
pub mod sysctls;
pub mod user_namespace;
