//! Pod and container lifecycle latency and daemon memory against the real
//! daemon (issue 5), with bare runc on the same bundles as the floor.
//!
//! The measuring program is `cri-bench`, a binary of the `tests` crate: it
//! speaks CRI through `cri-api`, whose build needs protoc, which xtask itself
//! must not. This step starts the fixture registry, builds the daemon, the
//! monitor and `cri-bench` in release (side by side in `target/release`, where
//! the daemon finds its monitor and `cri-bench` finds the daemon) and runs it,
//! its report streaming through.

use crate::{command, fixtures};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds and runs `cri-bench`; fails when it does or a target is missed.
pub fn run(root: &Path) -> Result<()> {
    fixtures::prepare(root)?;
    command::exec(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "cri-server",
        "-p",
        "oci-shim",
        "-p",
        "tests",
        "--bins",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    command::exec(&mut Command::new(target.join("release/cri-bench")))
}
