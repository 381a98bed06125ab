//! A runtime that hangs never holds its caller for good: every runtime
//! command, and the monitor's create and start, are killed after the
//! handler's timeout and reported naming the command and the time.
//!
//! The runtimes here are shell scripts: no root, runc or container needed.

use oci_shim::monitor::{Monitor, MonitorConfig};
use oci_shim::runtime::{CliRuntime, OciRuntime, RuntimeHandlerConfig, RuntimeKind};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Writes an executable script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn handler(dir: &Path, runtime: PathBuf) -> RuntimeHandlerConfig {
    RuntimeHandlerConfig {
        name: "hung".into(),
        path: runtime,
        args: Vec::new(),
        root: dir.join("root"),
        kind: RuntimeKind::Runc,
        timeout: Duration::from_secs(1),
    }
}

/// Whether a process whose command line holds `marker` is alive.
fn alive(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let status = std::fs::read_to_string(p.path().join("status")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(marker) && !status.contains("State:\tZ")
    })
}

/// Waits (at most 5 s) for every process of `marker` to be gone: a SIGKILL
/// lands when the process next runs.
fn gone(marker: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while alive(marker) {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn marker() -> String {
    format!("{}.{}", 7000 + std::process::id() % 1000, line!())
}

#[tokio::test]
async fn a_hung_runtime_command_is_killed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker();
    let runtime = script(dir.path(), "hung-runtime", &format!("exec sleep {mark}"));
    let cli = CliRuntime::new(handler(dir.path(), runtime));
    let started = Instant::now();
    let err = cli.kill("c1", 15, false).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(
        matches!(err, oci_shim::Error::RuntimeTimeout { .. }),
        "{message}"
    );
    assert!(
        message.contains("kill") && message.contains("1s"),
        "{message}"
    );
    assert!(gone(&mark), "the hung runtime survived");
}

#[tokio::test]
async fn a_hung_create_under_the_monitor_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker() + "1";
    let runtime = script(dir.path(), "hung-create", &format!("exec sleep {mark}"));
    let state = dir.path().join("state");
    let mut cfg = MonitorConfig::new(
        "c1",
        dir.path().join("bundle"),
        &state,
        dir.path().join("c1.log"),
        handler(dir.path(), runtime),
    );
    cfg.monitor_binary = PathBuf::from(env!("CARGO_BIN_EXE_oci-monitor"));
    let started = Instant::now();
    let err = Monitor::spawn(&cfg).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("no answer within 1s"), "{err}");
    assert!(gone(&mark), "the hung create survived");
    assert!(!state.exists(), "the state directory was left");
}

#[tokio::test]
async fn a_hung_start_under_the_monitor_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker() + "2";
    // create: a stand-in init, its pid in --pid-file; start: hangs.
    let body = format!(
        r#"for a in "$@"; do
  if [ "$prev" = --pid-file ]; then pidfile=$a; fi
  case $a in create|start|delete|kill|state) verb=${{verb:-$a}};; esac
  prev=$a
done
case $verb in
  create) sleep {mark}1 & echo $! > "$pidfile"; exit 0;;
  start) exec sleep {mark}2;;
  *) exit 0;;
esac"#
    );
    let runtime = script(dir.path(), "hung-start", &body);
    let state = dir.path().join("state");
    let mut cfg = MonitorConfig::new(
        "c1",
        dir.path().join("bundle"),
        &state,
        dir.path().join("c1.log"),
        handler(dir.path(), runtime),
    );
    cfg.monitor_binary = PathBuf::from(env!("CARGO_BIN_EXE_oci-monitor"));
    let monitor = Monitor::spawn(&cfg).await.unwrap();
    let started = Instant::now();
    let err = monitor.start().await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("start") && err.contains("no answer within 1s"),
        "{err}"
    );
    assert!(gone(&format!("{mark}2")), "the hung start survived");
    // The stand-in init and its monitor go with a kill.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor.container_pid()),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = monitor.wait().await;
}
