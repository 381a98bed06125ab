//! The shipped systemd unit (`dist/cri-server.service`) is one systemd
//! accepts, with the settings that keep pods alive across daemon restarts.

use std::path::PathBuf;

fn unit_text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/cri-server.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    // ExecStart must name an existing binary: point it at the one built here.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("cri-server.service");
    let daemon = tests::daemon::binary("cri-server");
    let text = unit_text().replace("/usr/bin/cri-server", daemon.to_str().unwrap());
    std::fs::write(&unit, text).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        // The man page is installed by the package, not in a checkout.
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian's systemd package; cargo xtask setup installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
}

#[test]
fn the_unit_keeps_pods_alive_and_waits_for_readiness() {
    let text = unit_text();
    for line in [
        "Type=notify",
        "KillMode=process",
        "Delegate=yes",
        "LimitNOFILE=1048576",
        "OOMScoreAdjust=-999",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
}
