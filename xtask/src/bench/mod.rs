//! `cargo xtask bench`: performance figures measured against the real
//! components, reported as ratios taken within one run because the machine is
//! shared and noisy. Targets live here, never in timed tests.

pub mod images;
pub mod monitor;

use anyhow::Result;
use std::path::Path;

/// Runs every benchmark and prints its report.
pub fn run(root: &Path) -> Result<()> {
    monitor::run(root)?;
    images::run(root)?;
    Ok(())
}
