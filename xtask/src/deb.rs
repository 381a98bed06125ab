//! `cargo xtask deb`: a Debian package of the daemon, and its install test.
//!
//! The package holds `cri-server` and `oci-monitor` (which must sit side by
//! side), the systemd unit, the default configuration as a conffile with an
//! empty drop-in directory, the man page and shell completions (both made
//! by the daemon's own `man` and `completions` subcommands, so they follow
//! its clap definitions). Its maintainer scripts create the state
//! directories and never remove state: `dpkg -r` and upgrades leave
//! `/var/lib/cri-server` (images, pod records) alone.
//!
//! [`check`] installs the package into a scratch root with `dpkg --root`
//! (maintainer scripts run outside a chroot and honour `DPKG_ROOT`), runs
//! the installed daemon's `--version`, removes the package and checks what
//! stayed. CI builds it from the debug binaries the tests already built.

use crate::command::{exec, probe};
use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which build the package is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `--release`: what `cargo xtask deb` ships.
    Release,
    /// The debug binaries CI has already built (no second build).
    Debug,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

const PACKAGE: &str = "cri-server";

/// The package's control file; `{version}` is filled in.
const CONTROL: &str = "\
Package: cri-server
Version: {version}
Architecture: amd64
Maintainer: cri-server developers <cri-server@localhost>
Section: admin
Priority: optional
Depends: runc (>= 1.1), iptables
Recommends: runsc, containernetworking-plugins
Description: Kubernetes CRI runtime that sandboxes untrusted pods
 A CRI v1 server for kubelet and crictl. Every pod gets a trust decision:
 trusted pods run on runc, untrusted ones on a sandboxing runtime such as
 gVisor's runsc; signed images can decide what runs outside the sandbox.
";

const POSTINST: &str = r#"#!/bin/sh
# Directories the daemon needs; state is never removed by this package.
set -e
root="${DPKG_ROOT:-}"
install -d -m 0755 "$root/etc/cri-server/config.d"
install -d -m 0700 "$root/var/lib/cri-server"
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # Enabled on first install only; an upgrade keeps the admin's choice.
    if [ "$1" = configure ] && [ -z "$2" ]; then
        systemctl enable cri-server.service || true
    fi
fi
exit 0
"#;

const PRERM: &str = r#"#!/bin/sh
# Stops the daemon on removal; KillMode=process leaves pods running.
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop cri-server.service || true
fi
exit 0
"#;

const POSTRM: &str = r#"#!/bin/sh
# Images and pod records in /var/lib/cri-server are the node's data: neither
# remove nor purge deletes them (remove them by hand once pods are gone).
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
"#;

/// Builds the package from `profile`'s binaries (building them for a
/// release) and returns its path under `target/deb/`.
pub fn build(root: &Path, profile: Profile) -> Result<PathBuf> {
    if profile == Profile::Release {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        exec(Command::new(cargo).current_dir(root).args([
            "build",
            "--release",
            "-p",
            "cri-server",
            "-p",
            "oci-shim",
            "--bins",
        ]))?;
    }
    let binaries = target_dir(root).join(profile.dir());
    let version = version(&binaries.join("cri-server"))?;
    let out = target_dir(root).join("deb");
    let stage = out.join(format!("{PACKAGE}_{version}"));
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    stage_files(root, &binaries, &stage)?;
    control_files(&stage, &version)?;
    let deb = out.join(format!("{PACKAGE}_{version}_amd64.deb"));
    exec(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&stage)
            .arg(&deb),
    )?;
    // The staging tree is a second copy of everything in the .deb.
    fs::remove_dir_all(&stage)?;
    eprintln!("deb: {}", deb.display());
    Ok(deb)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The package version from the binary's `--version` (`cri-server 0.1.0
/// (rev)`): Debian versions take the crate version, `+g<rev>` for a build.
fn version(daemon: &Path) -> Result<String> {
    let out = probe(Command::new(daemon).arg("--version"))
        .with_context(|| format!("{} --version", daemon.display()))?;
    let mut words = out.split_whitespace().skip(1);
    let number = words.next().context("no version number")?;
    let revision = words
        .next()
        .map(|r| r.trim_matches(|c| c == '(' || c == ')'))
        .filter(|r| r.chars().all(|c| c.is_ascii_alphanumeric()) && *r != "unknown");
    Ok(match revision {
        Some(revision) => format!("{number}+g{revision}"),
        None => number.to_owned(),
    })
}

/// Lays out the installed files under `stage`.
fn stage_files(root: &Path, binaries: &Path, stage: &Path) -> Result<()> {
    let bin = stage.join("usr/bin");
    fs::create_dir_all(&bin)?;
    for name in ["cri-server", "oci-monitor"] {
        copy(&binaries.join(name), &bin.join(name), 0o755)?;
        // As dh_strip does: a package ships no debug sections.
        exec(
            Command::new("strip")
                .arg("--strip-debug")
                .arg(bin.join(name)),
        )?;
    }
    let daemon = bin.join("cri-server");
    let unit = stage.join("lib/systemd/system");
    fs::create_dir_all(&unit)?;
    copy(
        &root.join("dist/cri-server.service"),
        &unit.join("cri-server.service"),
        0o644,
    )?;
    let etc = stage.join("etc/cri-server");
    fs::create_dir_all(etc.join("config.d"))?;
    write(
        &etc.join("config.toml"),
        &output(&daemon, &["--config", "/dev/null", "config"])?,
        0o644,
    )?;
    let man = stage.join("usr/share/man/man8");
    fs::create_dir_all(&man)?;
    write(
        &man.join("cri-server.8"),
        &output(&daemon, &["man"])?,
        0o644,
    )?;
    exec(
        Command::new("gzip")
            .args(["-9n"])
            .arg(man.join("cri-server.8")),
    )?;
    for (shell, dir, name) in [
        (
            "bash",
            "usr/share/bash-completion/completions",
            "cri-server",
        ),
        ("zsh", "usr/share/zsh/vendor-completions", "_cri-server"),
        (
            "fish",
            "usr/share/fish/vendor_completions.d",
            "cri-server.fish",
        ),
    ] {
        fs::create_dir_all(stage.join(dir))?;
        let script = output(&daemon, &["completions", shell])?;
        write(&stage.join(dir).join(name), &script, 0o644)?;
    }
    Ok(())
}

/// `DEBIAN/`: control, conffiles and the maintainer scripts.
fn control_files(stage: &Path, version: &str) -> Result<()> {
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    write(
        &debian.join("control"),
        &CONTROL.replace("{version}", version),
        0o644,
    )?;
    write(
        &debian.join("conffiles"),
        "/etc/cri-server/config.toml\n",
        0o644,
    )?;
    for (name, text) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
        write(&debian.join(name), text, 0o755)?;
    }
    Ok(())
}

/// Installs `deb` into a scratch root, runs the installed daemon, removes
/// the package and checks that state stayed.
pub fn check(deb: &Path) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let root = scratch.path();
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::write(root.join("var/lib/dpkg/status"), "")?;
    let dpkg = |args: &[&str]| {
        let mut cmd = Command::new("dpkg");
        cmd.arg(format!("--root={}", root.display()))
            .args([
                "--force-script-chrootless",
                "--force-depends",
                "--force-not-root",
            ])
            .args(args)
            // dpkg looks for ldconfig and start-stop-daemon on PATH.
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        cmd
    };
    exec(dpkg(&["-i"]).arg(deb))?;
    let daemon = root.join("usr/bin/cri-server");
    let version = output(&daemon, &["--version"])?;
    if !version.starts_with("cri-server ") {
        bail!("installed cri-server --version said {version:?}");
    }
    for path in [
        "usr/bin/oci-monitor",
        "lib/systemd/system/cri-server.service",
        "etc/cri-server/config.toml",
        "usr/share/man/man8/cri-server.8.gz",
    ] {
        if !root.join(path).is_file() {
            bail!("the package did not install /{path}");
        }
    }
    let state = root.join("var/lib/cri-server");
    if fs::metadata(&state)?.permissions().mode() & 0o777 != 0o700 {
        bail!("/var/lib/cri-server is not 0700 after install");
    }
    fs::write(state.join("kept"), "an image record stands in here")?;
    exec(&mut dpkg(&["-r", PACKAGE]))?;
    if root.join("usr/bin/cri-server").exists() {
        bail!("dpkg -r left /usr/bin/cri-server");
    }
    if !state.join("kept").is_file() {
        bail!("dpkg -r removed the daemon's state in /var/lib/cri-server");
    }
    eprintln!(
        "deb: {} installs, runs ({}), and removes leaving state",
        deb.display(),
        version.trim()
    );
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// What `program args` prints, failing when it fails.
fn output(program: &Path, args: &[&str]) -> Result<String> {
    probe(Command::new(program).args(args))
        .with_context(|| format!("`{} {}` failed", program.display(), args.join(" ")))
}
