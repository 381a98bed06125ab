//! `[runtime] log_size_max` end to end (issue #18): a container that writes
//! far more than the cap never makes its CRI log file larger than the cap,
//! every line in it is a whole CRI log entry, and the newest output is
//! kept.

use std::time::{Duration, Instant};
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX};

const CAP: u64 = 16384;

#[tokio::test]
async fn a_flooding_container_keeps_its_log_under_the_cap() {
    let daemon = Daemon::start(&format!("[runtime]\nlog_size_max = {CAP}\n")).await;
    daemon.pull(BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let mut pod = pod_config("capped");
    pod.log_directory = logs.path().display().to_string();
    let pod = daemon.run_pod(pod, "").await;
    // About 2 MB of lines, then a last line to look for.
    let script = "i=0; while [ $i -lt 40000 ]; do echo line-$i-of-a-flood; i=$((i+1)); done; \
                  echo the-last-line; sleep 600";
    daemon
        .create_started(
            &pod,
            container_config("flood", BUSYBOX, &["sh", "-c", script]),
        )
        .await;
    let log = logs.path().join("flood.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut largest = 0;
    let text = loop {
        let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        largest = largest.max(size);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.ends_with("stdout F the-last-line\n") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the last line never came:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        largest <= CAP,
        "the log grew to {largest} bytes, over {CAP}"
    );
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(fields.len(), 4, "{line:?}");
        assert_eq!((fields[1], fields[2]), ("stdout", "F"), "{line:?}");
        assert!(
            fields[3].starts_with("line-") || fields[3] == "the-last-line",
            "{line:?}"
        );
    }
    daemon.remove_pod(&pod).await;
}
