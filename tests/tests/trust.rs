//! The trust policy end to end: which runtime a pod's containers really run
//! on. gVisor reports its own kernel version (4.4.0) from `uname -r`, which is
//! how a test proves a container is sandboxed.

use cri_api::v1 as cri;
use std::collections::HashMap;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX};
use tonic::Code;

const HINT: &str = "io.kubernetes.cri-o.TrustedSandbox";

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
}

struct Pod {
    id: String,
    handler: String,
    reason: String,
}

async fn run_pod(
    daemon: &Daemon,
    name: &str,
    annotations: &[(&str, &str)],
    privileged: bool,
    handler: &str,
) -> Result<Pod, tonic::Status> {
    let mut rt = daemon.runtime().await;
    let mut config = pod_config(name);
    config.annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<HashMap<_, _>>();
    config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            privileged,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: handler.to_string(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: true,
        })
        .await?
        .into_inner();
    Ok(Pod {
        id,
        handler: status.status.unwrap().runtime_handler,
        reason: status.info.get("trust").cloned().unwrap_or_default(),
    })
}

/// Runs a busybox container in `pod` and returns what `uname -r` prints in it.
async fn kernel_inside(daemon: &Daemon, pod: &Pod) -> String {
    daemon.pull(BUSYBOX).await;
    let ctr = daemon
        .create_started(
            &pod.id,
            container_config("probe", BUSYBOX, &["sleep", "600"]),
        )
        .await;
    let (code, out) = daemon.sh(&ctr, "uname -r").await;
    assert_eq!(code, 0, "{out}");
    out.trim().to_string()
}

async fn remove(daemon: &Daemon, pod: &Pod) {
    daemon.remove_pod(&pod.id).await;
}

#[tokio::test]
async fn untrusted_annotation_runs_the_pod_in_gvisor() {
    let daemon = Daemon::start("").await;
    let pod = run_pod(&daemon, "untrusted", &[(HINT, "false")], false, "")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    assert_eq!(pod.handler, "runsc");
    assert!(pod.reason.contains("\"trusted\":false"), "{}", pod.reason);
    let kernel = kernel_inside(&daemon, &pod).await;
    assert_ne!(
        kernel,
        host_kernel(),
        "a runsc container must not see the host kernel"
    );
    assert_eq!(kernel, "4.4.0");
    remove(&daemon, &pod).await;
}

#[tokio::test]
async fn a_pod_without_a_hint_runs_on_runc() {
    let daemon = Daemon::start("").await;
    let pod = run_pod(&daemon, "trusted", &[], false, "").await.unwrap();
    assert_eq!(pod.handler, "runc");
    assert_eq!(kernel_inside(&daemon, &pod).await, host_kernel());
    remove(&daemon, &pod).await;
}

#[tokio::test]
async fn untrusted_by_default_except_privileged_pods() {
    let daemon = Daemon::start("[runtime]\ndefault_workload_trust = \"untrusted\"\n").await;
    let ordinary = run_pod(&daemon, "ordinary", &[], false, "").await.unwrap();
    assert_eq!(ordinary.handler, "runsc", "{}", ordinary.reason);
    assert_eq!(kernel_inside(&daemon, &ordinary).await, "4.4.0");
    let privileged = run_pod(&daemon, "privileged", &[], true, "").await.unwrap();
    assert_eq!(privileged.handler, "runc", "{}", privileged.reason);
    remove(&daemon, &ordinary).await;
    remove(&daemon, &privileged).await;
}

#[tokio::test]
async fn privileged_untrusted_pod_is_rejected_under_reject() {
    let daemon = Daemon::start("[runtime]\nprivileged_untrusted = \"reject\"\n").await;
    let err = run_pod(&daemon, "rejected", &[(HINT, "false")], true, "")
        .await
        .err()
        .expect("a privileged untrusted pod must be refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("privileged"), "{err}");
    assert!(err.message().contains(HINT), "{err}");
    // Nothing is left of it.
    let pods = daemon.list_pods().await;
    assert!(pods.is_empty());
}

#[tokio::test]
async fn privileged_untrusted_pod_falls_back_to_runc_by_default() {
    let daemon = Daemon::start("").await;
    let pod = run_pod(&daemon, "fallback", &[(HINT, "false")], true, "")
        .await
        .unwrap();
    assert_eq!(pod.handler, "runc");
    assert!(pod.reason.contains("privileged"), "{}", pod.reason);
    remove(&daemon, &pod).await;
}

#[tokio::test]
async fn runtime_handler_selects_runsc_and_unknown_is_refused() {
    let daemon = Daemon::start("").await;
    let pod = run_pod(&daemon, "by-class", &[], false, "runsc")
        .await
        .unwrap();
    assert_eq!(pod.handler, "runsc");
    assert_eq!(kernel_inside(&daemon, &pod).await, "4.4.0");
    remove(&daemon, &pod).await;

    let err = run_pod(&daemon, "unknown", &[], false, "kata")
        .await
        .err()
        .expect("an unknown handler must be refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("runc") && err.message().contains("runsc"),
        "{err}"
    );
}

#[tokio::test]
async fn a_garbage_hint_is_refused() {
    let daemon = Daemon::start("").await;
    let err = run_pod(&daemon, "garbage", &[(HINT, "perhaps")], false, "")
        .await
        .err()
        .expect("a hint other than true/false must be refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

/// Issue #14: a pod author cannot leave the sandbox by annotating the pod
/// trusted; under the untrusted default it still runs in gVisor.
#[tokio::test]
async fn a_trusted_hint_cannot_lift_the_untrusted_default() {
    let daemon = Daemon::start("[runtime]\ndefault_workload_trust = \"untrusted\"\n").await;
    for hint in [HINT, "io.cri-server.trusted-sandbox"] {
        let pod = run_pod(&daemon, "escapee", &[(hint, "true")], false, "")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
        assert_eq!(pod.handler, "runsc", "{hint}: {}", pod.reason);
        assert!(pod.reason.contains("cannot lift"), "{}", pod.reason);
        // The daemon's word is not enough: the container sees gVisor's kernel.
        assert_eq!(kernel_inside(&daemon, &pod).await, "4.4.0", "{hint}");
        remove(&daemon, &pod).await;
    }
    // A RuntimeClass (the cluster administrator's) still selects runc.
    let by_class = run_pod(&daemon, "by-class", &[], false, "runc")
        .await
        .unwrap();
    assert_eq!(by_class.handler, "runc");
    assert_eq!(kernel_inside(&daemon, &by_class).await, host_kernel());
    remove(&daemon, &by_class).await;
}

/// Issue #14: `runtime_handler: runc` with `TrustedSandbox: "false"` used to
/// run on runc with the hint ignored; the contradiction is refused now.
#[tokio::test]
async fn a_runtime_class_contradicting_an_untrusted_hint_is_refused() {
    let daemon = Daemon::start("").await;
    let err = run_pod(&daemon, "contradiction", &[(HINT, "false")], false, "runc")
        .await
        .err()
        .expect("runc requested by a pod annotated untrusted must be refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    for needle in ["\"runc\"", HINT, "\"runsc\""] {
        assert!(err.message().contains(needle), "{needle}: {err}");
    }
    assert!(daemon.list_pods().await.is_empty());
    // The untrusted handler by name agrees with the hint, and runs in gVisor.
    let agreed = run_pod(&daemon, "agreed", &[(HINT, "false")], false, "runsc")
        .await
        .unwrap();
    assert_eq!(agreed.handler, "runsc");
    assert_eq!(kernel_inside(&daemon, &agreed).await, "4.4.0");
    remove(&daemon, &agreed).await;
}
