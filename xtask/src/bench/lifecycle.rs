//! Pod and container lifecycle latency and daemon memory against the real
//! daemon (issue 5), with bare runc on the same bundles as the floor.
//!
//! The measuring program is `cri-bench`, a binary of the `tests` crate: it
//! speaks CRI through `cri-api`, whose build needs protoc, which xtask itself
//! must not. This step starts the fixture registry, builds the daemon, the
//! monitor and `cri-bench` in release (side by side in `target/release`, where
//! the daemon finds its monitor and `cri-bench` finds the daemon) and runs it,
//! its report streaming through.

use crate::fixtures::images::{self, Compression, Format, Image};
use crate::fixtures::push;
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
    let mut bench = Command::new(target.join("release/cri-bench"));
    // containerd, the anchor, beside us in the same run when installed
    // (`cargo xtask setup` installs it).
    if command::on_path("containerd") && command::on_path("ctr") {
        let registry = push::Registry::new(fixtures::registry::ADDRESS);
        images::publish(&registry, &pause_image()?)?;
        bench.args(["--peer", "containerd"]);
    } else {
        eprintln!("bench lifecycle: containerd not installed; no side-by-side rows");
    }
    command::exec(&mut bench)
}

/// containerd's sandbox image, `bench/pause:1`: the fixtures' busybox
/// sleeping for good (the fixtures have no pause image; the daemon brings
/// its own pause).
fn pause_image() -> Result<Image> {
    Ok(Image {
        repository: "bench/pause".into(),
        tags: vec!["1".into()],
        user: None,
        layers: vec![images::busybox_layer(Compression::Gzip)?],
        format: Format::Oci,
        index: false,
        labels: Vec::new(),
        cmd: Some(vec!["sleep".into(), "2147483647".into()]),
    })
}
