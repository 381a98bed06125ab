//! Driving OCI runtimes: the [`OciRuntime`] trait and [`CliRuntime`], its
//! implementation for runc-compatible command lines (runc, gVisor's runsc).
//!
//! One verb per file; each file adds its method to [`CliRuntime`] and the
//! trait implementation (in `cli.rs`) only forwards, so a newcomer looking for
//! "how do we kill" opens `kill.rs`.

pub(crate) mod cli;
mod create;
pub mod created_runc;
mod delete;
mod exec;
mod exec_stream;
mod exec_tree;
mod features;
mod handler;
mod kill;
mod list;
mod pause;
mod process_tree;
mod resume;
pub mod retired_runc;
mod runc_state;
mod start;
mod state;
mod stopped_runc;
mod update;

pub use cli::{read_runtime_log, CliRuntime};
pub use exec::{ExecSyncResult, EXEC_OUTPUT_CAP};
pub use exec_stream::{ExecReader, ExecSession, ExecStreamOptions, ExecWriter};
pub use features::{FeaturesError, LinuxFeatures, RuntimeFeatures};
pub use handler::{RuntimeHandlerConfig, RuntimeKind, DEFAULT_RUNTIME_TIMEOUT};
pub use retired_runc::{Background, BlockingJob, RetireError, Retirement};
pub use state::{ContainerState, ContainerStatus};

use crate::error::Result;
use async_trait::async_trait;
use oci_spec::runtime::LinuxResources;
use std::path::Path;
use std::time::Duration;

/// The verbs of an OCI runtime, as the daemon uses them.
///
/// `create` here runs the runtime directly with no stdio kept; containers whose
/// output matters are created through [`crate::monitor::Monitor::spawn`], then
/// started with [`OciRuntime::start`].
///
/// With the `mock` feature, `MockOciRuntime` (mockall) stands in for a real
/// runtime in other crates' tests.
///
/// # Examples
///
/// ```
/// use oci_shim::runtime::{CliRuntime, OciRuntime, RuntimeHandlerConfig};
///
/// async fn stop(rt: &dyn OciRuntime, id: &str) -> Result<(), oci_shim::Error> {
///     rt.kill(id, 15, false).await?;
///     rt.delete(id, true).await
/// }
///
/// let runc = CliRuntime::new(RuntimeHandlerConfig::runc("/run/oci-shim/runc"));
/// assert_eq!(runc.name(), "runc");
/// ```
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OciRuntime: Send + Sync {
    /// The handler name (e.g. `runc`, `runsc`), used in errors and logs.
    fn name(&self) -> &str;
    /// Creates container `id` from `bundle` without keeping its stdio.
    async fn create(&self, id: &str, bundle: &Path) -> Result<()>;
    /// Starts the user process of a created container.
    async fn start(&self, id: &str) -> Result<()>;
    /// The runtime's view of container `id`.
    async fn state(&self, id: &str) -> Result<ContainerState>;
    /// Sends `signal` to the container's init (or every process with `all`).
    async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    /// Deletes the container; `force` kills it first. Deleting a container the
    /// runtime does not know is not an error.
    async fn delete(&self, id: &str, force: bool) -> Result<()>;
    /// Runs `args` in the running container, capturing output, killing it and
    /// all its descendants after `timeout`.
    async fn exec_sync(
        &self,
        id: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult>;
    /// Starts `args` in the running container with its stdio handed to the
    /// caller (Exec over the streaming server): pipes, or a terminal with
    /// `options.tty`. The session's process tree is killed and reaped when
    /// it is dropped before the command ends.
    async fn exec_stream(
        &self,
        id: &str,
        args: &[String],
        options: ExecStreamOptions,
    ) -> Result<ExecSession>;
    /// Updates the container's cgroup resources.
    async fn update(&self, id: &str, resources: &LinuxResources) -> Result<()>;
    /// Freezes every process of the container.
    async fn pause(&self, id: &str) -> Result<()>;
    /// Thaws a paused container.
    async fn resume(&self, id: &str) -> Result<()>;
    /// Every container under this handler's state root.
    async fn list(&self) -> Result<Vec<ContainerState>>;
}
