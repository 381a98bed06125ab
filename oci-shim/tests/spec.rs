//! The OCI config we generate, checked from inside real runc containers
//! (needs root and runc).

mod common;

use common::*;
use oci_shim::runtime::OciRuntime;
use oci_shim::spec::{MountSpec, NamespaceKind, NamespaceSpec, Propagation};

/// Runs `script` in a container built from `spec` tweaks and returns its stdout lines.
async fn output_of(
    h: &Harness,
    id: &str,
    spec: &oci_shim::spec::ContainerSpec,
) -> (i32, Vec<String>) {
    let m = h.spawn(id, spec).await.unwrap();
    m.start().await.unwrap();
    let exit = m.wait().await.unwrap();
    let lines = h
        .log_entries(id)
        .into_iter()
        .filter(|e| e.0 == "stdout")
        .map(|e| e.2)
        .collect();
    (exit.exit_code, lines)
}

#[tokio::test]
async fn security_and_filesystem_settings_apply() {
    let h = Harness::runc();
    let id = h.id("fullspec");
    let shared = h.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("hello"), "from-host\n").unwrap();
    let script = "touch /rootfs-write 2>/dev/null && echo rw || echo ro; \
                  cat /data/hello; \
                  cat /proc/uptime | wc -c; \
                  echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-rw || echo sys-ro; \
                  cat /proc/sys/net/ipv4/ip_unprivileged_port_start; \
                  hostname; id -u; id -G; echo $GREETING; pwd; ulimit -n; \
                  grep NoNewPrivs /proc/self/status | tr -d '\\t'";
    let mut spec = h.spec(&id, &["sh", "-c", script]);
    spec.root.readonly = true;
    spec.hostname = Some("pod-host".into());
    spec.mounts.push(MountSpec {
        destination: "/data".into(),
        kind: "bind".into(),
        source: shared.to_string_lossy().into_owned(),
        options: vec!["rbind".into(), "ro".into()],
        propagation: Some(Propagation::HostToContainer),
    });
    spec.masked_paths = vec!["/proc/uptime".into()];
    spec.readonly_paths = vec!["/proc/sys".into()];
    spec.sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "80".into());
    spec.process.user.uid = 1234;
    spec.process.user.gid = 2345;
    spec.process.user.additional_gids = vec![3456];
    spec.process.env.push("GREETING=hi-there".into());
    spec.process.cwd = "/tmp".into();
    spec.process.no_new_privileges = true;
    spec.process.rlimits = vec![oci_shim::spec::RlimitSpec {
        kind: oci_spec::runtime::PosixRlimitType::RlimitNofile,
        soft: 321,
        hard: 321,
    }];
    let (code, out) = output_of(&h, &id, &spec).await;
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(
        out,
        [
            "ro",
            "from-host",
            "0",
            "sys-ro",
            "80",
            "pod-host",
            "1234",
            "2345 3456",
            "hi-there",
            "/tmp",
            "321",
            "NoNewPrivs:1"
        ],
    );
}

#[tokio::test]
async fn namespaces_joined_by_path_are_shared() {
    let h = Harness::runc();
    let pod = h.id("podinfra");
    let mut spec = h.spec(&pod, &["sleep", "1000"]);
    spec.hostname = Some("the-pod".into());
    let pm = h.spawn(&pod, &spec).await.unwrap();
    pm.start().await.unwrap();
    let ns =
        |kind: &str| std::fs::read_link(format!("/proc/{}/ns/{kind}", pm.container_pid())).unwrap();

    let app = h.id("podapp");
    let mut spec = h.spec(
        &app,
        &[
            "sh",
            "-c",
            "for n in net ipc uts; do readlink /proc/self/ns/$n; done; hostname",
        ],
    );
    spec.namespaces = vec![
        NamespaceSpec {
            kind: NamespaceKind::Mount,
            path: None,
        },
        NamespaceSpec {
            kind: NamespaceKind::Pid,
            path: None,
        },
    ];
    for (kind, name) in [
        (NamespaceKind::Network, "net"),
        (NamespaceKind::Ipc, "ipc"),
        (NamespaceKind::Uts, "uts"),
    ] {
        spec.namespaces.push(NamespaceSpec {
            kind,
            path: Some(format!("/proc/{}/ns/{name}", pm.container_pid()).into()),
        });
    }
    let (code, out) = output_of(&h, &app, &spec).await;
    assert_eq!(code, 0, "{out:?}");
    let want: Vec<String> = ["net", "ipc", "uts"]
        .iter()
        .map(|k| ns(k).to_string_lossy().into_owned())
        .chain(["the-pod".to_owned()])
        .collect();
    assert_eq!(out, want);
    h.runtime.kill(&pod, libc::SIGKILL, false).await.unwrap();
    assert_eq!(pm.wait().await.unwrap().exit_code, 137);
}
