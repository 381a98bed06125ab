//! The daemon side of `oci-monitor`: starting a container's monitor, and
//! talking to it (again, after a daemon restart) over its socket.
//!
//! The monitor binary lives in `src/bin/oci-monitor`; the wire protocol and
//! state-directory layout are in [`protocol`].

mod client;
mod direct_kill;
mod launcher;
mod log_size;
pub mod protocol;
pub mod retire;
mod runtime_view;
mod spawn;

pub use client::{AttachFrame, ContainerStatus, MonitorClient};
pub use direct_kill::is_namespace_init;
pub use launcher::{launch_alongside, MonitorLauncher, PendingLaunch, ProcessMonitors};
#[cfg(any(test, feature = "mock"))]
pub use launcher::{MockMonitorLauncher, MockPendingLaunch};
pub use log_size::{LogSizeMax, LogSizeMaxTooSmall};
pub use runtime_view::RuntimeView;
pub(crate) use spawn::monitor_beside_current_exe;
pub use spawn::{Monitor, MonitorConfig, MonitorStatus, PendingMonitor};
