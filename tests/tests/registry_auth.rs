//! Registry credentials, blocked registries and per-registry TLS through
//! the real daemon (issue #19): kubelet's identity token exchanged at the
//! registry's token realm; `[image] auth_file` used, and read again by a
//! reload; a blocked registry refused before any connection; a registry
//! with a private CA and client certificates reached with the entry's
//! `ca_file`, `cert_file` and `key_file`. Every registry here is a front
//! on loopback for the fixture registry (`tests::registry_front`).

use cri_api::v1 as cri;
use std::time::Duration;
use tests::daemon::{refused_start, test_config, Daemon};
use tests::fixtures::{image_spec, BUSYBOX};
use tests::registry_front::{counting_listener, Front, TestPki};
use tonic::Code;

/// The refresh token the fronts accept.
const REFRESH: &str = "refresh-s3cret-e2e";
/// A refresh token no front accepts.
const WRONG: &str = "wrong-s3cret-e2e";

/// `registry.k8s.io` mirrored to `front` only, with `extra` keys in its
/// entry.
fn mirror(front: &str, extra: &str) -> String {
    format!(
        "[[image.registries]]\nprefix = \"registry.k8s.io\"\nmirrors = [\"{front}\"]\n\
         mirrors_only = true\n{extra}\n"
    )
}

/// Pulls `image` with `auth`: the status when refused.
async fn pull(
    daemon: &Daemon,
    image: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<(), tonic::Status> {
    daemon
        .images()
        .await
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(drop)
}

fn identity(token: &str) -> Option<cri::AuthConfig> {
    Some(cri::AuthConfig {
        identity_token: token.into(),
        ..Default::default()
    })
}

/// An auth file giving `front` the identity token `token`.
fn auth_json(front: &str, token: &str) -> String {
    serde_json::json!({"auths": {front: {"identitytoken": token}}}).to_string()
}

/// Sends SIGHUP and waits for the daemon's answer number `seen` (from 0)
/// that contains `expect`; returns that log line.
async fn reload(daemon: &Daemon, expect: &str) -> String {
    let seen = daemon.log().matches(expect).count();
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    daemon.wait_for_log(expect, seen).await
}

fn assert_no_secret(text: &str) {
    for secret in [REFRESH, WRONG, "file-one-s3cret", "file-two-s3cret"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
}

#[tokio::test]
async fn kubelets_identity_token_is_exchanged_at_the_realm() {
    let front = Front::with_token(REFRESH).await;
    let daemon = Daemon::start(&mirror(front.address(), "insecure = true")).await;
    let refused = pull(&daemon, BUSYBOX, identity(WRONG))
        .await
        .expect_err("a wrong identity token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let message = refused.message();
    assert!(message.contains(front.address()), "{message}");
    assert!(
        message.contains("credentials refused (status 401)"),
        "{message}"
    );
    assert_eq!(front.granted(), 0);
    pull(&daemon, BUSYBOX, identity(REFRESH))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    assert!(front.granted() >= 1);
    assert_no_secret(&format!("{message}\n{}", daemon.log()));
}

#[tokio::test]
async fn the_auth_file_gives_credentials_and_a_reload_reads_it_again() {
    let front = Front::with_token("file-one-s3cret").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    std::fs::write(&path, auth_json(front.address(), "file-one-s3cret")).unwrap();
    let config = format!(
        "[image]\nauth_file = {:?}\n{}",
        path.display().to_string(),
        mirror(front.address(), "insecure = true")
    );
    let daemon = Daemon::start(&config).await;
    pull(&daemon, BUSYBOX, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));

    // The registry rotates the token: the file's is refused now.
    front.set_refresh_token("file-two-s3cret");
    let refused = pull(&daemon, BUSYBOX, None)
        .await
        .expect_err("a stale token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // A malformed file fails the reload, naming it; the old one stays.
    std::fs::write(&path, "{\"auths\": {\"x\": \"file-two-s3cret\"}}").unwrap();
    let line = reload(&daemon, "configuration not reloaded").await;
    assert!(line.contains("image.auth_file"), "{line}");
    assert!(line.contains(&path.display().to_string()), "{line}");

    std::fs::write(&path, auth_json(front.address(), "file-two-s3cret")).unwrap();
    reload(&daemon, "configuration reloaded").await;
    pull(&daemon, BUSYBOX, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    assert_no_secret(&daemon.log());
}

#[tokio::test]
async fn a_malformed_auth_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    std::fs::write(
        &path,
        "{\"auths\": {\"r.example\": {\"auth\": \"file-one-s3cret\"}}}",
    )
    .unwrap();
    let config_path = dir.path().join("cri-server.toml");
    let extra = format!("[image]\nauth_file = {:?}\n", path.display().to_string());
    std::fs::write(&config_path, test_config(dir.path(), &extra)).unwrap();
    let (status, stderr) = refused_start(&config_path, "a malformed auth file").await;
    assert!(!status.success());
    for part in ["image.auth_file", &path.display().to_string(), "auth field"] {
        assert!(stderr.contains(part), "{part:?} not in {stderr}");
    }
    assert_no_secret(&stderr);
}

#[tokio::test]
async fn a_blocked_registry_is_refused_before_any_connection() {
    let (address, connections) = counting_listener().await;
    let config =
        format!("[[image.registries]]\nprefix = \"{address}\"\ninsecure = true\nblocked = true\n");
    let daemon = Daemon::start(&config).await;
    let image = format!("{address}/team/app:1");
    let refused = pull(&daemon, &image, None).await.expect_err("blocked");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("is blocked"), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_private_ca_and_a_client_certificate_reach_a_tls_registry() {
    let pki = TestPki::new();
    let front = Front::with_tls(pki.acceptor(true)).await;
    let ca = format!("ca_file = {}", pki.path("ca.pem"));
    let daemon = Daemon::start(&mirror(front.address(), &ca)).await;
    // The CA is trusted, but the registry wants a client certificate.
    let refused = pull(&daemon, BUSYBOX, None)
        .await
        .expect_err("no client certificate");
    assert!(
        refused
            .message()
            .contains(&format!("https://{}/", front.address())),
        "{refused:?}"
    );

    // A drop-in adds it to the same entry; a reload puts it in force.
    let drop_in = daemon.dir().join("config.d");
    std::fs::create_dir_all(&drop_in).unwrap();
    let client = format!(
        "[[image.registries]]\nprefix = \"registry.k8s.io\"\ncert_file = {}\nkey_file = {}\n",
        pki.path("client.pem"),
        pki.path("client-key.pem")
    );
    std::fs::write(drop_in.join("50-client-cert.toml"), client).unwrap();
    reload(&daemon, "configuration reloaded").await;
    pull(&daemon, BUSYBOX, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
}
