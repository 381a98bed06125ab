//! critest "Networking" and issue 6: pods reach each other by IP, host ports
//! reach pods, DNS config, hostname, host network, and a clean teardown.
//! Traffic goes only to loopback and to pod addresses on the test bridge.

use cri_api::v1 as cri;
use std::time::Duration;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX, HANDLERS};

async fn daemon() -> Daemon {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    daemon
}

/// Runs a pod and returns its id and its IP, if it has one.
async fn run_pod(daemon: &Daemon, config: cri::PodSandboxConfig) -> (String, Option<String>) {
    run_pod_on(daemon, config, "").await
}

/// [`run_pod`] on `handler` (`""`: the trust policy's choice).
async fn run_pod_on(
    daemon: &Daemon,
    config: cri::PodSandboxConfig,
    handler: &str,
) -> (String, Option<String>) {
    let id = daemon.run_pod(config, handler).await;
    let status = daemon.pod_status(&id, false).await.status.unwrap();
    let ip = status.network.map(|n| n.ip).filter(|ip| !ip.is_empty());
    (id, ip)
}

async fn run(daemon: &Daemon, pod: &str, name: &str, argv: &[&str]) -> String {
    daemon
        .create_started(pod, container_config(name, BUSYBOX, argv))
        .await
}

const HTTPD: &[&str] = &[
    "sh",
    "-c",
    "mkdir -p /www && echo served-by-pod > /www/index.html && exec httpd -f -p 80 -h /www",
];

fn http_get(addr: &str) -> String {
    tests::http::get_blocking(addr)
}

#[tokio::test]
async fn pods_reach_each_other_by_ip_and_the_host_reaches_a_host_port() {
    let daemon = daemon().await;
    let mut server_config = pod_config("web");
    server_config.port_mappings = vec![
        cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 18080,
            host_ip: "127.0.0.1".into(),
        },
        // Only a container port: nothing is published, the pod still runs.
        cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 8081,
            host_port: 0,
            host_ip: String::new(),
        },
    ];
    let (server, server_ip) = run_pod(&daemon, server_config).await;
    let server_ip = server_ip.expect("the pod has an IP");
    assert!(server_ip.starts_with("10.88."), "{server_ip}");
    run(&daemon, &server, "httpd", HTTPD).await;

    let (client, client_ip) = run_pod(&daemon, pod_config("client")).await;
    assert_ne!(client_ip.as_deref(), Some(server_ip.as_str()));
    let client_ctr = run(&daemon, &client, "client", &["sleep", "600"]).await;
    let mut answer = (1, String::new());
    for _ in 0..50 {
        // busybox-static's wget crashes (static glibc); nc speaks HTTP/1.0.
        let request =
            format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {server_ip} 80 | tail -n 1");
        answer = daemon.sh(&client_ctr, &request).await;
        if answer.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, (0, "served-by-pod\n".to_string()));
    // The pod's own loopback is up (the daemon raises it when it makes the
    // namespace; the default network has no loopback plugin) and carries
    // traffic inside the pod.
    let lo = daemon
        .sh(
            &client_ctr,
            "cat /sys/class/net/lo/flags; (nc -l -p 7070 -e echo lo-ok &); sleep 0.3; nc -w 2 127.0.0.1 7070",
        )
        .await;
    assert_eq!(lo, (0, "0x9\nlo-ok\n".to_string()), "IFF_UP|IFF_LOOPBACK");

    // From the host, through the portmap plugin, on loopback.
    assert!(http_get("127.0.0.1:18080").contains("served-by-pod"));
    // And straight to the pod on the test bridge.
    assert!(http_get(&format!("{server_ip}:80")).contains("served-by-pod"));

    daemon.stop_pod(&server).await;
    // The stop returns before its CNI DEL; a new pod publishing the same
    // host port right away (kubelet recreating a sandbox) gets it: the old
    // pod's release runs first.
    let mut next_config = pod_config("web-next");
    next_config.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 80,
        host_port: 18080,
        host_ip: "127.0.0.1".into(),
    }];
    let (next, _) = run_pod(&daemon, next_config).await;
    // By the time the new pod is up, nothing of the server's network is
    // left: no IPAM reservation, no portmap rule.
    let reservation = std::path::Path::new("/var/lib/cni/networks/cri-server").join(&server_ip);
    assert!(
        !reservation.exists(),
        "{} still reserved",
        reservation.display()
    );
    let rules = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains(&server), "a rule still names the pod");
    let next_httpd = [
        "sh",
        "-c",
        "mkdir -p /www && echo served-by-next > /www/index.html && exec httpd -f -p 80 -h /www",
    ];
    run(&daemon, &next, "httpd", &next_httpd).await;
    assert!(http_get("127.0.0.1:18080").contains("served-by-next"));
    daemon.remove_pod(&next).await;
    let rules = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains("18080"),
        "the host port rule is still there"
    );
    daemon.remove_pod(&server).await;
    daemon.remove_pod(&client).await;
}

/// critest "DNS config" and "set hostname", on both handlers.
#[tokio::test]
async fn dns_config_and_hostname_reach_the_container() {
    let daemon = daemon().await;
    for handler in ["runc", "runsc"] {
        dns_and_hostname_on(&daemon, handler).await;
    }
}

async fn dns_and_hostname_on(daemon: &Daemon, handler: &str) {
    let mut config = pod_config(&format!("dnshost-{handler}"));
    config.hostname = "my-pod-host".into();
    config.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["e2e.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let pod = daemon.run_pod(config, handler).await;
    let status = daemon.pod_status(&pod, false).await.status.unwrap();
    let ip = status.network.map(|n| n.ip).filter(|ip| !ip.is_empty());
    let ctr = run(daemon, &pod, "probe", &["sleep", "600"]).await;
    let (code, resolv) = daemon.sh(&ctr, "cat /etc/resolv.conf").await;
    assert_eq!(code, 0);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(resolv.contains("search e2e.svc.cluster.local"), "{resolv}");
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let (_, hostname) = daemon.sh(&ctr, "hostname; cat /etc/hostname").await;
    assert_eq!(hostname, "my-pod-host\nmy-pod-host\n");
    let (_, hosts) = daemon.sh(&ctr, "cat /etc/hosts").await;
    assert!(
        hosts.contains(&format!("{}\tmy-pod-host", ip.unwrap())),
        "{hosts}"
    );
    daemon.remove_pod(&pod).await;
}

/// On both handlers: gVisor's `--network=host` passes the host's
/// interfaces through, and the daemon names its sandbox after the node
/// (gVisor's UTS namespace is its own: it said "?" before).
#[tokio::test]
async fn a_host_network_pod_sees_the_host_interfaces() {
    for handler in HANDLERS {
        a_host_network_pod_sees_the_host_interfaces_on(handler).await;
    }
}

async fn a_host_network_pod_sees_the_host_interfaces_on(handler: &str) {
    let daemon = daemon().await;
    let mut config = pod_config("hostnet");
    config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let (pod, ip) = run_pod_on(&daemon, config, handler).await;
    assert_eq!(ip, None, "host-network pods get no pod IP from CNI");
    let ctr = run(&daemon, &pod, "probe", &["sleep", "600"]).await;
    // Other tests' pods add and remove host-side veths meanwhile: compare
    // the interfaces that stay.
    let steady = |dev: &str| -> Vec<String> {
        let mut names: Vec<String> = dev
            .lines()
            .skip(2)
            .filter_map(|l| Some(l.split(':').next()?.trim().to_string()))
            .filter(|n| !n.starts_with("veth"))
            .collect();
        names.sort();
        names
    };
    let (_, inside) = daemon.sh(&ctr, "cat /proc/net/dev").await;
    let host = steady(&std::fs::read_to_string("/proc/net/dev").unwrap());
    assert!(host.len() > 1, "the host has more than lo: {host:?}");
    assert_eq!(steady(&inside), host, "{handler}");
    let (_, hostname) = daemon.sh(&ctr, "hostname").await;
    assert_eq!(
        hostname.trim(),
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "{handler}"
    );
    daemon.remove_pod(&pod).await;
}

#[tokio::test]
async fn network_ready_follows_the_config_directory() {
    let conf = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&format!(
        "[network]\nconf_dir = \"{}\"\n",
        conf.path().display()
    ))
    .await;
    let ready = |status: cri::StatusResponse| {
        let c = status
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .unwrap();
        (c.status, c.reason)
    };
    let status = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let (is_ready, reason) = ready(status);
    assert!(!is_ready);
    assert!(!reason.is_empty());
    std::fs::copy(
        "/etc/cni/net.d/10-cri-server.conflist",
        conf.path().join("10-test.conflist"),
    )
    .expect("cargo xtask setup writes the default network");
    let mut became_ready = false;
    for _ in 0..50 {
        let status = daemon
            .runtime()
            .await
            .status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        if ready(status).0 {
            became_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(became_ready, "NetworkReady never turned true");
}

/// critest "Multiple Containers": two containers of one pod each take exec,
/// each keep their own log, and share the pod's network (localhost), the
/// server on port 80 as critest's; on both handlers.
#[tokio::test]
async fn multiple_containers_in_a_pod_share_its_network_and_keep_their_own_logs() {
    let daemon = daemon().await;
    for handler in ["runc", "runsc"] {
        multiple_containers_on(&daemon, handler).await;
    }
}

async fn multiple_containers_on(daemon: &Daemon, handler: &str) {
    let logs = tempfile::tempdir().unwrap();
    let mut config = pod_config(&format!("multi-{handler}"));
    config.log_directory = logs.path().to_string_lossy().into_owned();
    let pod = daemon.run_pod(config, handler).await;
    let mut web = container_config(
        "web",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "echo web-started; mkdir -p /www && echo served-by-neighbour > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
    );
    web.log_path = "web.log".into();
    let web = daemon.create_started(&pod, web).await;
    let mut client = container_config(
        "client",
        BUSYBOX,
        &["sh", "-c", "echo client-started; sleep 600"],
    );
    client.log_path = "client.log".into();
    let client = daemon.create_started(&pod, client).await;

    assert_eq!(daemon.sh(&web, "echo in-web").await, (0, "in-web\n".into()));
    assert_eq!(
        daemon.sh(&client, "echo in-client").await,
        (0, "in-client\n".into())
    );
    // Through the pod's shared loopback, from one container to the other.
    let mut answer = (1, String::new());
    for _ in 0..50 {
        answer = daemon
            .sh(
                &client,
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 80 | tail -n 1",
            )
            .await;
        if answer.0 == 0 && !answer.1.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answer,
        (0, "served-by-neighbour\n".to_string()),
        "{handler}"
    );
    // Each log holds its own container's output and nothing of the other's.
    for (id, file, mine, theirs) in [
        (&web, "web.log", "web-started", "client-started"),
        (&client, "client.log", "client-started", "web-started"),
    ] {
        let status = daemon.container_status(id).await;
        assert_eq!(status.log_path, logs.path().join(file).to_string_lossy());
        let text = std::fs::read_to_string(logs.path().join(file)).unwrap();
        assert!(text.contains(&format!("stdout F {mine}")), "{text}");
        assert!(!text.contains(theirs), "{text}");
    }
    daemon.remove_pod(&pod).await;
}

/// A CNI chain that fails halfway: RunPodSandbox fails and leaves nothing,
/// although the infra container was started beside the ADD.
#[tokio::test]
async fn a_failing_network_chain_fails_the_pod_and_leaves_nothing() {
    let conf = tempfile::tempdir().unwrap();
    let network = "cri-server-failtest";
    std::fs::write(
        conf.path().join("10-fail.conflist"),
        format!(
            r#"{{"cniVersion": "1.0.0", "name": "{network}", "plugins": [
                {{"type": "bridge", "bridge": "cni-ft0", "isGateway": true,
                  "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.99.7.0/24"}}]]}}}},
                {{"type": "cri-server-no-such-plugin"}}
            ]}}"#
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&format!(
        "[network]\nconf_dir = \"{}\"\n",
        conf.path().display()
    ))
    .await;
    daemon.pull(BUSYBOX).await;
    let err = daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("netfail")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("cri-server-no-such-plugin"),
        "the error names the plugin: {err:?}"
    );
    let pods = daemon.list_pods().await;
    assert!(pods.is_empty(), "{pods:?}");
    // No infra container, pin, IP reservation or monitor is left.
    let runc_root = daemon.dir().join("state/runtimes/runc");
    let listed = std::process::Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "");
    let pins: Vec<_> = std::fs::read_dir(daemon.dir().join("state/netns"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(pins.is_empty(), "{pins:?}");
    let reservations: Vec<_> = std::fs::read_dir(format!("/var/lib/cni/networks/{network}"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("10."))
                .collect()
        })
        .unwrap_or_default();
    assert!(reservations.is_empty(), "{reservations:?}");
    let monitors = std::process::Command::new("pgrep")
        .args(["-f", &format!("oci-monitor.*{}", daemon.dir().display())])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&monitors.stdout).trim(), "");
    // The name is free again: the same pod runs once the network is fixed.
    std::fs::remove_file(conf.path().join("10-fail.conflist")).unwrap();
    std::fs::copy(
        "/etc/cni/net.d/10-cri-server.conflist",
        conf.path().join("10-good.conflist"),
    )
    .unwrap();
    let mut ran = None;
    for _ in 0..50 {
        let attempt = daemon
            .runtime()
            .await
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config("netfail")),
                runtime_handler: String::new(),
            })
            .await;
        if let Ok(r) = attempt {
            ran = Some(r.into_inner().pod_sandbox_id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = ran.expect("the pod runs on the fixed network");
    daemon.remove_pod(&id).await;
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "cni-ft0"])
        .status();
}
