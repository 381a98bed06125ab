//! `cargo xtask ci`: the pipeline `.ci/run` runs on a clean clone.
//!
//! Order matters: cheap checks first so a formatting slip fails in seconds,
//! then the tests, which need root and the packages `setup` installs.

use crate::command::exec;
use crate::{fixtures, grpc_python, setup};
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// Runs setup (with the tests' Python gRPC client), `cargo fmt --check`, clippy with warnings denied, rustdoc with
/// warnings denied, and every unit and end-to-end test.
pub fn run(root: &Path) -> Result<()> {
    setup::run()?;
    grpc_python::install(root)?;
    let cargo = || {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(root);
        cmd
    };
    exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
    exec(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    exec(
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    fixtures::prepare(root)?;
    // The end-to-end tests run the workspace's binaries (the daemon, the
    // monitor) from target/debug, which `cargo test` alone does not build.
    exec(cargo().args(["build", "--workspace", "--bins"]))?;
    exec(cargo().args(["test", "--workspace"]))?;
    Ok(())
}
