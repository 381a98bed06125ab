//! `cargo xtask chaos`: the chaos test (`cri-chaos`, a binary of the
//! `tests` crate) against a daemon built with its fault points.
//!
//! The daemon is built with the `fault-points` feature into the usual
//! target directory (only `cri-server` is rebuilt; the points do nothing
//! unless `CRI_SERVER_FAULT` names one), beside its monitor and the driver.

use crate::{command, fixtures};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds and runs `cri-chaos` for `cycles` cycles; fails on any violation.
/// `fault` names a point to arm in every cycle (see `cri-server/src/fault.rs`).
pub fn run(root: &Path, cycles: u32, seed: Option<u64>, fault: Option<&str>) -> Result<()> {
    fixtures::prepare(root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    command::exec(Command::new(&cargo).current_dir(root).args([
        "build",
        "-p",
        "cri-server",
        "--features",
        "fault-points",
        "-p",
        "oci-shim",
        "-p",
        "tests",
        "--bins",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let mut chaos = Command::new(target.join("debug/cri-chaos"));
    chaos.args(["--cycles", &cycles.to_string()]);
    if let Some(seed) = seed {
        chaos.args(["--seed", &seed.to_string()]);
    }
    if let Some(point) = fault {
        chaos.args(["--fault", point]);
    }
    command::exec(&mut chaos)
}
