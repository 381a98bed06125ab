//! Containers on gVisor's runsc through the monitor (needs root and runsc).

mod common;

use common::*;
use oci_shim::runtime::OciRuntime;
use oci_shim::spec::PodRole;
use std::time::Duration;

#[tokio::test]
async fn runs_in_gvisor() {
    let h = Harness::runsc();
    let id = h.id("gvisor");
    let spec = h.spec(&id, &["sh", "-c", "uname -r; dmesg; exit 4"]);
    let m = h.spawn(&id, &spec).await.unwrap();
    h.runtime.start(&id).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), m.wait())
        .await
        .expect("runsc container did not finish")
        .unwrap();
    let entries = h.log_entries(&id);
    assert_eq!(exit.exit_code, 4, "{entries:?}");
    let host = String::from_utf8(
        std::process::Command::new("uname")
            .arg("-r")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let kernel = &entries.iter().find(|e| e.0 == "stdout").unwrap().2;
    assert_ne!(
        kernel.trim(),
        host.trim(),
        "uname -r inside equals the host's"
    );
    assert!(
        entries.iter().any(|e| e.2.contains("Starting gVisor")),
        "no gVisor boot lines in dmesg: {entries:?}"
    );
    h.runtime.delete(&id, true).await.unwrap();
}

#[tokio::test]
async fn pod_containers_share_one_sandbox() {
    let h = Harness::runsc();
    let sandbox = h.id("sandbox");
    let mut spec = h.spec(&sandbox, &["sleep", "1000"]);
    spec.pod_role = Some(PodRole::Sandbox);
    let sm = h.spawn(&sandbox, &spec).await.unwrap();
    sm.start().await.unwrap();

    let app = h.id("app");
    let mut spec = h.spec(&app, &["sh", "-c", "echo joined; exit 6"]);
    spec.pod_role = Some(PodRole::Container {
        sandbox_id: sandbox.clone(),
    });
    let am = h.spawn(&app, &spec).await.unwrap();
    am.start().await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), am.wait())
        .await
        .expect("app container did not finish")
        .unwrap();
    assert_eq!(exit.exit_code, 6);
    assert_eq!(h.log_entries(&app)[0].2, "joined");

    // One sandbox process for the pod, none of its own for the app container.
    let sandboxes = processes_mentioning("runsc-sandbox");
    let of = |id: &str| {
        sandboxes
            .iter()
            .filter(|&&p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(id))
                    .unwrap_or(false)
            })
            .count()
    };
    assert_eq!(of(&sandbox), 1);
    assert_eq!(of(&app), 0);
    // The joining container's "init" is the pod's sandbox process.
    assert_eq!(am.container_pid(), sm.container_pid());
    h.runtime.delete(&app, true).await.unwrap();
    h.runtime.delete(&sandbox, true).await.unwrap();
    drop(sm);
}

#[tokio::test]
async fn exec_in_gvisor_and_timeout_kills_the_tree() {
    let h = Harness::runsc();
    let id = h.id("gexec");
    let m = h
        .spawn(
            &id,
            &h.spec(&id, &["sh", "-c", "while :; do sleep 1; done"]),
        )
        .await
        .unwrap();
    m.start().await.unwrap();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let r = h
        .runtime
        .exec_sync(&id, &args(&["uname", "-r"]), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        (String::from_utf8_lossy(&r.stdout).trim(), r.exit_code),
        ("4.4.0", 0)
    );
    let r = h
        .runtime
        .exec_sync(
            &id,
            &args(&["sh", "-c", "sleep 77 & sleep 77"]),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(r.timed_out);
    let left = h
        .runtime
        .exec_sync(
            &id,
            &args(&["sh", "-c", "ps -o args | grep '[s]leep 77'"]),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        left.exit_code,
        1,
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    h.runtime.kill(&id, libc::SIGKILL, false).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), m.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 137);
}

#[tokio::test]
async fn bad_command_fails_clearly_and_cleans_up() {
    let h = Harness::runsc();
    let id = h.id("gbad");
    let spec = h.spec(&id, &["/no/such/binary"]);
    // gVisor may accept the create and fail at start; either way the error
    // must say why, and deleting must leave nothing behind.
    let err = match h.spawn(&id, &spec).await {
        Err(e) => e,
        Ok(m) => {
            let e = m.start().await.unwrap_err();
            h.runtime.delete(&id, true).await.unwrap();
            let exit = tokio::time::timeout(Duration::from_secs(30), m.wait())
                .await
                .unwrap();
            assert!(exit.is_ok());
            e
        }
    };
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
    assert!(
        eventually(Duration::from_secs(10), || processes_mentioning(&id)
            .is_empty()
            .then_some(()))
        .await
        .is_some(),
        "left: {:?}",
        processes_mentioning(&id)
    );
    assert!(!h.handler.root.join(&id).exists());
}

#[tokio::test]
async fn deleted_before_start_ends_the_monitor() {
    let h = Harness::runsc();
    let sandbox = h.id("gsb");
    let mut spec = h.spec(&sandbox, &["sleep", "1000"]);
    spec.pod_role = Some(PodRole::Sandbox);
    let sm = h.spawn(&sandbox, &spec).await.unwrap();
    sm.start().await.unwrap();
    let app = h.id("gnever");
    let mut spec = h.spec(&app, &["true"]);
    spec.pod_role = Some(PodRole::Container {
        sandbox_id: sandbox.clone(),
    });
    let am = h.spawn(&app, &spec).await.unwrap();
    h.runtime.delete(&app, true).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), am.wait())
        .await
        .expect("monitor of a deleted container kept waiting")
        .unwrap();
    assert_eq!(exit.exit_code, 255);
    h.runtime.delete(&sandbox, true).await.unwrap();
}
