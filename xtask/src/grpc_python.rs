//! Python's `grpcio` from PyPI, the third-party CRI client of the end-to-end
//! tests (`tests/tests/real_clients.rs`).
//!
//! Our own tonic client sends `:authority: localhost`, which hid for a whole
//! wave that crictl, kubelet and grpc-core clients were refused on every call.
//! A client we did not write, at its default options, keeps that honest. It
//! lives in a virtual environment under `target/grpc-python` with stubs
//! generated from the same CRI proto the daemon is built from.

use crate::command::exec;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The grpcio (and grpcio-tools) release the tests use.
const GRPCIO_VERSION: &str = "1.85.1";

/// Where the virtual environment and the stubs live, under the workspace.
pub const DIR: &str = "target/grpc-python";

/// Creates the virtual environment, installs grpcio and generates the CRI
/// stubs, unless a previous run did so for the same versions and proto.
pub fn install(root: &Path) -> Result<()> {
    let dir = root.join(DIR);
    let proto = cri_proto(root)?;
    let proto_text = std::fs::read(&proto).with_context(|| format!("read {}", proto.display()))?;
    let stamp_wanted = format!("grpcio {GRPCIO_VERSION}\n{}\n", sha256_hex(&proto_text));
    let stamp = dir.join("stubs/.stamp");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_wanted) {
        eprintln!(
            "setup: grpcio {GRPCIO_VERSION} client present ({})",
            dir.display()
        );
        return Ok(());
    }
    let python = dir.join("venv/bin/python");
    if !python.is_file() {
        exec(
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(dir.join("venv")),
        )?;
    }
    exec(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        &format!("grpcio=={GRPCIO_VERSION}"),
        &format!("grpcio-tools=={GRPCIO_VERSION}"),
    ]))?;
    let stubs = dir.join("stubs");
    std::fs::create_dir_all(&stubs).with_context(|| format!("create {}", stubs.display()))?;
    let include = proto.parent().context("the proto file has a directory")?;
    exec(
        Command::new(&python)
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", include.display()))
            .arg(format!("--python_out={}", stubs.display()))
            .arg(format!("--grpc_python_out={}", stubs.display()))
            .arg(&proto),
    )?;
    std::fs::write(&stamp, stamp_wanted).with_context(|| format!("write {}", stamp.display()))?;
    Ok(())
}

/// The CRI v1 proto the daemon is built from: the upstream file vendored in
/// the `cri-api` crate, so Python speaks exactly the daemon's API.
fn cri_proto(root: &Path) -> Result<PathBuf> {
    let proto = root.join("cri-api/proto/api.proto");
    if !proto.is_file() {
        bail!("{} is missing", proto.display());
    }
    Ok(proto)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
