//! A real `cri-server` process on a private socket and state directories.

use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

/// A running daemon. On drop its pods are removed and their networks
/// released, then it is killed (SIGKILL) and its directories removed.
pub struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    /// The fault point the next start arms (`CRI_SERVER_FAULT`).
    fault: Option<String>,
}

/// Where the workspace's binaries are: beside the running executable (a
/// binary of this crate, such as `cri-bench`, lives in `target/<profile>/`)
/// or one level up (a test executable lives in `target/<profile>/deps/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable is in a directory");
    let candidates = [Some(dir), dir.parent()];
    if let Some(path) = candidates
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
    {
        return path;
    }
    panic!(
        "{name} is missing beside {} and in its parent: run `cargo build --workspace --bins` (cargo xtask ci does)",
        exe.display()
    );
}

/// The log filter of every test daemon: our crates' debug lines (each
/// verb's phases and timings), without `h2`'s line per HTTP/2 frame sent
/// or received. Those were half of a benchmark's log, each line a
/// `write` to the one log file from whichever worker logged it: in five
/// interleaved pairs of runs
/// at 110 pods, StopPodSandbox p99 was 13–20 ms without them against
/// 15–37 ms with them (p99 / p50 1.97–2.30 against 2.00–3.13).
pub const TEST_LOG_LEVEL: &str = "debug,h2=info";

/// The registry entry every test daemon gets: `registry.k8s.io` is the local
/// registry `cargo xtask fixtures` fills, over plain HTTP, and only it (tests
/// never reach past loopback).
pub const TEST_REGISTRIES: &str = "[[image.registries]]\n\
     prefix = \"registry.k8s.io\"\n\
     mirrors = [\"127.0.0.1:5000\"]\n\
     insecure = true\n\
     mirrors_only = true\n";

/// A test daemon's configuration: socket, root and state under `dir`, the
/// keys of `extra`, and [`TEST_REGISTRIES`] unless `extra` names registries
/// of its own.
///
/// # Panics
/// When `extra` is not valid TOML: a test's own mistake.
pub fn test_config(dir: &Path, extra: &str) -> String {
    let mut table: toml::Table = extra.parse().expect("the test's extra config is TOML");
    let image = table
        .entry("image")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(image) = image.as_table_mut() {
        if !image.contains_key("registries") {
            let defaults: toml::Table = TEST_REGISTRIES.parse().expect("TEST_REGISTRIES is TOML");
            image.extend(defaults["image"].as_table().cloned().unwrap_or_default());
        }
    }
    for (key, sub) in [("socket", "cri.sock"), ("root", "root"), ("state", "state")] {
        let path = dir.join(sub).display().to_string();
        table.insert(key.into(), toml::Value::String(path));
    }
    toml::to_string(&table).expect("a TOML table serializes")
}

impl Daemon {
    /// Writes a config whose socket, root and state live in a fresh temporary
    /// directory, with the keys of `extra` (TOML) added, and starts the daemon
    /// on it. Unless `extra` sets `image.registries`, the config sends
    /// `registry.k8s.io` to the local test registry and nowhere else
    /// ([`test_config`]).
    pub async fn start(extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        // Like /var/lib: containers in a user namespace run as an
        // unprivileged host uid, which must pass through to their root
        // filesystems.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod tempdir");
        let config_path = dir.path().join("cri-server.toml");
        std::fs::write(&config_path, test_config(dir.path(), extra)).expect("write config");
        let mut daemon = Daemon {
            child: None,
            dir,
            config_path,
            fault: None,
        };
        daemon.spawn().await;
        daemon
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).expect("log");
        let mut command = Command::new(binary("cri-server"));
        command
            .arg("--config")
            .arg(&self.config_path)
            .arg("--log-level")
            .arg(TEST_LOG_LEVEL)
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(point) = &self.fault {
            command.env("CRI_SERVER_FAULT", point);
        }
        let child = command.spawn().expect("spawn cri-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // Connectable, not merely present: a killed daemon leaves its socket.
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("cri-server exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon socket never appeared:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The socket is bound before the daemon restores its state and starts
        // its other listeners; it is ready once it answers.
        let mut rt = self.runtime().await;
        loop {
            let answered = tokio::time::timeout(
                Duration::from_secs(1),
                rt.version(cri_api::v1::VersionRequest::default()),
            )
            .await;
            if matches!(answered, Ok(Ok(_))) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "daemon never answered Version:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would, and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Arms `point` (a `cri_server::fault::POINTS` name; the daemon must be
    /// built with the `fault-points` feature) for the next (re)start: the
    /// daemon kills itself with SIGKILL when it gets there. `None` disarms.
    pub fn arm_fault(&mut self, point: Option<&str>) {
        self.fault = point.map(str::to_string);
    }

    /// Whether the daemon process has exited (it was killed, or died).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// Reaps a daemon that died on its own, so that it can be restarted.
    pub fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same configuration and directories.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon before restarting it");
        self.spawn().await;
    }

    /// The temporary directory holding the daemon's socket, root and state.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("cri.sock")
    }

    /// The config file the daemon was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Waits (at most 10 s) for the daemon's log line number `seen` (from
    /// 0) that contains `expect`, and returns it.
    ///
    /// # Panics
    /// When no such line comes in time: the test fails, showing the log.
    pub async fn wait_for_log(&self, expect: &str, seen: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().filter(|l| l.contains(expect)).nth(seen) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no {expect:?} in the log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends SIGTERM and waits (at most 30 s) for the daemon to exit.
    ///
    /// Waits asynchronously: clients on this runtime must stay able to
    /// answer the daemon's GOAWAY, or graceful shutdown would wait on them.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for daemon") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon ignored SIGTERM for 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A channel to the daemon's socket.
    pub async fn channel(&self) -> Channel {
        channel(&self.socket()).await
    }

    /// A RuntimeService client.
    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    /// An ImageService client.
    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }
}

/// A channel to the CRI socket at `socket`, for a daemon this harness did not
/// start.
pub async fn channel(socket: &Path) -> Channel {
    try_channel(socket).await.expect("connect to daemon")
}

/// A channel to the CRI socket at `socket`, or why there is none (the
/// daemon is down: the chaos test kills it on purpose).
pub async fn try_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .expect("static uri")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

/// Removes every pod the daemon on `socket` knows, so that a test that fails
/// half-way leaves no containers, monitors, network namespaces or CNI rules
/// behind on the machine.
fn remove_all_pods(socket: PathBuf) {
    let work = move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async move {
            let channel = Endpoint::try_from("http://[::]:50051")
                .ok()?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(socket).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
                .ok()?;
            let mut client = RuntimeServiceClient::new(channel);
            let pods = client
                .list_pod_sandbox(cri_api::v1::ListPodSandboxRequest { filter: None })
                .await
                .ok()?
                .into_inner()
                .items;
            for pod in pods {
                let _ = client
                    .remove_pod_sandbox(cri_api::v1::RemovePodSandboxRequest {
                        pod_sandbox_id: pod.id,
                    })
                    .await;
            }
            Some(())
        })
    };
    // A thread of its own: Drop may run inside the test's async runtime.
    let _ = std::thread::spawn(work).join();
}

/// How long dropping a daemon waits for its pods' CNI releases.
const RELEASE_GRACE: Duration = Duration::from_secs(20);

impl Daemon {
    /// Pods whose CNI attachment the daemon has not yet released (its
    /// `root/cni` records): their IP allocations and iptables rules are
    /// host-wide and outlive the test's directory.
    fn unreleased(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("root/cni")).map_or(0, |d| d.count())
    }

    /// Starts a daemon a test left dead again, from a thread of its own (Drop
    /// may run inside the test's runtime), so that its start-up sweep
    /// releases what the dead one had not. A daemon that cannot start is
    /// left alone.
    fn revive_for_cleanup(&mut self) {
        self.fault = None;
        std::thread::scope(|scope| {
            let revived = scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map(|runtime| runtime.block_on(self.spawn()))
                })
                .join();
            if !matches!(revived, Ok(Ok(()))) {
                eprintln!("daemon harness: could not restart the daemon to release its pods");
            }
        });
    }

    /// Waits (at most [`RELEASE_GRACE`]) until every removed pod's CNI
    /// attachment is released: RemovePodSandbox leaves the DEL to a
    /// background task, which a SIGKILL would cut short, leaking the pod's
    /// address and iptables chain on the machine for good (the test's
    /// directory, where a restart would find them, goes with it).
    fn wait_all_released(&self) {
        let deadline = Instant::now() + RELEASE_GRACE;
        while self.unreleased() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.unreleased() > 0 {
            eprintln!(
                "daemon harness: {} CNI attachments not released within {RELEASE_GRACE:?}",
                self.unreleased()
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.has_exited() && self.unreleased() > 0 {
            self.reap();
            self.revive_for_cleanup();
        }
        if self.child.is_some() {
            remove_all_pods(self.socket());
            self.wait_all_released();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        unmount_pin_dir(self.dir.path());
    }
}

/// Unmounts the pin directory (`state/netns`), the state tmpfs (`state`)
/// and the root filesystems' private mount (`root/images/containers`) of a
/// daemon that kept its state under `dir`: the daemon's mounts of its own,
/// kept on purpose across daemon restarts, which would keep a test's
/// directory from going. For tests that run the daemon themselves, once it
/// has exited.
pub fn unmount_pin_dir(dir: &Path) {
    for mount in ["state/netns", "state", "root/images/containers"] {
        let _ = nix::mount::umount2(&dir.join(mount), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Starts the daemon on `config_path` expecting it to refuse to start:
/// waits (at most 20 s) for it to exit, and returns how it exited and what
/// it wrote to stderr. A daemon still running then is killed, and the test
/// fails with `why` (what should have stopped it).
pub async fn refused_start(config_path: &Path, why: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(binary("cri-server"))
        .arg("--config")
        .arg(config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cri-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cri-server") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started despite {why}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (status, stderr)
}

/// Runs the daemon binary with `args` to completion (for command-line tests).
pub fn run_cli(args: &[&str]) -> Output {
    Command::new(binary("cri-server"))
        .args(args)
        .output()
        .expect("run cri-server")
}
