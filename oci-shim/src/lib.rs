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
//!
//! # Architecture
//!
//! ```text
//!  daemon (tokio)                         one per container (std + libc, 1 thread)
//!  ──────────────                         ─────────────────────────────────────────
//!  Monitor::prepare ──exec──▶ oci-monitor ──fork──▶ oci-monitor (setsid, subreaper)
//!  ContainerSpec ─to_oci─▶ Bundle::write  exits       │ waits for "go" on stdin
//!  PendingMonitor::create ──── "go" ─────────────────▶│ runtime create (stdio = pipes/pty)
//!        ▲                                            │
//!        └──── "ready <pid> <pid>" on the pipe ───────┤ CRI log ◀── container stdout/stderr
//!  MonitorClient ◀════ monitor.sock (protocol) ═══▶ start / state / wait / attach / reopen_log
//!  CliRuntime ──▶ runc|runsc kill/delete/update/pause/resume/list/state
//!  CliRuntime ──exec──▶ oci-monitor reap (subreaper) ──▶ runc|runsc exec
//! ```
//!
//! Invariants the pieces rely on:
//!
//! - The monitor is never the daemon's child once `Monitor::spawn` returns: a
//!   daemon crash or restart cannot take containers down, and
//!   [`monitor::Monitor::reconnect`] finds them again.
//! - The monitor is the container init's reaper (child subreaper), so the exit
//!   status it records is the real one. For gVisor containers joining a pod
//!   sandbox (no host process of their own) it asks `runsc wait` instead.
//! - `exit.json` is complete before the socket disappears and before any
//!   `wait` is answered, and the log is drained before both: whoever learns of
//!   an exit can read the whole log and the record.
//! - A failed create leaves no state directory, runtime state, process or mount.
//! - Every runtime `exec` runs under `oci-monitor reap`, a child subreaper
//!   that reaps what the runtime leaves (the daemon is never a subreaper); an
//!   exec cut short is killed tree first, and its runtime and reaper are then
//!   left to exit by themselves.
//! - The daemon side never blocks a tokio worker: runtime commands run as child
//!   processes and file work goes to blocking threads.
//!
//! # Tests
//!
//! `tests/` holds real tests that need root, runc (`/usr/sbin/runc`), runsc
//! (`/usr/bin/runsc`) and busybox-static: containers are run for real, with
//! state under a temporary directory and cleanup guaranteed by a guard.

#![deny(missing_docs)]

pub mod bundle;
pub mod cgroup_warmup;
mod error;
pub mod latency;
pub mod monitor;
pub mod runtime;
pub mod spec;

pub use error::{Error, Result};
