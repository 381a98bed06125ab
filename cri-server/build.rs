//! Builds `pause/pause.rs` into a static executable without a C library,
//! which the daemon embeds (`include_bytes!`) and installs as the infra
//! containers' process.
//!
//! It is compiled here with `rustc` directly because it needs
//! `panic=abort` and its own link arguments, neither of which Cargo can set
//! for one binary of a package.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    git_revision();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "cri_pause",
        ])
        .args([
            "-C",
            "panic=abort",
            "-C",
            "opt-level=s",
            "-C",
            "debuginfo=0",
        ])
        .args(["-C", "relocation-model=static", "-C", "strip=symbols"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-static"])
        .arg("-o")
        .arg(out.join("cri-pause"))
        .arg("pause/pause.rs")
        .status()
        .expect("run rustc for pause/pause.rs");
    assert!(status.success(), "building pause/pause.rs failed");
    println!("cargo:rerun-if-changed=pause/pause.rs");
    println!("cargo:rerun-if-changed=build.rs");
}

/// Tells the binary which git revision it is built from, for `--version`:
/// `unknown` outside a git checkout (a source tarball).
fn git_revision() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CRI_SERVER_GIT_REVISION={revision}");
    // A new commit changes the ref HEAD points to; a checkout changes HEAD.
    println!("cargo:rerun-if-changed=../.git/HEAD");
    let head = std::fs::read_to_string("../.git/HEAD").unwrap_or_default();
    if let Some(branch) = head.trim().strip_prefix("ref: ") {
        println!("cargo:rerun-if-changed=../.git/{branch}");
    }
}
