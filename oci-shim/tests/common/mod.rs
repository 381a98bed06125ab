//! Shared fixtures for the root-only integration tests: a busybox rootfs,
//! unique ids, and a guard that removes containers and monitors even when a
//! test fails.
#![allow(dead_code)]

use oci_shim::monitor::{Monitor, MonitorConfig};
use oci_shim::runtime::{CliRuntime, RuntimeHandlerConfig};
use oci_shim::spec::{ContainerSpec, HostLimits};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Builds a rootfs at `dir` from Debian's busybox-static.
pub fn make_rootfs(dir: &Path) {
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", dir.join("bin/busybox")).unwrap();
    let list = std::process::Command::new("/usr/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for name in String::from_utf8_lossy(&list.stdout).lines() {
        if name != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(name));
        }
    }
}

/// One test's sandbox of directories and containers; cleans up on drop.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub handler: RuntimeHandlerConfig,
    pub runtime: CliRuntime,
    ids: Mutex<Vec<String>>,
    pub monitors: Mutex<Vec<i32>>,
}

impl Harness {
    pub fn new(handler: fn(PathBuf) -> RuntimeHandlerConfig) -> Harness {
        let dir = tempfile::Builder::new()
            .prefix("ocishim")
            .tempdir()
            .unwrap();
        make_rootfs(&dir.path().join("rootfs"));
        let handler = handler(dir.path().join("root"));
        Harness {
            runtime: CliRuntime::new(handler.clone())
                .with_monitor_binary(env!("CARGO_BIN_EXE_oci-monitor")),
            handler,
            dir,
            ids: Mutex::new(Vec::new()),
            monitors: Mutex::new(Vec::new()),
        }
    }

    pub fn runc() -> Harness {
        Harness::new(RuntimeHandlerConfig::runc)
    }

    pub fn runsc() -> Harness {
        Harness::new(RuntimeHandlerConfig::runsc)
    }

    /// A fresh container id, registered for cleanup.
    pub fn id(&self, name: &str) -> String {
        let id = format!(
            "{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// A spec running `args` in the shared rootfs, in its own cgroup.
    pub fn spec(&self, id: &str, args: &[&str]) -> ContainerSpec {
        let mut spec = ContainerSpec::new(self.dir.path().join("rootfs"), args.iter().copied());
        spec.cgroups_path = Some(format!("/{}/{id}", self.cgroup_parent()));
        spec
    }

    /// A parent cgroup of this harness's own, so removing it races with no
    /// other test.
    pub fn cgroup_parent(&self) -> String {
        let tmp = self.dir.path().file_name().unwrap_or_default();
        format!("oci-shim-test-{}", tmp.to_string_lossy())
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join("state").join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.log"))
    }

    pub fn monitor_config(&self, id: &str, spec: &ContainerSpec) -> MonitorConfig {
        let oci = spec
            .to_oci(&HostLimits::of_current_process().unwrap())
            .unwrap();
        let bundle =
            oci_shim::bundle::Bundle::write(self.dir.path().join("bundles").join(id), &oci)
                .unwrap();
        let mut cfg = MonitorConfig::new(
            id,
            bundle.dir(),
            self.state_dir(id),
            self.log_path(id),
            self.handler.clone(),
        );
        cfg.monitor_binary = env!("CARGO_BIN_EXE_oci-monitor").into();
        cfg
    }

    /// Writes the bundle and starts the monitor (container created, not started).
    pub async fn spawn(&self, id: &str, spec: &ContainerSpec) -> oci_shim::Result<Monitor> {
        self.spawn_with(self.monitor_config(id, spec)).await
    }

    pub async fn spawn_with(&self, cfg: MonitorConfig) -> oci_shim::Result<Monitor> {
        let m = Monitor::spawn(&cfg).await?;
        self.monitors.lock().unwrap().push(m.monitor_pid());
        Ok(m)
    }

    /// Log entries as `(stream, tag, text)`, checking every timestamp.
    pub fn log_entries(&self, id: &str) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap();
        text.lines()
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let ts = parts.next().unwrap();
                assert!(
                    ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                    "bad timestamp in {line:?}"
                );
                (
                    parts.next().unwrap().to_owned(),
                    parts.next().unwrap().to_owned(),
                    parts.next().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for id in self.ids.lock().unwrap().iter() {
            let _ = std::process::Command::new(&self.handler.path)
                .arg("--root")
                .arg(&self.handler.root)
                .args(&self.handler.args)
                .args(["delete", "--force", id])
                .output();
        }
        for &pid in self.monitors.lock().unwrap().iter() {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // This harness's parent cgroups (empty once its containers are deleted).
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let _ = std::fs::remove_dir(c.path().join(self.cgroup_parent()));
            }
        }
    }
}

/// Whether a process with this pid exists (zombies count as gone).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false)
}

/// Pids of processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && alive(pid) {
                found.push(pid);
            }
        }
    }
    found
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
