//! The anchor: containerd pulling the same image from the same registry,
//! with `ctr images pull` (fetch and unpack into its overlayfs snapshotter),
//! each round on a fresh containerd with an empty root, as our daemon is.

use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A containerd of its own (CRI plugin off), in a temporary directory.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd and waits for its socket.
    pub fn start() -> Result<Containerd> {
        let dir = tempfile::Builder::new()
            .prefix("pull-bench-containerd")
            .tempdir()?;
        let root = dir.path();
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\naddress = \"{0}/containerd.sock\"\n",
            root.display()
        );
        std::fs::write(root.join("config.toml"), config)?;
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

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("containerd.sock")
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
        crate::Cpu::of(self.child.id())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The snapshotter leaves no mounts after a pull; unmount anyway so
        // the directory can always go.
        let _ = nix::mount::umount2(
            &self.dir.path().join("root"),
            nix::mount::MntFlags::MNT_DETACH,
        );
        remove_dir(self.dir.path());
    }
}

fn remove_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}
