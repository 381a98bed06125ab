//! `cargo xtask setup`: the Debian packages the daemon and its tests need,
//! and a default pod network when the host has none.
//!
//! Idempotent: a package already installed is skipped, and `apt-get update`
//! runs only when something is missing, so a prepared machine pays nothing;
//! an existing CNI configuration is never touched.

use crate::command::{exec, probe};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// Where kubelet-era runtimes (and the daemon) read CNI configurations from.
const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// The default network written when [`CNI_CONF_DIR`] holds none.
const CNI_DEFAULT_FILE: &str = "10-cri-server.conflist";

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
    (
        "gcc",
        "builds the setuid program of the nonewprivs fixture image",
    ),
    ("libc6-dev", "the static libc that program links"),
    ("binutils", "strip, for the Debian package's binaries"),
    ("iproute2", "inspecting links and namespaces in tests"),
    ("systemd", "systemd-analyze, to verify the shipped unit"),
    (
        "containerd",
        "the anchor `cargo xtask bench` compares against",
    ),
];

/// `cargo xtask setup`: installs missing packages, then writes the default
/// CNI network if there is none.
pub fn run() -> Result<()> {
    install_packages()?;
    write_default_cni_config(Path::new(CNI_CONF_DIR))
}

/// Installs every package in [`PACKAGES`] that is not installed yet.
fn install_packages() -> Result<()> {
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

/// Writes the default pod network (bridge `cni0` on 10.88.0.0/16 with
/// host-local IPAM, gateway and masquerade, portmap) into `dir` unless it
/// holds a `.conflist`, `.conf` or `.json` file of someone else's: an
/// operator's network always wins. Our own file (`CNI_DEFAULT_FILE`) is
/// brought up to date when an earlier setup wrote a different default.
/// Written to a temp file and renamed so the daemon's watcher never sees
/// half a file.
fn write_default_cni_config(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let target = dir.join(CNI_DEFAULT_FILE);
    let wanted = cni::default_conflist("cri-server", "10.88.0.0/16", "cni0");
    let existing = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p != &target
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
        });
    if let Some(existing) = existing {
        eprintln!("setup: CNI config present ({})", existing.display());
        return Ok(());
    }
    if std::fs::read_to_string(&target).is_ok_and(|text| text == wanted) {
        eprintln!(
            "setup: default CNI network up to date ({})",
            target.display()
        );
        return Ok(());
    }
    // Hidden and ending in .tmp: invisible to the loader until renamed.
    let tmp = dir.join(format!(".{CNI_DEFAULT_FILE}.tmp"));
    std::fs::write(&tmp, wanted).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("rename to {}", target.display()))?;
    eprintln!("setup: wrote default CNI network {}", target.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_default_network_only_into_an_empty_dir() {
        let dir = std::env::temp_dir().join(format!("xtask-cni-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_default_cni_config(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join(CNI_DEFAULT_FILE)).unwrap();
        let list = cni::NetworkConfigList::from_conflist_bytes(text.as_bytes(), "x").unwrap();
        assert_eq!(list.plugins()[0].raw()["bridge"], "cni0");
        assert!(list.plugins()[1].has_capability("portMappings"));

        // An older default of ours is replaced.
        std::fs::write(dir.join(CNI_DEFAULT_FILE), "{\"old\": true}").unwrap();
        write_default_cni_config(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(CNI_DEFAULT_FILE)).unwrap(),
            text
        );

        std::fs::remove_file(dir.join(CNI_DEFAULT_FILE)).unwrap();
        std::fs::write(dir.join("05-mine.conf"), "{}").unwrap();
        write_default_cni_config(&dir).unwrap();
        assert!(!dir.join(CNI_DEFAULT_FILE).exists(), "operator config wins");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
