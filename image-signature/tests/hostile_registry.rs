//! A hostile registry cannot exhaust the daemon's memory through the
//! signature check: `RegistrySource` reads every answer (signature
//! manifest, payload blob, error body, token answer) under a cap before
//! buffering it, so an endless or multi-GiB answer is refused within
//! moments, holding at most the cap.
//!
//! A fake registry on loopback streams the answers. Each case runs alone
//! (one lock for the whole file) and measures the process's peak resident
//! memory (`VmHWM`, reset through `/proc/self/clear_refs` where the kernel
//! allows it) against the resident size before it: the growth must stay
//! under [`MAX_GROWTH`], well above the 4 MiB manifest cap and far below
//! what reading any of these answers whole would take.

use image_signature::{
    ImageVerifier, Limits, PolicyVerifier, RefusalReason, RegistrySource, SignatureFault,
    SignaturePolicy, SignatureSource, SourceError, SIMPLE_SIGNING_MEDIA_TYPE,
};
use image_store::check::RegistryAuth;
use image_store::{ImageReference, RegistriesConfig, RegistryConfig};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest a hostile case may take.
const PATIENCE: Duration = Duration::from_secs(5);
/// The most the peak resident memory may grow in a hostile case.
const MAX_GROWTH: u64 = 16 << 20;
/// One piece of an endless body: JSON whitespace, which a parser reading
/// it whole would accept forever.
static PIECE: [u8; 64 << 10] = [b' '; 64 << 10];
/// The manifest digest whose signatures are asked for.
const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";

/// One hostile case at a time: the memory figures are the process's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An Ed25519 public key (PEM, base64) for policies that require
/// signatures; nothing here is signed with it.
const KEY_DATA: &str = "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUNvd0JRWURLMlZ3QXlFQUdiOUVDV21FemY2RlFickJaOXc3bHNoUWhxb3d0cmJMREZ3NHJYQXhadUU9Ci0tLS0tRU5EIFBVQkxJQyBLRVktLS0tLQo=";

/// A field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Runs `case`, returning its output, how long it took and how far the
/// peak resident memory rose above the resident size before it. The
/// caller holds [`ONE_AT_A_TIME`].
async fn measured<T>(case: impl std::future::Future<Output = T>) -> (T, Duration, u64) {
    // "5" resets VmHWM to the current resident size (Linux 4.0); where it
    // cannot, the peak so far stands, which only makes the check stricter
    // than it needs to be, never looser.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_bytes("VmRSS:");
    let start = Instant::now();
    let output = tokio::time::timeout(PATIENCE, case)
        .await
        .unwrap_or_else(|_| panic!("still reading after {PATIENCE:?}"));
    let took = start.elapsed();
    let growth = status_bytes("VmHWM:").saturating_sub(before);
    (output, took, growth)
}

/// Asserts the figures of a hostile case and prints them.
fn assert_cheap(name: &str, took: Duration, growth: u64) {
    eprintln!(
        "{name}: refused after {took:?}, peak memory +{:.1} MiB",
        growth as f64 / (1 << 20) as f64
    );
    assert!(took < PATIENCE, "{name}: {took:?}");
    assert!(
        growth < MAX_GROWTH,
        "{name}: peak memory grew {growth} bytes"
    );
}

/// How the fake registry answers one request.
enum Answer {
    /// A complete answer.
    Whole {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// 200, chunked, never ending.
    Endless { status: u16 },
    /// 200 declaring `length` bytes, then a byte every 100 ms.
    Drip { length: u64 },
}

/// The fake registry: each connection gets one answer from `route` (which
/// sees the request path and the server's own address), then is closed.
async fn serve(route: fn(&str, &str) -> Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let own = address.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let own = own.clone();
            tokio::spawn(async move { answer(socket, route, &own).await });
        }
    });
    address
}

async fn answer(mut socket: TcpStream, route: fn(&str, &str) -> Answer, own: &str) {
    let mut head = Vec::new();
    let mut buf = [0; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    // Write errors end the answer: the client hung up, as it should.
    match route(&path, own) {
        Answer::Whole {
            status,
            headers,
            body,
        } => {
            let mut reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                reply.push_str(&format!("{k}: {v}\r\n"));
            }
            reply.push_str("\r\n");
            let mut reply = reply.into_bytes();
            reply.extend(body);
            let _ = socket.write_all(&reply).await;
        }
        Answer::Endless { status } => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                 Transfer-Encoding: chunked\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let size = format!("{:x}\r\n", PIECE.len());
            loop {
                let sent = async {
                    socket.write_all(size.as_bytes()).await?;
                    socket.write_all(&PIECE).await?;
                    socket.write_all(b"\r\n").await
                };
                if sent.await.is_err() {
                    return;
                }
            }
        }
        Answer::Drip { length } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                 Content-Length: {length}\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if socket.write_all(b" ").await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The fake registry's routes, by repository.
fn hostile(path: &str, own: &str) -> Answer {
    let repository = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    let is_manifest = path.contains("/manifests/");
    match repository {
        // A signature manifest without end.
        "endless" => Answer::Endless { status: 200 },
        // One declaring 8 GiB and dripping it.
        "declared" => Answer::Drip { length: 8 << 30 },
        // A small manifest whose payload blob has no end.
        "payload" if is_manifest => Answer::Whole {
            status: 200,
            headers: vec![(
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            body: signature_manifest(),
        },
        "payload" => Answer::Endless { status: 200 },
        // An error whose body has no end.
        "error" => Answer::Endless { status: 500 },
        // A token realm whose answer has no end.
        "token" if is_manifest => Answer::Whole {
            status: 401,
            headers: vec![(
                "WWW-Authenticate",
                format!("Bearer realm=\"http://{own}/token\",service=\"fake\""),
            )],
            body: Vec::new(),
        },
        _ if path.starts_with("/token") => Answer::Endless { status: 200 },
        _ => Answer::Whole {
            status: 404,
            headers: vec![],
            body: br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                .to_vec(),
        },
    }
}

/// A cosign signature manifest with one simple-signing layer of 100 bytes.
fn signature_manifest() -> Vec<u8> {
    let layer = serde_json::json!({
        "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
        "size": 100,
        "digest": format!("sha256:{}", "cd".repeat(32)),
        "annotations": {"dev.cosignproject.cosign/signature": "c2ln"},
    });
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": 2,
            "digest": format!("sha256:{}", "ef".repeat(32)),
        },
        "layers": [layer],
    }))
    .unwrap()
}

/// A source reaching the fake registry at `address` over plain HTTP.
fn source(address: &str) -> RegistrySource {
    let registries = RegistriesConfig {
        registries: vec![RegistryConfig {
            prefix: address.into(),
            mirrors: vec![],
            insecure: true,
            mirrors_only: false,
            ..Default::default()
        }],
    };
    RegistrySource::new(registries.load().unwrap(), RegistryAuth::Anonymous)
}

/// A policy requiring a signature for everything on `address`.
fn signed_only(address: &str) -> PolicyVerifier {
    let json = format!(
        r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{
            "{address}": [{{"type": "sigstoreSigned", "keyData": "{KEY_DATA}"}}]
        }}}}}}"#
    );
    PolicyVerifier::new(SignaturePolicy::from_json(json.as_bytes()).unwrap())
}

fn image(address: &str, repository: &str) -> ImageReference {
    format!("{address}/{repository}:latest").parse().unwrap()
}

#[tokio::test]
async fn an_endless_signature_manifest_is_refused_at_the_limit() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let address = serve(hostile).await;
    let image = image(&address, "endless");
    let (found, took, growth) = measured(async {
        source(&address)
            .signatures(&image, DIGEST, &Limits::default())
            .await
    })
    .await;
    let err = found.unwrap_err();
    assert!(
        matches!(
            &err,
            SourceError::ManifestTooLarge { size: None, limit: 4194304, location }
                if location.starts_with(&format!("http://{address}/endless:sha256-abab"))
        ),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("more than 4194304 bytes"),
        "{err}"
    );
    assert_cheap("endless manifest", took, growth);

    // As the daemon sees it: unreadable signatures, naming the limit.
    let refusal = signed_only(&address)
        .verify(&image, DIGEST, &source(&address))
        .await
        .unwrap_err();
    assert!(
        matches!(refusal.reason, RefusalReason::Unreadable { .. }),
        "{refusal}"
    );
    let text = refusal.to_string();
    assert!(
        text.contains("signatures could not be read") && text.contains("more than 4194304"),
        "{text}"
    );
}

#[tokio::test]
async fn a_manifest_declaring_gibibytes_is_refused_before_its_body() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let address = serve(hostile).await;
    let image = image(&address, "declared");
    let (found, took, growth) = measured(async {
        source(&address)
            .signatures(&image, DIGEST, &Limits::default())
            .await
    })
    .await;
    let err = found.unwrap_err();
    assert!(
        matches!(
            &err,
            SourceError::ManifestTooLarge {
                size: Some(8589934592),
                limit: 4194304,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("8589934592 bytes, more than 4194304"),
        "{err}"
    );
    // The drip is one byte per 100 ms: the refusal did not wait for it.
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_cheap("manifest declaring 8 GiB, dripped", took, growth);
}

#[tokio::test]
async fn an_endless_payload_is_left_unread_past_its_limit() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let address = serve(hostile).await;
    let image = image(&address, "payload");
    let (found, took, growth) = measured(async {
        source(&address)
            .signatures(&image, DIGEST, &Limits::default())
            .await
    })
    .await;
    let found = found.unwrap().expect("the signature manifest is there");
    assert_eq!(found.layers.len(), 1);
    assert_eq!(found.layers[0].payload, None);
    assert_cheap("endless payload", took, growth);

    // The verifier sees a signature it could not read whole.
    let refusal = signed_only(&address)
        .verify(&image, DIGEST, &source(&address))
        .await
        .unwrap_err();
    assert_eq!(refusal.rejected.len(), 1, "{refusal}");
    assert_eq!(refusal.rejected[0].fault, SignatureFault::PayloadTooLarge);
}

#[tokio::test]
async fn endless_error_and_token_answers_fail_the_endpoint_cheaply() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let address = serve(hostile).await;
    for (repository, says) in [
        ("error", "status 500"),
        ("token", "answer larger than 1048576 bytes"),
    ] {
        let image = image(&address, repository);
        let (found, took, growth) = measured(async {
            source(&address)
                .signatures(&image, DIGEST, &Limits::default())
                .await
        })
        .await;
        let err = found.unwrap_err();
        assert!(
            matches!(&err, SourceError::Unreachable { attempts, .. }
                if attempts.len() == 1 && attempts[0].contains(says)),
            "{err}"
        );
        assert_cheap(&format!("endless {repository} answer"), took, growth);
    }
}

#[tokio::test]
async fn no_signature_tag_is_unsigned() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let address = serve(hostile).await;
    let found = source(&address)
        .signatures(&image(&address, "absent"), DIGEST, &Limits::default())
        .await;
    assert_eq!(found, Ok(None));
}
