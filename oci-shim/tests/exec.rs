//! ExecSync on runc (needs root and runc).

mod common;

use common::*;
use oci_shim::runtime::OciRuntime;
use std::time::{Duration, Instant};

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn exec_captures_output_and_exit_code() {
    let h = Harness::runc();
    let id = h.id("exec");
    let _m = h
        .spawn(
            &id,
            &h.spec(&id, &["sh", "-c", "while :; do sleep 1; done"]),
        )
        .await
        .unwrap();
    h.runtime.start(&id).await.unwrap();
    let r = h
        .runtime
        .exec_sync(
            &id,
            &args(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.stdout.as_slice(),
            r.stderr.as_slice(),
            r.exit_code,
            r.timed_out
        ),
        (&b"out\n"[..], &b"err\n"[..], 3, false)
    );

    // Output beyond the cap is dropped, not blocking the process.
    let r = h
        .runtime
        .exec_sync(
            &id,
            &args(&["sh", "-c", "head -c 17000000 /dev/zero"]),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.stdout.len(), r.exit_code),
        (oci_shim::runtime::EXEC_OUTPUT_CAP, 0)
    );

    let err = h
        .runtime
        .exec_sync(&id, &args(&["/no/such/cmd"]), Duration::from_secs(10))
        .await;
    match err {
        Ok(r) => assert_ne!(r.exit_code, 0),
        Err(e) => assert!(e.to_string().contains("/no/such/cmd"), "{e}"),
    }
}

#[tokio::test]
async fn exec_timeout_leaves_nothing_running() {
    let h = Harness::runc();
    let id = h.id("exectimeout");
    let _m = h
        .spawn(
            &id,
            &h.spec(&id, &["sh", "-c", "while :; do sleep 1; done"]),
        )
        .await
        .unwrap();
    h.runtime.start(&id).await.unwrap();
    let started = Instant::now();
    let r = h
        .runtime
        .exec_sync(
            &id,
            &args(&["sh", "-c", "sleep 77 & sleep 77"]),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert!(r.timed_out);
    assert!(started.elapsed() < Duration::from_secs(10));
    let left = h
        .runtime
        .exec_sync(
            &id,
            &args(&["sh", "-c", "ps -o args | grep '[s]leep 77'"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        left.exit_code,
        1,
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    // The probe itself works: it finds the init loop.
    let init = h
        .runtime
        .exec_sync(
            &id,
            &args(&["sh", "-c", "ps -o args | grep '[w]hile'"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(init.exit_code, 0);
}
