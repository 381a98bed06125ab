//! The pull side of issue #17 end to end: `[image] signature_policy`
//! against the signed fixtures of `cargo xtask fixtures` (cosign signatures
//! in the local registry, mirrored as `registry.k8s.io/signed/…`).
//!
//! Verified images pull and show their evidence (key fingerprint and all)
//! in ImageStatus verbose info; every bad signature is PermissionDenied
//! naming the image, the scope and the reason, and leaves nothing listed; a
//! `reject` default refuses the rest; SIGHUP reloads the policy and
//! re-evaluates what is stored (an invalid new policy leaves the old one in
//! force); a policy the daemon cannot check stops it from starting; a
//! garbage or huge signature image is refused quickly; the counts are in
//! `/metrics`.

use cri_api::v1 as cri;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::daemon::{test_config, Daemon};
use tests::fixtures::{image_spec, BUSYBOX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const KEYS: &str = "/var/lib/cri-server-fixtures/signing";
const REGISTRY: &str = "127.0.0.1:5000";
const GOOD: &str = "registry.k8s.io/signed/good:latest";
const SIGNED_SCOPE: &str = "scope \"registry.k8s.io/signed\"";

/// The policy the tests start from: the fixture key for
/// `registry.k8s.io/signed` (any identity in the repository), the Ed25519
/// key too for `signed/ed25519`, and `default` as given.
fn policy(default: &str) -> Value {
    json!({
        "default": [{"type": default}],
        "transports": {"docker": {
            "registry.k8s.io/signed": [{
                "type": "sigstoreSigned",
                "keyPath": format!("{KEYS}/cosign.pub"),
                "signedIdentity": {"type": "matchRepository"}
            }],
            "registry.k8s.io/signed/ed25519": [{
                "type": "sigstoreSigned",
                "keyPath": format!("{KEYS}/ed25519.pub"),
                "signedIdentity": {"type": "matchRepository"}
            }]
        }}
    })
}

/// A policy file in a directory of its own.
fn write_policy(policy: &Value) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(&path, policy.to_string()).unwrap();
    (dir, path)
}

/// `[image] signature_policy = <path>` plus `extra` (TOML).
fn config(path: &Path, extra: &str) -> String {
    format!(
        "{extra}\n[image]\nsignature_policy = {:?}\n",
        path.display().to_string()
    )
}

async fn try_pull(daemon: &Daemon, image: &str) -> Result<String, tonic::Status> {
    daemon
        .images()
        .await
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// The image `image` names and its verbose `signatures` info, parsed.
async fn status(daemon: &Daemon, image: &str) -> Option<(cri::Image, Value)> {
    let response = daemon
        .images()
        .await
        .image_status(cri::ImageStatusRequest {
            image: image_spec(image),
            verbose: true,
        })
        .await
        .unwrap_or_else(|e| panic!("ImageStatus {image}: {e}"))
        .into_inner();
    let image = response.image?;
    let info = &response.info["signatures"];
    let evidence = serde_json::from_str(info).unwrap_or_else(|e| panic!("{info}: {e}"));
    Some((image, evidence))
}

/// The evidence entry for `image` (as pulled).
async fn evidence(daemon: &Daemon, image: &str) -> Value {
    let (_, evidence) = status(daemon, image)
        .await
        .unwrap_or_else(|| panic!("{image} is not stored"));
    let entries = evidence.as_array().cloned().unwrap_or_default();
    entries
        .into_iter()
        .find(|e| e["reference"] == image)
        .unwrap_or_else(|| panic!("no evidence for {image} in {evidence}"))
}

async fn listed(daemon: &Daemon) -> Vec<String> {
    let images = daemon
        .images()
        .await
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    images.into_iter().flat_map(|i| i.repo_tags).collect()
}

/// `sha256:<hex>` of the SPKI DER in PEM key file `name`, as cosign and
/// image-signature print fingerprints.
fn fingerprint(name: &str) -> String {
    let pem = std::fs::read_to_string(Path::new(KEYS).join(name)).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let mut sha = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut sha.stdin.take().unwrap(), &der).unwrap();
    let out = sha.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

/// The digest `repository:tag` resolves to on the fixture registry.
async fn resolve(repository: &str, tag: &str) -> String {
    let accept =
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    let request = format!(
        "HEAD /v2/{repository}/manifests/{tag} HTTP/1.1\r\nHost: {REGISTRY}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    let (_, head) = http(REGISTRY, &request).await;
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no digest for {repository}:{tag}: {head}"))
}

/// Sends `request` to `address`; the status code and the whole answer.
async fn http(address: &str, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The value of the sample `series` on the daemon's `/metrics` at `port`.
async fn metric(port: u16, series: &str) -> Option<f64> {
    let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let (_, text) = http(&format!("127.0.0.1:{port}"), request).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn require_fixtures() {
    assert!(
        Path::new(KEYS).join("cosign.pub").exists()
            && std::net::TcpStream::connect(REGISTRY).is_ok(),
        "no fixture registry or keys: run `cargo xtask fixtures` first"
    );
}

/// Asserts `image` is refused with PermissionDenied naming it, the scope
/// `scope` and `why`, and is not stored afterwards; returns the message.
async fn assert_refused(daemon: &Daemon, image: &str, scope: &str, why: &str) -> String {
    let started = Instant::now();
    let refused = try_pull(daemon, image).await.unwrap_err();
    let message = refused.message().to_string();
    eprintln!("{image}: {:?}: {message}", refused.code());
    assert_eq!(refused.code(), Code::PermissionDenied, "{image}: {message}");
    for part in [image, scope, why] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{image}: slow refusal"
    );
    assert!(status(daemon, image).await.is_none(), "{image} is stored");
    message
}

#[tokio::test]
async fn signed_images_verify_and_each_bad_signature_is_refused_for_its_reason() {
    require_fixtures();
    let (_keep, path) = write_policy(&policy("insecureAcceptAnything"));
    let port = free_port();
    let metrics = format!("[metrics]\naddress = \"127.0.0.1:{port}\"");
    let daemon = Daemon::start(&config(&path, &metrics)).await;

    daemon.pull(GOOD).await;
    let good = evidence(&daemon, GOOD).await;
    eprintln!("{GOOD}: {good:#}");
    assert_eq!(good["verified"], true, "{good}");
    let cosign = fingerprint("cosign.pub");
    assert_eq!(
        good["detail"]["signatures"][0]["keyFingerprint"],
        cosign.as_str()
    );
    assert_eq!(
        good["digest"],
        resolve("signed/good", "latest").await.as_str()
    );
    let summary = good["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("signed by key {}", &cosign[..19]))
            && summary.contains(SIGNED_SCOPE),
        "{summary}"
    );

    let old = resolve("signed/wrong-digest", "old").await;
    let refusals = [
        (
            "signed/unsigned",
            "a signature is required, but there is none".to_string(),
        ),
        (
            "signed/other-key",
            "no signature verifies with a trusted key".to_string(),
        ),
        (
            "signed/wrong-digest",
            format!("a trusted signature is for manifest {old}, not this one"),
        ),
        (
            "signed/wrong-identity",
            "claims identity registry.k8s.io/signed/good".to_string(),
        ),
    ];
    for (repository, why) in &refusals {
        let image = format!("registry.k8s.io/{repository}:latest");
        assert_refused(&daemon, &image, SIGNED_SCOPE, why).await;
    }

    // The index's digest is what is signed and checked.
    let multi = "registry.k8s.io/signed/multi-arch:latest";
    daemon.pull(multi).await;
    let multi_evidence = evidence(&daemon, multi).await;
    assert_eq!(multi_evidence["verified"], true);
    assert_eq!(
        multi_evidence["digest"],
        resolve("signed/multi-arch", "latest").await.as_str()
    );
    let ed25519 = "registry.k8s.io/signed/ed25519:latest";
    daemon.pull(ed25519).await;
    let signature = &evidence(&daemon, ed25519).await["detail"]["signatures"][0];
    assert_eq!(signature["keyAlgorithm"], "ed25519");
    assert_eq!(
        signature["keyFingerprint"],
        fingerprint("ed25519.pub").as_str()
    );

    // Outside the signed scopes: accepted, not verified.
    daemon.pull(BUSYBOX).await;
    let open = evidence(&daemon, BUSYBOX).await;
    assert_eq!(open["verified"], false);
    assert!(
        open["summary"]
            .as_str()
            .unwrap()
            .contains("no signature checked"),
        "{open}"
    );

    let mut tags = listed(&daemon).await;
    tags.sort();
    assert_eq!(tags, [BUSYBOX, ed25519, GOOD, multi]);
    for (result, count) in [("verified", 3.0), ("accepted", 1.0), ("refused", 4.0)] {
        let series = format!("cri_server_signature_verifications_total{{result=\"{result}\"}}");
        assert_eq!(metric(port, &series).await, Some(count), "{series}");
    }
}

#[tokio::test]
async fn a_reject_default_refuses_images_outside_every_scope() {
    require_fixtures();
    let (_keep, path) = write_policy(&policy("reject"));
    let daemon = Daemon::start(&config(&path, "")).await;
    assert_refused(
        &daemon,
        BUSYBOX,
        "scope default",
        "the policy rejects this image",
    )
    .await;
    daemon.pull(GOOD).await;
}

/// Waits (at most 10 s) until `check` holds for `image`'s evidence.
async fn wait_for_evidence(daemon: &Daemon, image: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let evidence = evidence(daemon, image).await;
        if check(&evidence) {
            return evidence;
        }
        assert!(
            Instant::now() < deadline,
            "{image}: evidence stays {evidence}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hangup(daemon: &Daemon) {
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_policy_and_re_evaluates_stored_images() {
    require_fixtures();
    let (_keep, path) = write_policy(&policy("insecureAcceptAnything"));
    let mut daemon = Daemon::start(&config(&path, "")).await;
    daemon.pull(GOOD).await;
    daemon.pull(BUSYBOX).await;
    assert_eq!(evidence(&daemon, GOOD).await["verified"], true);

    let mut rejecting = policy("insecureAcceptAnything");
    rejecting["transports"]["docker"]["registry.k8s.io/signed/good"] = json!([{"type": "reject"}]);
    std::fs::write(&path, rejecting.to_string()).unwrap();
    hangup(&daemon);
    let stale = wait_for_evidence(&daemon, GOOD, |e| e["verified"] == false).await;
    let summary = stale["summary"].as_str().unwrap();
    eprintln!("{GOOD} re-evaluated: {summary}");
    assert!(
        summary.contains("the policy rejects this image"),
        "{summary}"
    );
    assert!(
        summary.contains("scope \"registry.k8s.io/signed/good\""),
        "{summary}"
    );
    assert_eq!(
        evidence(&daemon, BUSYBOX).await["verified"],
        false,
        "re-evaluated, still accepted"
    );
    // Refused from now on; the stored image stays (its evidence says why).
    assert_refused_keeps(&daemon, GOOD).await;

    // A policy that does not load leaves the one in force, and the daemon up.
    let signed_by =
        json!({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}]});
    std::fs::write(&path, signed_by.to_string()).unwrap();
    hangup(&daemon);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("configuration not reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!daemon.has_exited());
    assert_refused_keeps(&daemon, GOOD).await;

    // Back to the first policy: verified again, by pull and by re-evaluation.
    std::fs::write(&path, policy("insecureAcceptAnything").to_string()).unwrap();
    hangup(&daemon);
    wait_for_evidence(&daemon, GOOD, |e| e["verified"] == true).await;
    daemon.pull(GOOD).await;
}

/// A re-pull of the stored `image` is refused by the policy, and the image
/// stays stored with unverified evidence.
async fn assert_refused_keeps(daemon: &Daemon, image: &str) {
    let refused = try_pull(daemon, image).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("the policy rejects this image"),
        "{refused:?}"
    );
    assert_eq!(evidence(daemon, image).await["verified"], false);
}

#[tokio::test]
async fn a_policy_the_daemon_cannot_check_stops_it_from_starting() {
    let (dir, path) = write_policy(&json!({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {"quay.io": [
            {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/key.gpg"}
        ]}}
    }));
    let config_path = dir.path().join("cri-server.toml");
    std::fs::write(&config_path, test_config(dir.path(), &config(&path, ""))).unwrap();
    let (status, stderr) =
        tests::daemon::refused_start(&config_path, "a policy it cannot check").await;
    eprintln!("{stderr}");
    assert!(!status.success());
    for part in [
        "image.signature_policy",
        &path.display().to_string(),
        "signedBy",
    ] {
        assert!(stderr.contains(part), "{part:?} not in {stderr}");
    }
    assert!(!dir.path().join("cri.sock").exists(), "socket left behind");
}

/// A registry in front of the fixture one that answers every cosign
/// signature tag itself (garbage for `signed/good`, 8 MiB for the rest)
/// and passes everything else through.
async fn hostile_signatures() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(answer(client));
        }
    });
    address
}

async fn answer(mut client: tokio::net::TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let reply = if path.contains("/manifests/sha256-") && path.ends_with(".sig") {
        let body = if path.contains("signed/good") {
            b"\x00\xffnot a manifest{{{".to_vec()
        } else {
            vec![b' '; 8 * 1024 * 1024]
        };
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend(body);
        reply
    } else {
        // Passed through on a connection of its own, closed after one answer.
        let mut request: String = head
            .lines()
            .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        request.push_str("Connection: close\r\n\r\n");
        let Ok(mut upstream) = tokio::net::TcpStream::connect(REGISTRY).await else {
            return;
        };
        let mut reply = Vec::new();
        if upstream.write_all(request.as_bytes()).await.is_err()
            || upstream.read_to_end(&mut reply).await.is_err()
        {
            return;
        }
        reply
    };
    let _ = client.write_all(&reply).await;
}

#[tokio::test]
async fn a_garbage_or_huge_signature_image_is_refused_fast() {
    require_fixtures();
    let front = hostile_signatures().await;
    let (_keep, path) = write_policy(&policy("insecureAcceptAnything"));
    let registries = format!(
        "[[image.registries]]\nprefix = \"registry.k8s.io\"\nmirrors = [\"{front}\"]\n\
         insecure = true\nmirrors_only = true\n"
    );
    let extra = format!(
        "[image]\nsignature_policy = {:?}\n{registries}",
        path.display().to_string()
    );
    let daemon = Daemon::start(&extra).await;
    // The image itself comes through the front.
    daemon.pull(BUSYBOX).await;
    let garbage = assert_refused(&daemon, GOOD, SIGNED_SCOPE, "signatures could not be read").await;
    assert!(garbage.contains("not an image manifest"), "{garbage}");
    let huge = "registry.k8s.io/signed/ed25519:latest";
    let message = assert_refused(
        &daemon,
        huge,
        "scope \"registry.k8s.io/signed/ed25519\"",
        "signatures could not be read",
    )
    .await;
    assert!(
        message.contains("8388608 bytes, more than 4194304"),
        "{message}"
    );
    assert_eq!(listed(&daemon).await, [BUSYBOX]);
}
