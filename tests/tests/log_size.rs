//! `[runtime] log_size_max` end to end (issue #18): a container that writes
//! far more than the cap never makes its CRI log file larger than the cap,
//! every entry in it is well-formed, and the newest output is kept.

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
        // The last line may itself come in pieces (P entries, then F).
        if ends_with_the_last_line(&joined(&text)) {
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
    // A read from the container's pipe may end inside a line: that line
    // is then a `P` (partial) entry followed by the rest, as in any CRI log.
    // A cut may also start the file with a line's continuation.
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(fields.len(), 4, "{line:?}");
        assert_eq!(fields[1], "stdout", "{line:?}");
        assert!(matches!(fields[2], "P" | "F"), "{line:?}");
        assert!(
            fields[3]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{line:?}"
        );
    }
    let whole = joined(&text);
    let lines: Vec<&str> = whole.lines().collect();
    // Every line but perhaps the first (a continuation) is whole again.
    for line in &lines[1..] {
        assert!(
            (line.starts_with("line-") && line.ends_with("-of-a-flood"))
                || *line == "the-last-line",
            "{line:?}"
        );
    }
    daemon.remove_pod(&pod).await;
}

/// The container's output from CRI log entries: `P` pieces joined to the
/// `F` entry that ends their line.
fn joined(text: &str) -> String {
    let mut whole = String::new();
    for line in text.lines() {
        let mut fields = line.splitn(4, ' ').skip(2);
        let (Some(tag), Some(content)) = (fields.next(), fields.next()) else {
            continue;
        };
        whole.push_str(content);
        if tag == "F" {
            whole.push('\n');
        }
    }
    whole
}

/// Whether `whole` ends with the container's last line, whole or, when a
/// cut fell inside it, its tail (flood lines end in `flood`, never a tail of
/// it).
fn ends_with_the_last_line(whole: &str) -> bool {
    whole
        .strip_suffix('\n')
        .and_then(|w| w.lines().last())
        .is_some_and(|last| !last.is_empty() && "the-last-line".ends_with(last))
}
