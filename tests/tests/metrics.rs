//! Issue 8's metrics, end to end: ListMetricDescriptors and
//! ListPodSandboxMetrics for a busy pod, and the daemon's own `/metrics`
//! endpoint (on when `[metrics] address` is set, refused when it is bad).

use cri_api::v1 as cri;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tests::daemon::{run_cli, Daemon};
use tests::fixtures::{container_config, pod_config, BUSYBOX};
use tests::http::{free_port, get};

/// The families kubelet's dashboards read most, which must be announced.
const EXPECTED: &[&str] = &[
    "container_cpu_usage_seconds_total",
    "container_cpu_user_seconds_total",
    "container_cpu_system_seconds_total",
    "container_memory_usage_bytes",
    "container_memory_working_set_bytes",
    "container_memory_rss",
    "container_memory_cache",
    "container_memory_failcnt",
    "container_memory_failures_total",
    "container_oom_events_total",
    "container_spec_memory_limit_bytes",
    "container_spec_cpu_shares",
    "container_spec_cpu_quota",
    "container_spec_cpu_period",
    "container_processes",
    "container_threads",
    "container_fs_usage_bytes",
    "container_fs_inodes_total",
    "container_last_seen",
    "container_start_time_seconds",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "container_network_receive_packets_total",
    "container_network_transmit_packets_total",
    "container_network_receive_errors_total",
    "container_network_transmit_errors_total",
    "container_network_receive_packets_dropped_total",
];

async fn descriptors(daemon: &Daemon) -> HashMap<String, cri::MetricDescriptor> {
    daemon
        .runtime()
        .await
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .unwrap_or_else(|e| panic!("ListMetricDescriptors: {e}\n{}", daemon.log()))
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| (d.name.clone(), d))
        .collect()
}

async fn pod_metrics(daemon: &Daemon) -> Vec<cri::PodSandboxMetrics> {
    daemon
        .runtime()
        .await
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .unwrap_or_else(|e| panic!("ListPodSandboxMetrics: {e}\n{}", daemon.log()))
        .into_inner()
        .pod_metrics
}

/// The value of `name` among `metrics` whose labels end with `extra`.
fn value(metrics: &[cri::Metric], name: &str, extra: &[&str]) -> Option<u64> {
    metrics
        .iter()
        .find(|m| {
            m.name == name
                && m.label_values
                    .ends_with(&extra.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        })
        .and_then(|m| m.value.as_ref())
        .map(|v| v.value)
}

#[tokio::test]
async fn a_busy_pod_reports_cpu_memory_and_network_metrics_by_container_id() {
    let daemon = Daemon::start("").await;
    let descriptors = descriptors(&daemon).await;
    for name in EXPECTED {
        assert!(descriptors.contains_key(*name), "{name} not announced");
    }
    let net = &descriptors["container_network_receive_bytes_total"];
    assert_eq!(net.label_keys.last().map(String::as_str), Some("interface"));

    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(pod_config("metrics"), "").await;
    let busy = daemon
        .create_started(
            &pod,
            container_config("busy", BUSYBOX, &["sh", "-c", "while :; do :; done"]),
        )
        .await;
    let idle = daemon
        .create_started(&pod, container_config("idle", BUSYBOX, &["sleep", "600"]))
        .await;

    // Whole seconds: wait until the busy loop has used one (on a loaded
    // machine that may take longer than one second).
    let deadline = Instant::now() + Duration::from_secs(60);
    let ours = loop {
        let all = pod_metrics(&daemon).await;
        let ours = all
            .into_iter()
            .find(|p| p.pod_sandbox_id == pod)
            .expect("the pod is listed");
        let cpu = ours
            .container_metrics
            .iter()
            .find(|c| c.container_id == busy)
            .and_then(|c| value(&c.metrics, "container_cpu_usage_seconds_total", &["total"]));
        if cpu.unwrap_or(0) >= 1 {
            break ours;
        }
        assert!(
            Instant::now() < deadline,
            "no CPU second after 60 s: {ours:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Every metric fits its descriptor, or kubelet would drop it.
    let all_metrics = ours
        .metrics
        .iter()
        .chain(ours.container_metrics.iter().flat_map(|c| &c.metrics));
    for m in all_metrics {
        let d = &descriptors[&m.name];
        assert_eq!(m.label_values.len(), d.label_keys.len(), "{}", m.name);
        assert!(m.timestamp > 0);
    }

    let ids: HashSet<&str> = ours
        .container_metrics
        .iter()
        .map(|c| c.container_id.as_str())
        .collect();
    assert_eq!(ids, HashSet::from([busy.as_str(), idle.as_str()]));
    let busy_metrics = &ours
        .container_metrics
        .iter()
        .find(|c| c.container_id == busy)
        .unwrap()
        .metrics;
    let cpu = &busy_metrics
        .iter()
        .find(|m| m.name == "container_cpu_usage_seconds_total")
        .unwrap();
    assert_eq!(cpu.metric_type, cri::MetricType::Counter as i32);
    // container, id, image, name, namespace, pod, cpu.
    assert_eq!(cpu.label_values[0], "busy");
    assert_eq!(cpu.label_values[1], busy);
    assert_eq!(cpu.label_values[2], BUSYBOX);
    assert_eq!(cpu.label_values[4..], ["e2e", "metrics", "total"]);
    for name in [
        "container_memory_usage_bytes",
        "container_memory_working_set_bytes",
        "container_processes",
        "container_start_time_seconds",
    ] {
        let v = value(busy_metrics, name, &[]).unwrap_or(0);
        assert!(v > 0, "{name} = {v}");
    }
    assert!(value(busy_metrics, "container_spec_cpu_period", &[]).is_some());

    // The network is the pod's: reported once, at pod level, for eth0.
    for name in [
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
        "container_network_receive_packets_total",
        "container_network_transmit_packets_total",
        "container_network_receive_errors_total",
        "container_network_transmit_errors_total",
        "container_network_receive_packets_dropped_total",
        "container_network_transmit_packets_dropped_total",
    ] {
        assert!(
            value(&ours.metrics, name, &["eth0"]).is_some(),
            "{name} for eth0 missing: {:?}",
            ours.metrics
        );
    }
    let eth0 = ours
        .metrics
        .iter()
        .find(|m| m.name == "container_network_receive_bytes_total")
        .unwrap();
    assert_eq!(eth0.label_values[1], pod);
    assert_eq!(
        eth0.label_values[0], "",
        "pod-level series have no container"
    );

    // A stopped pod is not reported.
    daemon
        .runtime()
        .await
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    assert!(pod_metrics(&daemon)
        .await
        .iter()
        .all(|p| p.pod_sandbox_id != pod));
    daemon.remove_pod(&pod).await;
}

/// A port nothing listens on right now.
/// The TCP ports process `pid` listens on.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    Some(
                        target
                            .strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A is LISTEN), inode.
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                if let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
    }
    ports
}

/// The value of the sample line `series` (name and labels exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test]
async fn the_metrics_endpoint_counts_rpcs_pods_trust_and_pulls() {
    let port = free_port();
    let daemon = Daemon::start(&format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n")).await;
    let mut rt = daemon.runtime().await;
    // `Daemon::start` asked once already, to know the daemon was ready.
    rt.version(cri::VersionRequest::default()).await.unwrap();
    rt.version(cri::VersionRequest::default()).await.unwrap();
    let missing = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: "0123456789ab".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    daemon.pull(BUSYBOX).await;
    let trusted = daemon.run_pod(pod_config("metrics-trusted"), "").await;
    let mut config = pod_config("metrics-untrusted");
    config.annotations = HashMap::from([(
        "io.kubernetes.cri-o.TrustedSandbox".to_string(),
        "false".to_string(),
    )]);
    let untrusted = daemon.run_pod(config, "").await;
    daemon
        .create_started(
            &trusted,
            container_config("sleep", BUSYBOX, &["sleep", "600"]),
        )
        .await;

    let (status, text) = get(port, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    let expect = |series: &str, wanted: f64| {
        assert_eq!(sample(&text, series), Some(wanted), "{series} in\n{text}");
    };
    let rpc =
        |method: &str, code: &str| format!("{{method=\"runtime.v1.{method}\",code=\"{code}\"}}");
    expect(
        &format!(
            "cri_server_grpc_requests_total{}",
            rpc("RuntimeService/Version", "OK")
        ),
        3.0,
    );
    expect(
        &format!(
            "cri_server_grpc_request_duration_seconds_count{}",
            rpc("RuntimeService/Version", "OK")
        ),
        3.0,
    );
    expect(
        &format!(
            "cri_server_grpc_requests_total{}",
            rpc("RuntimeService/ContainerStatus", "NotFound")
        ),
        1.0,
    );
    expect(
        &format!(
            "cri_server_grpc_errors_total{}",
            rpc("RuntimeService/ContainerStatus", "NotFound")
        ),
        1.0,
    );
    expect(
        &format!(
            "cri_server_grpc_requests_total{}",
            rpc("ImageService/PullImage", "OK")
        ),
        1.0,
    );
    expect(
        &format!(
            "cri_server_grpc_requests_total{}",
            rpc("RuntimeService/RunPodSandbox", "OK")
        ),
        2.0,
    );
    expect("cri_server_pods{state=\"ready\",handler=\"runc\"}", 1.0);
    expect("cri_server_pods{state=\"ready\",handler=\"runsc\"}", 1.0);
    expect("cri_server_pods{state=\"notready\",handler=\"runc\"}", 0.0);
    expect(
        "cri_server_containers{state=\"running\",handler=\"runc\"}",
        1.0,
    );
    expect("cri_server_trust_decisions_total{outcome=\"trusted\"}", 1.0);
    expect(
        "cri_server_trust_decisions_total{outcome=\"untrusted\"}",
        1.0,
    );
    expect("cri_server_image_pulls_total{result=\"success\"}", 1.0);
    expect(
        "cri_server_image_pull_duration_seconds_count{result=\"success\"}",
        1.0,
    );
    expect("cri_server_image_pulls_in_flight", 0.0);
    let bytes = sample(&text, "cri_server_image_pull_bytes_total").unwrap_or(0.0);
    assert!(bytes > 500_000.0, "busybox is pulled whole: {bytes}");

    // States follow the stores at each scrape.
    daemon.remove_pod(&untrusted).await;
    let (_, text) = get(port, "/metrics").await;
    assert_eq!(
        sample(&text, "cri_server_pods{state=\"ready\",handler=\"runsc\"}"),
        Some(0.0)
    );

    let (status, _) = get(port, "/").await;
    assert_eq!(status, 404);
    let streaming_and_metrics = listening_ports(daemon.pid());
    assert!(
        streaming_and_metrics.contains(&port),
        "{streaming_and_metrics:?}"
    );
    daemon.remove_pod(&trusted).await;
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let daemon = Daemon::start("").await;
    // Only the streaming server listens.
    let ports = listening_ports(daemon.pid());
    assert_eq!(ports.len(), 1, "{ports:?}\n{}", daemon.log());
    assert!(!daemon.log().contains("metrics endpoint"));
    let out = run_cli(&["config"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("[metrics]\naddress = \"\""), "{printed}");
}

#[tokio::test]
async fn the_metrics_address_is_printed_and_a_bad_one_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let write = |address: &str| {
        let path = dir.path().join("cri-server.toml");
        std::fs::write(
            &path,
            format!(
                "socket = \"{0}/cri.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
                 [metrics]\naddress = \"{address}\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        path.to_string_lossy().into_owned()
    };
    let config = write("127.0.0.1:9090");
    let out = run_cli(&["--config", &config, "config"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("[metrics]\naddress = \"127.0.0.1:9090\"")
    );

    for bad in ["localhost:9090", "0.0.0.0:9090", "127.0.0.1:0", "127.0.0.1"] {
        let config = write(bad);
        let out = run_cli(&["--config", &config]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} started");
        assert!(stderr.contains("metrics.address"), "{bad}: {stderr}");
    }

    // A taken port stops the daemon before it makes its socket.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = write(&format!("127.0.0.1:{port}"));
    let (status, stderr) =
        tests::daemon::refused_start(std::path::Path::new(&config), "a taken metrics port").await;
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("metrics endpoint 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!dir.path().join("cri.sock").exists());
}
