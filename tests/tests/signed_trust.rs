//! Trust from evidence end to end (issue #17): under
//! `[runtime] trusted_images = "verified"`, only images a `sigstoreSigned`
//! requirement verified at pull run outside the sandbox, and that evidence
//! lets a `true` hint lift an untrusted default. Each row is proven by what
//! the container sees, not by the daemon's word: gVisor answers `uname -r`
//! with 4.4.0, runc with the host's kernel.
//!
//! Images: `registry.k8s.io/signed/good` is signed by the fixture key
//! (`cargo xtask fixtures`); busybox lies outside the policy's signed scope
//! and is accepted by `insecureAcceptAnything`, which is not evidence.

use cri_api::v1 as cri;
use std::collections::HashMap;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX};
use tonic::Code;

const HINT: &str = "io.kubernetes.cri-o.TrustedSandbox";
const SIGNED: &str = "registry.k8s.io/signed/good:latest";
const SIGNING_KEY: &str = "/var/lib/cri-server-fixtures/signing/cosign.pub";

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
}

/// A daemon whose signature policy requires the fixture key's signature
/// for `registry.k8s.io/signed` and accepts anything else, with
/// `trusted_images = "verified"` and the given default trust; the policy
/// lives as long as the directory returned with it.
async fn daemon(default_trust: &str) -> (Daemon, tempfile::TempDir) {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("policy.json");
    let json = serde_json::json!({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {"registry.k8s.io/signed": [{
            "type": "sigstoreSigned",
            "keyPath": SIGNING_KEY,
            "signedIdentity": {"type": "matchRepository"}
        }]}}
    });
    std::fs::write(&policy, json.to_string()).unwrap();
    let daemon = Daemon::start(&format!(
        "[image]\nsignature_policy = {:?}\n[runtime]\ntrusted_images = \"verified\"\n\
         default_workload_trust = {default_trust:?}\n",
        policy.display().to_string()
    ))
    .await;
    daemon.pull(SIGNED).await;
    daemon.pull(BUSYBOX).await;
    (daemon, policy_dir)
}

/// Runs a pod with `annotations` (and privileged when asked) and returns
/// its id and handler.
async fn pod(
    daemon: &Daemon,
    name: &str,
    hint: Option<&str>,
    privileged: bool,
) -> (String, String) {
    let mut config = pod_config(name);
    config.annotations = hint
        .map(|v| (HINT.to_string(), v.to_string()))
        .into_iter()
        .collect::<HashMap<_, _>>();
    config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            privileged,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = daemon.run_pod(config, "").await;
    let status = daemon.pod_status(&id, false).await;
    (id, status.status.unwrap().runtime_handler)
}

/// Creates and starts a container of `image` in `pod`; on success, what
/// `uname -r` prints in it.
async fn kernel_of(
    daemon: &Daemon,
    pod: &str,
    name: &str,
    image: &str,
) -> Result<String, tonic::Status> {
    let mut rt = daemon.runtime().await;
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(container_config(name, image, &["sleep", "600"])),
            sandbox_config: None,
        })
        .await?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await?;
    let (code, out) = daemon.sh(&id, "uname -r").await;
    assert_eq!(code, 0, "{out}");
    Ok(out.trim().to_string())
}

/// What PodSandboxStatus's verbose `trust` info says of the pod's
/// containers.
async fn container_trust(daemon: &Daemon, pod: &str) -> Vec<serde_json::Value> {
    let status = daemon.pod_status(pod, true).await;
    let info: serde_json::Value = serde_json::from_str(&status.info["trust"]).unwrap();
    info["containers"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn on_the_trusted_handler_only_signed_images_run() {
    let (daemon, _policy) = daemon("trusted").await;
    let (pod, handler) = pod(&daemon, "trusted", None, false).await;
    assert_eq!(handler, "runc");

    assert_eq!(
        kernel_of(&daemon, &pod, "signed", SIGNED).await.unwrap(),
        host_kernel()
    );
    let refused = kernel_of(&daemon, &pod, "unsigned", BUSYBOX)
        .await
        .expect_err("an unsigned image must not run on runc");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
    for part in [
        BUSYBOX,
        "handler runc",
        "trusted_images=verified",
        "sign it",
    ] {
        assert!(refused.message().contains(part), "{part}: {refused}");
    }

    let containers = container_trust(&daemon, &pod).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["verified"], true, "{containers:?}");
    let evidence = containers[0]["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("registry.k8s.io/signed/good"),
        "{evidence}"
    );
    daemon.remove_pod(&pod).await;
}

#[tokio::test]
async fn in_the_sandbox_unsigned_images_run() {
    let (daemon, _policy) = daemon("trusted").await;
    let (pod, handler) = pod(&daemon, "sandboxed", Some("false"), false).await;
    assert_eq!(handler, "runsc");
    assert_eq!(
        kernel_of(&daemon, &pod, "unsigned", BUSYBOX).await.unwrap(),
        "4.4.0"
    );
    let containers = container_trust(&daemon, &pod).await;
    assert_eq!(containers[0]["verified"], false, "{containers:?}");
    let reason = containers[0]["reason"].as_str().unwrap();
    assert!(reason.contains("sandbox (runsc)"), "{reason}");
    daemon.remove_pod(&pod).await;
}

#[tokio::test]
async fn a_true_hint_with_verified_images_lifts_the_untrusted_default() {
    let (daemon, _policy) = daemon("untrusted").await;
    let (hinted, handler) = pod(&daemon, "hinted", Some("true"), false).await;
    assert_eq!(handler, "runc");
    assert_eq!(
        kernel_of(&daemon, &hinted, "signed", SIGNED).await.unwrap(),
        host_kernel()
    );
    let refused = kernel_of(&daemon, &hinted, "unsigned", BUSYBOX)
        .await
        .expect_err("the hint admits signed images only");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");

    // Without the hint the default holds: gVisor, any image.
    let (plain, handler) = pod(&daemon, "plain", None, false).await;
    assert_eq!(handler, "runsc");
    assert_eq!(
        kernel_of(&daemon, &plain, "unsigned", BUSYBOX)
            .await
            .unwrap(),
        "4.4.0"
    );
    daemon.remove_pod(&hinted).await;
    daemon.remove_pod(&plain).await;
}

#[tokio::test]
async fn a_privileged_pod_on_runc_needs_signed_images_too() {
    let (daemon, _policy) = daemon("untrusted").await;
    // Privileged pods cannot be sandboxed: they land on runc, and runc
    // runs only what signatures vouch for.
    let (pod, handler) = pod(&daemon, "privileged", None, true).await;
    assert_eq!(handler, "runc");
    let refused = kernel_of(&daemon, &pod, "unsigned", BUSYBOX)
        .await
        .expect_err("an unsigned image must not run on runc");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
    assert_eq!(
        kernel_of(&daemon, &pod, "signed", SIGNED).await.unwrap(),
        host_kernel()
    );
    daemon.remove_pod(&pod).await;
}
