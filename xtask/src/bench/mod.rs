//! `cargo xtask bench`: performance figures measured against the real
//! components, reported as ratios taken within one run because the machine is
//! shared and noisy. Targets live here, never in timed tests.

pub mod images;
pub mod lifecycle;
pub mod monitor;
pub mod pull;

use anyhow::Result;
use clap::ValueEnum;
use std::path::Path;

/// Which benchmark `cargo xtask bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// The per-container monitor's memory.
    Monitor,
    /// Image pull-and-unpack and listing latency.
    Images,
    /// Pod and container lifecycles against the daemon, and its memory.
    Lifecycle,
    /// A cold and a warm PullImage of large images against the daemon,
    /// with parallel curl downloads of the same blobs as the floor.
    Pull,
    /// Every benchmark, in the order above.
    All,
}

/// Runs the selected benchmarks and prints their reports.
pub fn run(root: &Path, which: Which) -> Result<()> {
    let all = which == Which::All;
    if all || which == Which::Monitor {
        monitor::run(root)?;
    }
    if all || which == Which::Images {
        images::run(root)?;
    }
    if all || which == Which::Lifecycle {
        lifecycle::run(root)?;
    }
    if all || which == Which::Pull {
        pull::run(root)?;
    }
    Ok(())
}
