//! containerd 1.6 (Debian's package), the anchor the benchmarks compare
//! against, started on its own socket, root and state in a temporary
//! directory: with its CRI plugin configured like a test daemon
//! ([`Containerd::start_cri`]: the same CNI network, `registry.k8s.io`
//! mirrored to the fixture registry), or without it for `ctr` alone
//! ([`Containerd::start`]).

use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `cargo xtask fixtures` serves its registry.
const FIXTURE_REGISTRY: &str = "127.0.0.1:5000";

/// A containerd of its own, in a temporary directory; killed when dropped.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd with its CRI plugin off and waits for its socket.
    pub fn start() -> Result<Containerd> {
        Containerd::spawn(|root| {
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\naddress = \"{0}/containerd.sock\"\n",
                root.display()
            )
        })
    }

    /// Starts containerd with its CRI plugin set up as a test daemon is:
    /// the node's CNI network (`/etc/cni/net.d`, plugins in
    /// `/usr/lib/cni`), `registry.k8s.io` mirrored to the fixture
    /// registry, runc through the v2 shim, `sandbox_image` for pods, and
    /// `restrict_oom_score_adj` (this machine lacks CAP_SYS_RESOURCE).
    pub fn start_cri(sandbox_image: &str) -> Result<Containerd> {
        Containerd::spawn(|root| {
            let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
                 [grpc]\naddress = \"{0}/containerd.sock\"\n\
                 [{cri}]\nsandbox_image = \"{sandbox_image}\"\n\
                 restrict_oom_score_adj = true\nstream_server_port = \"0\"\n\
                 [{cri}.cni]\nbin_dir = \"/usr/lib/cni\"\nconf_dir = \"/etc/cni/net.d\"\n\
                 [{cri}.containerd]\ndefault_runtime_name = \"runc\"\n\
                 [{cri}.containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
                 [{cri}.registry.mirrors.\"registry.k8s.io\"]\nendpoint = [\"http://{1}\"]\n",
                root.display(),
                FIXTURE_REGISTRY,
            )
        })
    }

    /// The CRI socket (with [`Containerd::start_cri`]).
    pub fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn spawn(config: impl FnOnce(&Path) -> String) -> Result<Containerd> {
        let dir = tempfile::Builder::new()
            .prefix("bench-containerd")
            .tempdir()?;
        let root = dir.path();
        std::fs::write(root.join("config.toml"), config(root))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(root.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("containerd.log"))?)
            .spawn()
            .context("starting containerd")?;
        let containerd = Containerd { child, dir };
        containerd.wait_ready()?;
        Ok(containerd)
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ctr(&["version"]).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!(
            "containerd did not answer within 20 s (log in {:?})",
            self.dir.path()
        )
    }

    fn ctr(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(args)
            .output()
            .context("running ctr")?;
        ensure!(
            out.status.success(),
            "ctr {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// `ctr images pull --plain-http IMAGE`: its wall time. The image is
    /// named as the registry serves it (containerd has no mirror here).
    pub fn pull(&self, image: &str) -> Result<Duration> {
        let start = Instant::now();
        self.ctr(&["images", "pull", "--plain-http", image])?;
        Ok(start.elapsed())
    }

    /// The CPU time containerd has used so far, ms.
    pub fn cpu_ms(&self) -> u64 {
        cpu_ms(self.child.id())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Whatever its pods left mounted (none once they are removed), so
        // the directory can always go; deepest first.
        let mut mounts = crate::leaks::mounts(self.dir.path());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        remove_dir(self.dir.path());
    }
}

/// A process's CPU time so far (utime + stime), ms.
fn cpu_ms(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15, counted from 1 with the pid;
    // after the command name, they are the 12th and 13th. USER_HZ is 100.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field(11) + field(12)) * 10
}

fn remove_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}
