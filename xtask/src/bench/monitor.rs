//! Memory of the per-container monitor (owned by the oci-shim work).
//!
//! Builds `oci-monitor` in release, starts [`CONTAINERS`] runc containers
//! (`sleep`) through it, and sums PSS and RSS from each monitor's
//! `/proc/PID/smaps_rollup`. The budget is [`BUDGET_KIB`] PSS per monitor;
//! for scale, containerd-shim-runc-v2 measured [`CONTAINERD_SHIM_PSS_KIB`]
//! per pod on the same machine.

use crate::command;
use anyhow::{bail, Context, Result};
use oci_shim::bundle::Bundle;
use oci_shim::monitor::{Monitor, MonitorConfig};
use oci_shim::runtime::{CliRuntime, OciRuntime, RuntimeHandlerConfig};
use oci_shim::spec::{ContainerSpec, HostLimits};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Containers running while memory is measured.
pub const CONTAINERS: usize = 20;
/// PSS allowed per monitor (0.5 MiB).
pub const BUDGET_KIB: u64 = 512;
/// containerd-shim-runc-v2, measured on this machine (4.7 MiB).
pub const CONTAINERD_SHIM_PSS_KIB: u64 = 4813;

/// Measures monitor PSS with containers running, failing when over budget.
pub fn run(root: &Path) -> Result<()> {
    command::exec(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "oci-shim",
        "--bin",
        "oci-monitor",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("release/oci-monitor");
    let dir = std::env::temp_dir().join(format!("oci-monitor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let handler = RuntimeHandlerConfig::runc(dir.join("runc-root"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut ids = Vec::new();
    let result = rt.block_on(measure(&dir, &binary, &handler, &mut ids));
    rt.block_on(async {
        let runtime = CliRuntime::new(handler.clone());
        for id in &ids {
            let _ = runtime.delete(id, true).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        for c in controllers.flatten() {
            let _ = std::fs::remove_dir(c.path().join("oci-monitor-bench"));
        }
    }
    let (pss, rss) = result?;
    let n = CONTAINERS as u64;
    let per_pss = pss / n;
    println!("monitor memory with {CONTAINERS} containers running:");
    println!("  PSS per monitor: {per_pss} KiB (total {pss} KiB)");
    println!("  RSS per monitor: {} KiB (total {rss} KiB)", rss / n);
    println!(
        "  budget {BUDGET_KIB} KiB PSS: {:.2} of budget",
        per_pss as f64 / BUDGET_KIB as f64
    );
    println!(
        "  vs containerd-shim-runc-v2 ({CONTAINERD_SHIM_PSS_KIB} KiB PSS): {:.3}",
        per_pss as f64 / CONTAINERD_SHIM_PSS_KIB as f64
    );
    if per_pss > BUDGET_KIB {
        bail!("oci-monitor uses {per_pss} KiB PSS per container, over the {BUDGET_KIB} KiB budget");
    }
    Ok(())
}

async fn measure(
    dir: &Path,
    binary: &Path,
    handler: &RuntimeHandlerConfig,
    ids: &mut Vec<String>,
) -> Result<(u64, u64)> {
    let rootfs = dir.join("rootfs");
    make_rootfs(&rootfs)?;
    let host = HostLimits::of_current_process()?;
    let mut monitors = Vec::new();
    for i in 0..CONTAINERS {
        let id = format!("bench-{}-{i}", std::process::id());
        ids.push(id.clone());
        let mut spec = ContainerSpec::new(&rootfs, ["sleep", "1000"]);
        spec.cgroups_path = Some(format!("/oci-monitor-bench/{id}"));
        let bundle = Bundle::write(dir.join("bundles").join(&id), &spec.to_oci(&host)?)?;
        let mut cfg = MonitorConfig::new(
            &id,
            bundle.dir(),
            dir.join("state").join(&id),
            dir.join(format!("{id}.log")),
            handler.clone(),
        );
        cfg.monitor_binary = binary.to_owned();
        let m = Monitor::spawn(&cfg).await?;
        m.start().await?;
        monitors.push(m);
    }
    // Let every monitor settle into its idle poll loop.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (mut pss, mut rss) = (0, 0);
    for m in &monitors {
        let path = format!("/proc/{}/smaps_rollup", m.monitor_pid());
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        pss += field_kib(&text, "Pss:").with_context(|| format!("no Pss in {path}"))?;
        rss += field_kib(&text, "Rss:").with_context(|| format!("no Rss in {path}"))?;
    }
    Ok((pss, rss))
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn make_rootfs(dir: &Path) -> Result<()> {
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::copy("/usr/bin/busybox", dir.join("bin/busybox")).context("copy busybox")?;
    for name in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_smaps_rollup_fields() {
        let text = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:                 980 kB\nPss:                 301 kB\n";
        assert_eq!(super::field_kib(text, "Pss:"), Some(301));
        assert_eq!(super::field_kib(text, "Rss:"), Some(980));
        assert_eq!(super::field_kib(text, "Swap:"), None);
    }
}
