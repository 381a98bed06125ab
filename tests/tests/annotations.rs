//! Annotations reach the OCI runtime only when the handler allows them
//! (issue #14): a pod author's `dev.gvisor.*` (runsc's sandbox mounts and
//! flags) or `org.systemd.property.*` (systemd, through runc) stays out of
//! `config.json` unless `[runtime.handlers.NAME] allowed_annotations` lets it
//! in; the daemon's own annotations, by which runsc groups a pod's
//! containers, are always there.

use serde_json::Value;
use std::collections::HashMap;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX};

const HOSTILE: [(&str, &str); 2] = [
    ("dev.gvisor.spec.mount.hostroot.source", "/"),
    ("org.systemd.property.SuccessAction", "'poweroff-force'"),
];
const BENIGN: (&str, &str) = ("team.example.com/owner", "e2e");

fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn bundle_annotations(daemon: &Daemon, kind: &str, id: &str) -> serde_json::Map<String, Value> {
    let path = daemon
        .dir()
        .join("state")
        .join(kind)
        .join(id)
        .join("bundle/config.json");
    let config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// Runs a pod on `handler` and one container in it, both annotated with the
/// hostile and the benign keys; returns the annotations of both bundles.
async fn annotated_pod(
    daemon: &Daemon,
    handler: &str,
) -> (
    serde_json::Map<String, Value>,
    serde_json::Map<String, Value>,
) {
    daemon.pull(BUSYBOX).await;
    let mut all = HOSTILE.to_vec();
    all.push(BENIGN);
    let mut config = pod_config(&format!("annotated-{handler}"));
    config.annotations = annotations(&all);
    let pod = daemon.run_pod(config, handler).await;
    let mut ctr = container_config("probe", BUSYBOX, &["sleep", "60"]);
    ctr.annotations = annotations(&all);
    let ctr = daemon.create_started(&pod, ctr).await;
    // Still one working pod: the container joined the pod's sandbox.
    let (code, out) = daemon.sh(&ctr, "echo ok").await;
    assert_eq!((code, out.trim()), (0, "ok"));
    let found = (
        bundle_annotations(daemon, "p", &pod),
        bundle_annotations(daemon, "c", &ctr),
    );
    daemon.remove_pod(&pod).await;
    found
}

#[tokio::test]
async fn no_pod_annotation_reaches_the_runtime_by_default() {
    let daemon = Daemon::start("").await;
    for handler in ["runsc", "runc"] {
        let (pod, ctr) = annotated_pod(&daemon, handler).await;
        for (key, _) in HOSTILE.iter().chain([&BENIGN]) {
            assert!(
                !pod.contains_key(*key),
                "{handler}: pod bundle has {key}: {pod:?}"
            );
            assert!(
                !ctr.contains_key(*key),
                "{handler}: container bundle has {key}: {ctr:?}"
            );
        }
        // Our own annotations are always set.
        assert_eq!(
            pod["io.kubernetes.cri.container-type"], "sandbox",
            "{pod:?}"
        );
        assert_eq!(
            ctr["io.kubernetes.cri.container-type"], "container",
            "{ctr:?}"
        );
        assert!(ctr.contains_key("io.kubernetes.cri.sandbox-id"), "{ctr:?}");
    }
}

#[tokio::test]
async fn allowed_annotations_let_only_the_listed_keys_through() {
    let daemon = Daemon::start(
        "[runtime.handlers.runc]\n\
         path = \"/usr/sbin/runc\"\n\
         [runtime.handlers.runsc]\n\
         path = \"/usr/bin/runsc\"\n\
         args = [\"--network=host\", \"--platform=ptrace\"]\n\
         allowed_annotations = [\"team.example.com/*\"]\n",
    )
    .await;
    let (pod, ctr) = annotated_pod(&daemon, "runsc").await;
    for bundle in [&pod, &ctr] {
        assert_eq!(bundle[BENIGN.0], BENIGN.1, "{bundle:?}");
        for (key, _) in HOSTILE {
            assert!(!bundle.contains_key(key), "{key}: {bundle:?}");
        }
    }
    // runc allows nothing: the list is per handler.
    let (pod, ctr) = annotated_pod(&daemon, "runc").await;
    assert!(!pod.contains_key(BENIGN.0) && !ctr.contains_key(BENIGN.0));
}
