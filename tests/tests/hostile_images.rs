//! Issue #14, "Hostile input", through the real daemon: images and
//! registries written by an attacker (`cargo xtask fixtures` pushes them as
//! `hostile/…`; see `xtask/src/fixtures/hostile.rs`). Every one is refused by
//! PullImage with an error naming the image and the cause, quickly, without
//! the daemon's memory growing with the attacker's input, and leaving nothing
//! behind: no mount, no layer, no blob, no staging directory.
//!
//! The oversized manifest cannot be pushed to the fixture registry (it
//! refuses bodies over 4 MiB), so a tiny registry inside the test serves it.

use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::daemon::Daemon;
use tests::fixtures::{image_spec, BUSYBOX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

type Images = ImageServiceClient<Channel>;

/// A sanity bound, not a performance target: a refusal must not wait on the
/// attacker's bytes.
const FAST: Duration = Duration::from_secs(10);
/// How much the daemon's peak RSS may grow while refusing a 64 MiB
/// document: a fraction of it, so the document was never held whole (a
/// manifest is read up to its 4 MiB cap).
const MAX_HWM_GROWTH_KIB: u64 = 12 * 1024;

fn hostile(name: &str) -> String {
    format!("registry.k8s.io/hostile/{name}:latest")
}

async fn try_pull(images: &mut Images, image: &str) -> Result<String, tonic::Status> {
    images
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// What a pull may not leave behind: entries of the store's layer, blob,
/// record and temporary directories, and mounts under the daemon's root.
#[derive(Debug, PartialEq, Eq)]
struct Leftovers {
    layers: Vec<String>,
    blobs: Vec<String>,
    records: Vec<String>,
    tmp: Vec<String>,
    mounts: Vec<String>,
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn mounts_under(root: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(root))
        .map(str::to_string)
        .collect()
}

fn leftovers(daemon: &Daemon) -> Leftovers {
    let store = store_root(daemon);
    Leftovers {
        layers: names(&store.join("layers")),
        blobs: names(&store.join("blobs/sha256")),
        records: names(&store.join("images")),
        tmp: names(&store.join("tmp")),
        mounts: mounts_under(&daemon.dir().join("root")),
    }
}

fn store_root(daemon: &Daemon) -> PathBuf {
    daemon.dir().join("root/images")
}

/// Makes the daemon set up what any pull needs (its HTTP client, blocking
/// threads: ~5 MiB of peak RSS the first time), so that a measurement after
/// it sees only what a hostile pull costs.
async fn warm_up(images: &mut Images) {
    let missing = "registry.k8s.io/hostile/no-such-image:latest";
    assert!(try_pull(images, missing).await.is_err());
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Pulls `image`, which must be refused fast with a message naming it and
/// containing every one of `causes`, leaving the store as it was.
async fn refused(daemon: &Daemon, images: &mut Images, image: &str, causes: &[&str]) -> String {
    let before = leftovers(daemon);
    let started = Instant::now();
    let result = try_pull(images, image).await;
    let elapsed = started.elapsed();
    let err = match result {
        Ok(id) => panic!("{image} was pulled as {id}; it must be refused"),
        Err(e) => e,
    };
    let message = err.message().to_string();
    eprintln!("{image}: {:?} after {elapsed:?}: {message}", err.code());
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{message}");
    assert!(message.contains(image), "names the image: {message}");
    for cause in causes {
        assert!(message.contains(cause), "says {cause:?}: {message}");
    }
    assert!(elapsed < FAST, "{image}: refused after {elapsed:?}");
    let status = images
        .image_status(cri::ImageStatusRequest {
            image: image_spec(image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.image, None, "{image} must not be recorded");
    assert_eq!(leftovers(daemon), before, "{image} left something behind");
    message
}

// The reproduction of the issue: a diff id that names a host directory
// (absolute or by `..`) or carries overlayfs option separators is not a
// digest, and nothing is ever made of it.
#[tokio::test]
async fn diff_ids_that_are_not_digests_are_refused() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    for (name, shown) in [
        ("diff-id-absolute", "sha256:/etc"),
        ("diff-id-dotdot", "sha256:../../"),
        ("diff-id-mount-options", "sha256:/tmp,upperdir=/etc"),
    ] {
        refused(
            &daemon,
            &mut images,
            &hostile(name),
            &["rootfs.diff_ids[0]", "not a valid digest", shown],
        )
        .await;
    }
}

// A real digest that is not the layer's: refused whether or not a layer of
// that diff id is already unpacked (here: busybox's, pulled in between).
#[tokio::test]
async fn a_diff_id_that_does_not_match_its_layer_is_refused() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    let image = hostile("diff-id-mismatch");
    refused(&daemon, &mut images, &image, &["wrong diff id"]).await;
    try_pull(&mut images, BUSYBOX)
        .await
        .unwrap_or_else(|e| panic!("pull {BUSYBOX}: {e}\n{}", daemon.log()));
    refused(&daemon, &mut images, &image, &["wrong diff id"]).await;
}

// A 64 MiB config is refused before it is read when its descriptor says
// so, and after at most the size its descriptor claims when that lies; the
// daemon's peak memory does not move by anything like 64 MiB.
#[tokio::test]
async fn an_oversized_config_is_refused_without_being_read() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    warm_up(&mut images).await;
    let before = peak_rss_kib(daemon.pid());
    refused(
        &daemon,
        &mut images,
        &hostile("config-oversized"),
        &["config sha256:", "67108864", "4194304-byte limit"],
    )
    .await;
    refused(
        &daemon,
        &mut images,
        &hostile("config-size-lie"),
        &["config sha256:", "1024 bytes its descriptor declares"],
    )
    .await;
    let after = peak_rss_kib(daemon.pid());
    eprintln!("daemon VmHWM: {before} KiB before, {after} KiB after the 64 MiB configs");
    assert!(
        after.saturating_sub(before) < MAX_HWM_GROWTH_KIB,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn a_layer_larger_than_its_descriptor_is_refused() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    refused(
        &daemon,
        &mut images,
        &hostile("layer-size-lie"),
        &["layer sha256:", "1000 bytes its descriptor declares"],
    )
    .await;
}

/// Size of the manifest the in-test registry sends: far past the 4 MiB cap.
const HUGE_MANIFEST: usize = 64 << 20;

/// A registry that answers every manifest request (but `warm-up`'s, which
/// it does not have) with 64 MiB of valid JSON, without a Content-Length
/// (read until the connection closes), so only a cap on what is read can
/// stop it. Returns its address.
async fn huge_manifest_registry() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]).into_owned();
                if !request.contains("/manifests/") || request.contains("/warm-up/") {
                    let _ = socket
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\n\
                     Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                     Connection: close\r\n\r\n";
                let start = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"padding":""#;
                let end = br#""},"config":{},"layers":[]}"#;
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(start).await;
                let chunk = vec![b'x'; 64 << 10];
                let mut sent = start.len() + end.len();
                while sent < HUGE_MANIFEST {
                    if socket.write_all(&chunk).await.is_err() {
                        return; // the client stopped reading: as it should
                    }
                    sent += chunk.len();
                }
                let _ = socket.write_all(end).await;
            });
        }
    });
    address
}

#[tokio::test]
async fn an_oversized_manifest_is_refused_without_being_read() {
    let registry = huge_manifest_registry().await;
    let daemon = Daemon::start(&format!(
        "[[image.registries]]\nprefix = \"{registry}\"\ninsecure = true\n"
    ))
    .await;
    let mut images = daemon.images().await;
    let missing = format!("{registry}/warm-up/missing:latest");
    assert!(try_pull(&mut images, &missing).await.is_err());
    let before = peak_rss_kib(daemon.pid());
    let image = format!("{registry}/hostile/manifest-oversized:latest");
    refused(
        &daemon,
        &mut images,
        &image,
        &["manifest", "4194304-byte limit"],
    )
    .await;
    let after = peak_rss_kib(daemon.pid());
    eprintln!("daemon VmHWM: {before} KiB before, {after} KiB after the 64 MiB manifest");
    assert!(
        after.saturating_sub(before) < MAX_HWM_GROWTH_KIB,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

const PRIVATE_DIRS: [&str; 7] = [
    "",
    "blobs",
    "blobs/sha256",
    "layers",
    "images",
    "containers",
    "tmp",
];

fn assert_private(store: &Path) {
    for sub in PRIVATE_DIRS {
        let dir = store.join(sub);
        assert_eq!(mode(&dir), 0o700, "{} is not 0700", dir.display());
    }
}

// Layers hold setuid binaries and device nodes from images; no local user
// may reach them (cf. CVE-2021-41091). A store made before is fixed at start.
#[tokio::test]
async fn the_image_store_is_private_to_root() {
    let mut daemon = Daemon::start("").await;
    let store = store_root(&daemon);
    {
        let mut images = daemon.images().await;
        try_pull(&mut images, BUSYBOX)
            .await
            .unwrap_or_else(|e| panic!("pull {BUSYBOX}: {e}\n{}", daemon.log()));
    }
    assert_private(&store);
    for layer in names(&store.join("layers")) {
        assert!(
            store
                .join("layers")
                .join(&layer)
                .join("bin/busybox")
                .is_file(),
            "{layer}"
        );
    }
    // As an older daemon left them.
    for sub in PRIVATE_DIRS {
        let dir = store.join(sub);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    daemon.terminate().await;
    daemon.restart().await;
    assert_private(&store);
}
