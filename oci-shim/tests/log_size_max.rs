//! The log size cap with a real container on runc (needs root, runc and
//! busybox-static): a container writing as fast as it can never makes its
//! log exceed the cap, the monitor's memory stays flat, a rotation in the
//! middle is capped file by file, and the latest output is in the file.

mod common;

use common::*;
use oci_shim::monitor::LogSizeMax;
use std::path::Path;
use std::time::{Duration, Instant};

const CAP: u64 = 64 * 1024;

/// The monitor's resident set in KiB (`None` once it is gone).
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Every line of `path` is a whole CRI entry.
fn assert_well_formed(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "torn end");
    for line in text.lines() {
        let mut words = line.splitn(4, ' ');
        let ts = words.next().unwrap();
        assert!(ts.len() == 30 && ts.ends_with('Z'), "bad entry {line:?}");
        assert!(
            matches!(words.next(), Some("stdout" | "stderr")),
            "{line:?}"
        );
        assert!(matches!(words.next(), Some("P" | "F")), "{line:?}");
        assert!(words.next().is_some(), "{line:?}");
    }
}

#[tokio::test]
async fn a_flooding_container_never_overflows_its_capped_log() {
    let h = Harness::runc();
    let id = h.id("logcap");
    // `yes` as fast as it goes, a 200 KB line (longer than the cap), then
    // the line that must be last in the log.
    let script = "timeout 3 yes; head -c 200000 /dev/zero | tr '\\0' x; echo; echo the-last-line";
    let spec = h.spec(&id, &["sh", "-c", script]);
    let mut cfg = h.monitor_config(&id, &spec);
    cfg.log_size_max = Some(LogSizeMax::new(CAP).unwrap());
    let m = h.spawn_with(cfg).await.unwrap();
    let log = h.log_path(&id);
    let rotated = log.with_extension("log.1");
    let rss_before = rss_kib(m.monitor_pid()).unwrap();
    m.start().await.unwrap();

    let (mut largest, mut rss_most, mut rotated_yet) = (0, rss_before, false);
    let started = Instant::now();
    while m.exit_record().is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "never ended");
        largest = largest.max(size(&log));
        rss_most = rss_most.max(rss_kib(m.monitor_pid()).unwrap_or(0));
        if !rotated_yet && started.elapsed() > Duration::from_secs(1) {
            // What kubelet does: rename, then ReopenContainerLog.
            std::fs::rename(&log, &rotated).unwrap();
            m.connect().await.unwrap().reopen_log().await.unwrap();
            rotated_yet = true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(m.wait().await.unwrap().exit_code, 0);

    assert!(largest <= CAP, "the log reached {largest} bytes");
    assert!(size(&rotated) <= CAP, "rotated file of {}", size(&rotated));
    assert!(size(&log) <= CAP);
    // 3 s of `yes` buffered anywhere would be hundreds of MiB.
    let grown = rss_most.saturating_sub(rss_before);
    assert!(grown < 4 * 1024, "monitor grew by {grown} KiB");
    assert_well_formed(&log);
    assert_well_formed(&rotated);
    let entries = h.log_entries(&id);
    let last = entries.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str(), last.2.as_str()),
        ("stdout", "F", "the-last-line")
    );
    // No temporary file left beside the log.
    let tmp = log.with_file_name(format!(".{id}.log.next"));
    assert!(!tmp.exists());
}
