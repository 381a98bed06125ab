//! OCI bundles, the runtime command-line driver and the per-container monitor.
//!
//! This crate owns everything between a typed container spec and a process
//! running under an OCI runtime (runc for trusted workloads, gVisor's runsc for
//! untrusted ones):
//!
//! - [`spec`]: the typed [`spec::ContainerSpec`] the server fills, and its
//!   translation to an OCI `config.json`, bounded by what the host allows
//!   (capabilities the daemon holds, `oom_score_adj` it may set).
//! - [`bundle`]: the bundle directory, `config.json` written atomically.
//! - [`runtime`]: the [`runtime::OciRuntime`] trait (one verb per file) and
//!   [`runtime::CliRuntime`], which drives runc-compatible command lines.
//! - [`monitor`]: the daemon side of `oci-monitor`, the small per-container
//!   process that runs the runtime's create, holds the container's stdio,
//!   writes its CRI log and records its exit while the daemon comes and goes;
//!   [`monitor::protocol`] documents how they talk.
//!
//! A container starts like this:
//!
//! ```no_run
//! use oci_shim::{bundle::Bundle, monitor::{Monitor, MonitorConfig}, runtime::*, spec::*};
//!
//! # async fn demo() -> Result<(), oci_shim::Error> {
//! let handler = RuntimeHandlerConfig::runc("/run/oci-shim/runc");
//! let runtime = CliRuntime::new(handler.clone());
//! let spec = ContainerSpec::new("/var/lib/c1/rootfs", ["sleep", "60"]);
//! let bundle = Bundle::write("/var/lib/c1", &spec.to_oci(&HostLimits::of_current_process()?)?)?;
//! let monitor = Monitor::spawn(&MonitorConfig::new("c1", bundle.dir(), "/run/c1", "/var/log/c1.log", handler)).await?;
//! runtime.start("c1").await?;
//! let exit = monitor.connect().await?.wait().await?;
//! println!("exit code {}", exit.exit_code);
//! # Ok(()) }
//! ```

pub mod bundle;
mod error;
pub mod monitor;
pub mod runtime;
pub mod spec;

pub use error::{Error, Result};
