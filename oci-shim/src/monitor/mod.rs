//! The daemon side of `oci-monitor`: starting a container's monitor, and
//! talking to it (again, after a daemon restart) over its socket.
//!
//! The monitor binary lives in `src/bin/oci-monitor`; the wire protocol and
//! state-directory layout are in [`protocol`].

mod client;
pub mod protocol;
mod spawn;

pub use client::{AttachFrame, ContainerStatus, MonitorClient};
pub(crate) use spawn::monitor_beside_current_exe;
pub use spawn::{Monitor, MonitorConfig, MonitorStatus, PendingMonitor};
