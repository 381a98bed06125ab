//! `cargo xtask ci`: the pipeline `.ci/run` runs on a clean clone.
//!
//! Order matters: cheap checks first so a formatting slip fails in seconds,
//! then the tests, which need root and the packages `setup` installs.

use crate::command::exec;
use crate::{fixtures, grpc_python, setup};
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// Runs setup (with the tests' Python gRPC client), `cargo fmt --check`,
/// clippy with warnings denied, rustdoc with warnings denied, every unit and
/// end-to-end test, the Debian package's install test, and a short chaos
/// run; then checks that no pod's network was left on the machine.
pub fn run(root: &Path) -> Result<()> {
    // A clean clone builds once: incremental caches would only add gigabytes
    // to CI's disk. Set before any thread starts; every cargo below inherits it.
    std::env::set_var("CARGO_INCREMENTAL", "0");
    setup::run()?;
    grpc_python::install(root)?;
    let cargo = || {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(root);
        cmd
    };
    exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
    crate::deps::check(root)?;
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
    let network_before = crate::host_leaks::Snapshot::take()?;
    exec(cargo().args(["test", "--workspace"]))?;
    verb_tests_unprivileged(root)?;
    // The package, from the debug binaries just tested: builds, installs
    // into a scratch root, runs, removes leaving state.
    crate::deb::check(&crate::deb::build(root, crate::deb::Profile::Debug)?)?;
    // A short chaos run on a fresh seed each time (printed, so a failure can
    // be replayed with `cargo xtask chaos --seed S`); the long runs are
    // `cargo xtask chaos`.
    crate::chaos::run(root, CHAOS_CYCLES_IN_CI, None, None)?;
    // Every pod any test or chaos cycle made has had its network released.
    crate::host_leaks::Snapshot::take()?.check_nothing_new_since(&network_before)
}

/// Chaos cycles CI runs: about ten seconds each, with a kill and restart in
/// most of them.
const CHAOS_CYCLES_IN_CI: u32 = 8;

/// Runs the daemon's verb tests (a daemon built from doubles) as `nobody`
/// with no capabilities: they must need neither root nor a runtime.
fn verb_tests_unprivileged(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "test",
            "-p",
            "cri-server",
            "--lib",
            "--no-run",
            "--message-format=json",
        ])
        .output()?;
    let executable = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["profile"]["test"] == true && m["target"]["name"] == "cri_server")
        .find_map(|m| m["executable"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("no cri-server unit test executable was built"))?;
    let tmp = tempfile_dir()?;
    exec(
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .args(["--inh-caps=-all", "--bounding-set=-all"])
            .arg(&executable)
            .arg("verb_tests")
            .env("TMPDIR", &tmp)
            .env("HOME", &tmp)
            .current_dir(&tmp),
    )?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// A scratch directory `nobody` may write in.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("xtask-unprivileged-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))?;
    Ok(dir)
}
