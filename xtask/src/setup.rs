//! `cargo xtask setup`: the Debian packages the daemon and its tests need.
//!
//! Idempotent: a package already installed is skipped, and `apt-get update`
//! runs only when something is missing, so a prepared machine pays nothing.

use crate::command::{exec, probe};
use anyhow::Result;
use std::process::Command;

/// Debian packages the project needs, with why.
const PACKAGES: &[(&str, &str)] = &[
    ("runc", "the trusted OCI runtime"),
    ("runsc", "gVisor, the untrusted (sandboxing) OCI runtime"),
    ("containernetworking-plugins", "CNI plugins in /usr/lib/cni"),
    ("protobuf-compiler", "protoc for the CRI gRPC bindings"),
    (
        "docker-registry",
        "the local registry that serves test images",
    ),
    (
        "busybox-static",
        "the static binary test images and rootfs are built from",
    ),
    ("iptables", "the portmap CNI plugin"),
    ("iproute2", "inspecting links and namespaces in tests"),
];

/// Installs every package in [`PACKAGES`] that is not installed yet; this is
/// `cargo xtask setup`.
pub fn run() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !is_installed(name))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: all {} packages present", PACKAGES.len());
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

fn is_installed(package: &str) -> bool {
    probe(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", package]))
        .is_some_and(|status| status.trim() == "installed")
}
