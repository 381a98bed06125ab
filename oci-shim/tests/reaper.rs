//! `oci-monitor reap`, the child subreaper every exec's runtime runs under,
//! with plain processes standing in for the runtime: the reaper must adopt
//! and reap what the runtime leaves, and exit only then, with the runtime's
//! status. Needs no root.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn reap(script: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_oci-monitor"))
        .args(["reap", "/bin/sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run oci-monitor reap")
}

/// The next line the script prints.
fn line(child: &mut Child) -> String {
    let mut line = String::new();
    let out = child.stdout.as_mut().expect("piped stdout");
    BufReader::new(out).read_line(&mut line).expect("read");
    line.trim().to_owned()
}

/// `/proc/PID/stat` fields after the command name: state, parent.
fn state_and_parent(pid: &str) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid as i32, signal) };
}

#[test]
fn exits_with_the_programs_status() {
    assert_eq!(reap("exit 3").wait().unwrap().code(), Some(3));
    assert_eq!(reap("kill -9 $$").wait().unwrap().code(), Some(137));
    let missing = Command::new(env!("CARGO_BIN_EXE_oci-monitor"))
        .args(["reap", "/no/such/runtime"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/runtime"));
}

/// What `runc exec` killed before it reaped its child looks like: the
/// runtime dies, its child lives on. The child is adopted by the reaper,
/// which waits for it, reaps it, and exits with the runtime's status.
#[test]
fn adopts_and_reaps_what_the_runtime_leaves() {
    let mut reaper = reap("sleep 30 >/dev/null & echo $!; kill -9 $$");
    let orphan = line(&mut reaper);
    let deadline = Instant::now() + Duration::from_secs(5);
    while state_and_parent(&orphan).map(|s| s.1) != Some(reaper.id()) {
        assert!(
            Instant::now() < deadline,
            "{orphan} never adopted by the reaper"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        reaper.try_wait().unwrap().is_none(),
        "left before its child"
    );
    signal(orphan.parse().unwrap(), libc::SIGKILL);
    assert_eq!(reaper.wait().unwrap().code(), Some(137));
    // Reaped, not left a zombie for whoever adopts the reaper's children.
    assert_eq!(state_and_parent(&orphan), None);
}

/// SIGTERM kills the runtime; reaping goes on for what it adopted.
#[test]
fn sigterm_kills_the_runtime_but_not_the_reaping() {
    let mut reaper = reap("sleep 1 >/dev/null & echo $!; exec sleep 30");
    let orphan = line(&mut reaper);
    let started = Instant::now();
    signal(reaper.id(), libc::SIGTERM);
    assert_eq!(reaper.wait().unwrap().code(), Some(137));
    assert!(
        started.elapsed() > Duration::from_millis(500),
        "did not wait for the orphan"
    );
    assert_eq!(state_and_parent(&orphan), None);
}

/// The daemon resizes an exec's terminal with SIGWINCH to the reaper.
#[test]
fn sigwinch_reaches_the_runtime() {
    let mut reaper = reap("trap 'exit 7' WINCH; echo ready; while :; do sleep 0.05; done");
    assert_eq!(line(&mut reaper), "ready");
    signal(reaper.id(), libc::SIGWINCH);
    assert_eq!(reaper.wait().unwrap().code(), Some(7));
}
