//! Control groups as a container runtime needs them: where a pod's or
//! container's cgroup is ([`CgroupDriver`]: cgroupfs directories or systemd
//! slices and scopes), what it uses and allows ([`Hierarchy`] reads v1, v2
//! and hybrid hosts), and CPU usage as a rate ([`CpuRates`]); and removing
//! a cgroup a runtime left behind ([`Hierarchy::remove`]).
//!
//! No I/O happens outside [`Hierarchy`]. Its readers never fail: a file
//! that is missing (a cgroup already gone, a controller not mounted) reads as
//! `None`, because stats are best effort and a container may exit at any
//! moment.
//!
//! # Examples
//!
//! ```no_run
//! use cgroups::{CgroupDriver, Hierarchy};
//!
//! let driver = CgroupDriver::Cgroupfs;
//! let dir = driver.fs_path("/kubepods/pod1", "c1")?;
//! let usage = Hierarchy::detect().usage(&dir);
//! println!("{:?} ns of CPU, {:?} bytes of memory", usage.cpu_ns, usage.memory_bytes);
//! # Ok::<(), cgroups::CgroupParentError>(())
//! ```

pub mod cpu_rate;
mod dir;
pub mod driver;
pub mod files;
pub mod hierarchy;
pub mod pressure;
pub mod readings;
pub mod removal;

pub use cpu_rate::CpuRates;
pub use driver::{CgroupDriver, CgroupParentError, SCOPE_PREFIX};
pub use files::{CgroupFiles, FileCache};
pub use hierarchy::{Hierarchy, OpenHierarchy};
pub use pressure::Pressure;
pub use readings::{CgroupLimits, CgroupUsage, TaskCounts};
pub use removal::RemoveError;
