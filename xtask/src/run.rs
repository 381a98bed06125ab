//! `cargo xtask run`: README's command for running the daemon on its
//! embedded default configuration.
//!
//! The daemon needs its per-container monitor (`oci-monitor`, from the
//! `oci-shim` package) beside it, which `cargo run -p cri-server` alone would
//! not build; this builds every binary in release, prepares the machine, and
//! replaces itself with the daemon.

use crate::command::exec;
use crate::setup;
use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Installs what is missing, builds the binaries and runs the daemon with
/// `args` (e.g. `--log-level debug`).
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    setup::run()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    exec(Command::new(&cargo).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "cri-server",
        "-p",
        "oci-shim",
        "--bins",
    ]))?;
    let daemon = root.join("target/release/cri-server");
    let err = Command::new(&daemon).args(args).exec();
    Err(err).with_context(|| format!("cannot run {}", daemon.display()))
}
