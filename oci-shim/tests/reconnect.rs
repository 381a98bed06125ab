//! The daemon dies, the containers and their monitors do not (needs root and runc).

mod common;

use common::*;
use oci_shim::monitor::{Monitor, MonitorConfig, MonitorStatus};
use oci_shim::runtime::{CliRuntime, OciRuntime, RuntimeHandlerConfig};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Not a test: the "daemon" that the test below starts and kills -9. It
/// creates and starts the containers described in `OCI_SHIM_DRIVER_JOBS`,
/// prints their monitor pids and then waits to be killed.
#[tokio::test]
#[ignore = "helper process for driver_killed_by_sigkill"]
async fn driver_role() {
    let jobs = std::env::var("OCI_SHIM_DRIVER_JOBS").expect("run by driver_killed_by_sigkill");
    let root = std::env::var("OCI_SHIM_DRIVER_ROOT").unwrap();
    let handler = RuntimeHandlerConfig::runc(root);
    let runtime = CliRuntime::new(handler.clone());
    for job in jobs.lines() {
        let f: Vec<&str> = job.split('|').collect();
        let mut cfg = MonitorConfig::new(f[0], f[1], f[2], f[3], handler.clone());
        cfg.monitor_binary = env!("CARGO_BIN_EXE_oci-monitor").into();
        let m = Monitor::spawn(&cfg).await.unwrap();
        runtime.start(f[0]).await.unwrap();
        println!("started {} {}", f[0], m.monitor_pid());
    }
    println!("all-started");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test]
async fn driver_killed_by_sigkill() {
    let h = Harness::runc();
    let quick = h.id("quick");
    let slow = h.id("slow");
    let specs = [
        (
            quick.clone(),
            h.spec(&quick, &["sh", "-c", "sleep 1; exit 5"]),
        ),
        (
            slow.clone(),
            h.spec(
                &slow,
                &[
                    "sh",
                    "-c",
                    "trap 'exit 7' TERM; while :; do sleep 0.1; done",
                ],
            ),
        ),
    ];
    let mut jobs = String::new();
    for (id, spec) in &specs {
        let cfg = h.monitor_config(id, spec);
        jobs += &format!(
            "{}|{}|{}|{}\n",
            id,
            cfg.bundle.display(),
            cfg.state_dir.display(),
            cfg.log_path.display()
        );
    }
    let mut driver = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "driver_role",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OCI_SHIM_DRIVER_JOBS", &jobs)
        .env("OCI_SHIM_DRIVER_ROOT", &h.handler.root)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut monitor_pids = Vec::new();
    for line in BufReader::new(driver.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest may put its own "test driver_role ... " before our lines.
        if line.ends_with("all-started") {
            break;
        }
        if let Some(rest) = line.split_once("started ").map(|(_, r)| r) {
            monitor_pids.push(rest.split(' ').nth(1).unwrap().parse::<i32>().unwrap());
        }
    }
    assert_eq!(
        monitor_pids.len(),
        2,
        "driver did not start both containers"
    );
    driver.kill().unwrap(); // SIGKILL
    driver.wait().unwrap();

    for &pid in &monitor_pids {
        assert!(alive(pid), "monitor {pid} died with the driver");
    }
    // A new "daemon": the quick container ends while nobody is connected...
    let runtime = CliRuntime::new(h.handler.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        if let Ok(MonitorStatus::Exited(r)) = Monitor::reconnect(&quick, h.state_dir(&quick)).await
        {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "quick container never reported its exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(found.exit_code, 5);

    // ...the slow one is still running and its real exit code comes through.
    let MonitorStatus::Running(mut client) =
        Monitor::reconnect(&slow, h.state_dir(&slow)).await.unwrap()
    else {
        panic!("slow container's monitor not reachable");
    };
    assert!(matches!(
        client.state().await.unwrap(),
        oci_shim::monitor::ContainerStatus::Running(_)
    ));
    let reopened = Monitor::open(&slow, h.state_dir(&slow)).await.unwrap();
    assert_eq!(reopened.monitor_pid(), monitor_pids[1]);
    runtime.kill(&slow, libc::SIGTERM, false).await.unwrap();
    assert_eq!(client.wait().await.unwrap().exit_code, 7);
    assert_eq!(reopened.wait().await.unwrap().exit_code, 7);
    runtime.delete(&slow, false).await.unwrap();
    runtime.delete(&quick, false).await.unwrap();
}
