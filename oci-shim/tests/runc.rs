//! Containers on runc through the monitor (needs root, runc and busybox-static).

mod common;

use common::*;
use oci_shim::monitor::{ContainerStatus, Monitor, MonitorStatus};
use oci_shim::runtime::{ContainerStatus as RtStatus, OciRuntime};
use std::time::Duration;

#[tokio::test]
async fn log_lines_partials_and_exit_code() {
    let h = Harness::runc();
    let id = h.id("log");
    let spec = h.spec(
        &id,
        &[
            "sh",
            "-c",
            "echo out1; echo err1 >&2; printf part; sleep 0.3; echo ial; exit 3",
        ],
    );
    let m = h.spawn(&id, &spec).await.unwrap();
    assert!(alive(m.monitor_pid()) && alive(m.container_pid()));
    m.start().await.unwrap();
    let exit = m.wait().await.unwrap();
    assert_eq!((exit.exit_code, exit.signal), (3, 0));

    let entries = h.log_entries(&id);
    let want = [
        ("stdout", "F", "out1"),
        ("stderr", "F", "err1"),
        ("stdout", "P", "part"),
        ("stdout", "F", "ial"),
    ];
    for w in want {
        assert!(
            entries
                .iter()
                .any(|(s, t, x)| (s.as_str(), t.as_str(), x.as_str()) == w),
            "{w:?} missing from {entries:?}"
        );
    }
    let out: Vec<_> = entries.iter().filter(|e| e.0 == "stdout").collect();
    let p = out.iter().position(|e| e.2 == "part").unwrap();
    assert_eq!(
        out[p + 1].2,
        "ial",
        "partial must be followed by its end: {out:?}"
    );

    // exit.json agrees with what wait said, and the monitor is gone.
    assert_eq!(m.exit_record(), Some(exit));
    assert!(
        eventually(Duration::from_secs(5), || (!alive(m.monitor_pid()))
            .then_some(()))
        .await
        .is_some()
    );
    match Monitor::reconnect(&id, m.state_dir()).await.unwrap() {
        MonitorStatus::Exited(r) => assert_eq!(r, exit),
        MonitorStatus::Running(_) => panic!("monitor of an exited container still answers"),
    }
    h.runtime.delete(&id, false).await.unwrap();
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/memory/{}/{id}", h.cgroup_parent()))
            .exists()
    );
}

#[tokio::test]
async fn long_and_unterminated_output_is_split() {
    let h = Harness::runc();
    let id = h.id("long");
    let spec = h.spec(
        &id,
        &[
            "sh",
            "-c",
            "head -c 100000 /dev/zero | tr '\\0' x; echo; printf tail",
        ],
    );
    let m = h.spawn(&id, &spec).await.unwrap();
    h.runtime.start(&id).await.unwrap();
    assert_eq!(m.wait().await.unwrap().exit_code, 0);
    let entries = h.log_entries(&id);
    let first_f = entries.iter().position(|e| e.1 == "F").unwrap();
    assert!(
        first_f >= 1,
        "a 100000-byte line must arrive in partials: {}",
        entries.len()
    );
    let line: String = entries[..=first_f].iter().map(|e| e.2.as_str()).collect();
    assert_eq!(line.len(), 100_000);
    assert!(line.bytes().all(|b| b == b'x'));
    assert!(entries[..first_f].iter().all(|e| e.1 == "P"));
    // The unterminated "tail" is a partial closed by an empty F at EOF.
    let rest: Vec<_> = entries[first_f + 1..]
        .iter()
        .map(|e| (e.1.as_str(), e.2.as_str()))
        .collect();
    assert_eq!(rest, [("P", "tail"), ("F", "")]);
}

#[tokio::test]
async fn exit_codes_zero_one_and_sigkill() {
    let h = Harness::runc();
    for (cmd, code) in [("true", 0), ("false", 1)] {
        let id = h.id(cmd);
        let m = h.spawn(&id, &h.spec(&id, &[cmd])).await.unwrap();
        h.runtime.start(&id).await.unwrap();
        let exit = m.wait().await.unwrap();
        assert_eq!((exit.exit_code, exit.signal), (code, 0), "{cmd}");
    }

    let killed = h.id("kill");
    let m = h
        .spawn(&killed, &h.spec(&killed, &["sleep", "1000"]))
        .await
        .unwrap();
    h.runtime.start(&killed).await.unwrap();
    let mut client = m.connect().await.unwrap();
    assert_eq!(
        client.state().await.unwrap(),
        ContainerStatus::Running(m.container_pid())
    );
    assert_eq!(
        raw_exchange(m.state_dir(), "hello 2\n").await,
        "error unsupported-version\n"
    );
    assert_eq!(
        raw_exchange(m.state_dir(), "hello 1\nfly away\nstate\n").await,
        format!(
            "ok 1\nerror unknown-request\nrunning {}\n",
            m.container_pid()
        )
    );
    assert_eq!(
        h.runtime.state(&killed).await.unwrap().status,
        RtStatus::Running
    );
    h.runtime.kill(&killed, libc::SIGKILL, false).await.unwrap();
    let exit = client.wait().await.unwrap();
    assert_eq!((exit.exit_code, exit.signal), (137, 9));
    assert!(exit.finished_at_unix_nanos > 0);
    h.runtime.delete(&killed, false).await.unwrap();
    assert!(h
        .runtime
        .list()
        .await
        .unwrap()
        .iter()
        .all(|c| c.id != killed));
}

/// The monitor holds the container's mount namespace from create until it
/// has reported the exit, so that the namespace's teardown (every mount
/// of the container unmounted) is not on the way from a kill to the exit
/// a stop waits for.
#[tokio::test]
async fn the_monitor_holds_the_mount_namespace_until_the_exit_is_reported() {
    let h = Harness::runc();
    let id = h.id("mntns");
    let m = h
        .spawn(&id, &h.spec(&id, &["sleep", "1000"]))
        .await
        .unwrap();
    h.runtime.start(&id).await.unwrap();
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    let container = ns(m.container_pid());
    assert_ne!(
        container,
        ns(std::process::id() as i32),
        "runc made no mount namespace"
    );
    let held = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert!(
        held(m.monitor_pid()).contains(&container),
        "{:?} not among the monitor's descriptors {:?}",
        container,
        held(m.monitor_pid())
    );
    h.runtime.kill(&id, libc::SIGKILL, false).await.unwrap();
    let exit = m.wait().await.unwrap();
    assert_eq!(exit.signal, 9);
    // The monitor lets it go once the exit is out, and leaves.
    assert!(
        eventually(Duration::from_secs(5), || (!alive(m.monitor_pid()))
            .then_some(()))
        .await
        .is_some()
    );
    h.runtime.delete(&id, false).await.unwrap();
}

#[tokio::test]
async fn reopen_log_after_rotation() {
    let h = Harness::runc();
    let id = h.id("rotate");
    let spec = h.spec(&id, &["sh", "-c", "echo before; read x; echo after"]);
    let mut cfg = h.monitor_config(&id, &spec);
    cfg.stdin = true;
    cfg.stdin_once = true;
    let m = h.spawn_with(cfg).await.unwrap();
    h.runtime.start(&id).await.unwrap();
    let log = h.log_path(&id);
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("before")))
        .await
        .is_some()
    );
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let mut ctl = m.connect().await.unwrap();
    ctl.reopen_log().await.unwrap();
    // Attach, send a line to stdin, then end input (stdin_once closes it).
    let mut att = m.connect().await.unwrap();
    att.attach().await.unwrap();
    att.write_stdin(b"go\n").await.unwrap();
    att.close_stdin().await.unwrap();
    let mut seen = Vec::new();
    loop {
        match att.next_frame().await.unwrap() {
            oci_shim::monitor::AttachFrame::Stdout(d) => seen.extend(d),
            oci_shim::monitor::AttachFrame::Stderr(_) => {}
            oci_shim::monitor::AttachFrame::Exit(r) => {
                assert_eq!(r.exit_code, 0);
                break;
            }
        }
    }
    assert_eq!(String::from_utf8_lossy(&seen), "after\n");
    let entries = h.log_entries(&id);
    assert_eq!(entries, [("stdout".into(), "F".into(), "after".into())]);
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("stdout F before"));
}

#[tokio::test]
async fn failed_create_explains_and_leaves_nothing() {
    let h = Harness::runc();
    let id = h.id("badargs");
    let err = h
        .spawn(&id, &h.spec(&id, &["/no/such/binary"]))
        .await
        .unwrap_err();
    let text = err.to_string();
    eprintln!("bad args error: {text}");
    assert!(
        text.contains(&id) && text.contains("runc") && text.contains("/no/such/binary"),
        "{text}"
    );
    assert_nothing_left(&h, &id).await;

    let mut h2 = Harness::runc();
    h2.handler.path = "/nonexistent/runc".into();
    let id = h2.id("nobinary");
    let spec = h2.spec(&id, &["true"]);
    let err = h2.spawn(&id, &spec).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/runc"), "{err}");
    assert_nothing_left(&h2, &id).await;
}

#[tokio::test]
async fn a_prepared_monitor_creates_only_after_go_and_an_abandoned_one_leaves_nothing() {
    let h = Harness::runc();
    let id = h.id("prepared");
    let cfg = h.monitor_config(&id, &h.spec(&id, &["sh", "-c", "echo created after go"]));
    // The bundle is not there while the monitor starts up: had it run the
    // runtime before `go`, the create would fail.
    let hidden = cfg.bundle.with_extension("hidden");
    std::fs::rename(&cfg.bundle, &hidden).unwrap();
    let pending = Monitor::prepare(&cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !h.handler.root.join(&id).exists(),
        "the runtime ran before go"
    );
    std::fs::rename(&hidden, &cfg.bundle).unwrap();
    let m = pending.create().await.unwrap();
    h.monitors.lock().unwrap().push(m.monitor_pid());
    m.start().await.unwrap();
    assert_eq!(m.wait().await.unwrap().exit_code, 0);
    let logged = h.log_entries(&id);
    assert!(
        logged.iter().any(|(_, _, text)| text == "created after go"),
        "{logged:?}"
    );

    let id = h.id("abandoned");
    let cfg = h.monitor_config(&id, &h.spec(&id, &["true"]));
    let pending = Monitor::prepare(&cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    pending.abandon().await;
    assert_nothing_left(&h, &id).await;
    // Abandoned before the monitor even got going.
    let id = h.id("abandoned-early");
    let cfg = h.monitor_config(&id, &h.spec(&id, &["true"]));
    Monitor::prepare(&cfg).await.unwrap().abandon().await;
    assert_nothing_left(&h, &id).await;
}

async fn assert_nothing_left(h: &Harness, id: &str) {
    assert!(!h.state_dir(id).exists(), "state dir left behind");
    assert!(
        !h.handler.root.join(id).exists(),
        "runtime state left behind"
    );
    assert!(
        processes_mentioning(id).is_empty(),
        "processes left: {:?}",
        processes_mentioning(id)
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(id), "mount left behind");
}

#[tokio::test]
async fn privileged_and_low_oom_score_adj_still_run() {
    let h = Harness::runc();
    let id = h.id("priv");
    let mut spec = h.spec(
        &id,
        &[
            "sh",
            "-c",
            "cat /proc/self/oom_score_adj; grep CapEff /proc/self/status",
        ],
    );
    spec.privileged = true;
    // Below the daemon's own value: runc would die without the clamp.
    spec.process.oom_score_adj = Some(-998);
    let m = h.spawn(&id, &spec).await.unwrap();
    m.start().await.unwrap();
    assert_eq!(m.wait().await.unwrap().exit_code, 0);
    let out: Vec<String> = h.log_entries(&id).into_iter().map(|e| e.2).collect();
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    assert_eq!(out[0], own.trim());
    let held = std::fs::read_to_string("/proc/self/status").unwrap();
    let held = held.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    assert_eq!(
        out[1].split_whitespace().nth(1),
        held.split_whitespace().nth(1),
        "privileged container must get exactly the daemon's capabilities"
    );
}

#[tokio::test]
async fn terminal_output_is_logged() {
    let h = Harness::runc();
    let id = h.id("tty");
    let mut spec = h.spec(&id, &["sh", "-c", "tty; echo hello"]);
    spec.process.terminal = true;
    let mut cfg = h.monitor_config(&id, &spec);
    cfg.terminal = true;
    let m = h.spawn_with(cfg).await.unwrap();
    let mut ctl = m.connect().await.unwrap();
    ctl.resize(100, 40).await.unwrap();
    m.start().await.unwrap();
    assert_eq!(m.wait().await.unwrap().exit_code, 0);
    let out: Vec<String> = h
        .log_entries(&id)
        .into_iter()
        .map(|e| e.2.trim_end_matches('\r').to_owned())
        .collect();
    assert!(out.iter().any(|l| l.starts_with("/dev/pts/")), "{out:?}");
    assert!(out.iter().any(|l| l == "hello"), "{out:?}");
}

#[tokio::test]
async fn pause_resume_and_update() {
    let h = Harness::runc();
    let id = h.id("pause");
    let m = h
        .spawn(&id, &h.spec(&id, &["sleep", "1000"]))
        .await
        .unwrap();
    m.start().await.unwrap();
    h.runtime.pause(&id).await.unwrap();
    assert_eq!(h.runtime.state(&id).await.unwrap().status, RtStatus::Paused);
    h.runtime.resume(&id).await.unwrap();
    assert_eq!(
        h.runtime.state(&id).await.unwrap().status,
        RtStatus::Running
    );

    let resources: oci_spec::runtime::LinuxResources =
        serde_json::from_str(r#"{"memory":{"limit":67108864},"cpu":{"shares":256}}"#).unwrap();
    h.runtime.update(&id, &resources).await.unwrap();
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/{}/{id}/memory.limit_in_bytes",
        h.cgroup_parent()
    ))
    .unwrap();
    assert_eq!(limit.trim(), "67108864");
    h.runtime.kill(&id, libc::SIGKILL, true).await.unwrap();
    assert_eq!(m.wait().await.unwrap().exit_code, 137);
}

#[tokio::test]
async fn stdin_once_closes_stdin_when_attach_ends() {
    let h = Harness::runc();
    let id = h.id("stdinonce");
    let spec = h.spec(&id, &["sh", "-c", "cat; echo done"]);
    let mut cfg = h.monitor_config(&id, &spec);
    cfg.stdin = true;
    cfg.stdin_once = true;
    let m = h.spawn_with(cfg).await.unwrap();
    let mut att = m.connect().await.unwrap();
    att.attach().await.unwrap();
    m.start().await.unwrap();
    att.write_stdin(b"abc\n").await.unwrap();
    att.close_stdin().await.unwrap();
    let mut out = Vec::new();
    // Without stdin_once, cat would wait for input forever.
    let exit = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match att.next_frame().await.unwrap() {
                oci_shim::monitor::AttachFrame::Stdout(d) => out.extend(d),
                oci_shim::monitor::AttachFrame::Stderr(_) => {}
                oci_shim::monitor::AttachFrame::Exit(r) => break r,
            }
        }
    })
    .await
    .expect("stdin was not closed");
    assert_eq!(exit.exit_code, 0);
    assert_eq!(String::from_utf8_lossy(&out), "abc\ndone\n");
}

/// Sends `text` on a fresh monitor connection and returns everything the
/// monitor answers until it has said one line per line sent.
async fn raw_exchange(state_dir: &std::path::Path, text: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let sock = state_dir.join(oci_shim::monitor::protocol::SOCKET_NAME);
    let mut s = tokio::io::BufReader::new(tokio::net::UnixStream::connect(sock).await.unwrap());
    s.get_mut().write_all(text.as_bytes()).await.unwrap();
    let mut out = String::new();
    for _ in 0..text.lines().count() {
        if s.read_line(&mut out).await.unwrap() == 0 {
            break;
        }
    }
    out
}
