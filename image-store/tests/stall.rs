//! Stall detection (issue #16): a registry that drips bytes, or that never
//! answers, fails the pull within about the stall timeout, with
//! `Error::Stalled` and nothing left behind; a slow but steady one still
//! serves. A fake registry on loopback paces its answers; the stall
//! timeout is 2 s here.

mod common;

use common::entries;
use common::fake_registry::{self, image_response, one_file_image, Pace, PacedRoute, Tiny};
use image_store::blob_store::sha256_digest;
use image_store::{Error, ImageStore, PullOptions, MIN_PROGRESS_BYTES};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(2);
/// The most a stalled pull may take here: the window, and then some for a
/// loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

/// A store at `root` whose pulls stall after [`WINDOW`], reaching `address`.
async fn store(root: &Path, address: &str) -> ImageStore {
    let options = PullOptions::default().with_stall_timeout(WINDOW).unwrap();
    ImageStore::open_with(root, fake_registry::insecure(address), options)
        .await
        .unwrap()
}

/// Serves `image`, the request whose path ends with `slow` paced by `pace`.
fn paced(image: &'static Tiny, slow: String, pace: Pace) -> PacedRoute {
    Arc::new(move |path| {
        let pace = if path.ends_with(&slow) {
            pace
        } else {
            Pace::Whole
        };
        (image_response(image, path), pace)
    })
}

/// Pulls `reference`, which must stall; returns the error's fields and the
/// time the pull took.
async fn stalled_pull(store: &ImageStore, reference: &str) -> (String, u64, Duration, Duration) {
    let start = Instant::now();
    let pulled = tokio::time::timeout(PATIENCE, store.pull(reference, None)).await;
    let took = start.elapsed();
    let err = pulled
        .unwrap_or_else(|_| panic!("still pulling after {PATIENCE:?}"))
        .unwrap_err();
    eprintln!("error as reported after {took:?}: {err}");
    let text = err.to_string();
    let Error::Stalled {
        image,
        object,
        bytes,
        window,
    } = err
    else {
        panic!("not a stall: {text}");
    };
    assert_eq!(image, reference);
    assert!(text.contains(&format!("pull {reference}: no progress for 2s fetching ")));
    assert!(
        text.ends_with(&format!("({bytes} bytes in the last 2s)")),
        "{text}"
    );
    assert!(
        took >= WINDOW,
        "stalled before the window ran out: {took:?}"
    );
    (object, bytes, window, took)
}

/// Nothing of a failed pull is left: no temporary file, partial blob,
/// layer or record; the store's locks are free (a removal goes through).
async fn assert_nothing_left(store: &ImageStore, root: &Path, reference: &str) {
    for sub in ["tmp", "layers", "images", "blobs/sha256"] {
        let left = entries(&root.join(sub));
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
    assert!(store.list().is_empty());
    let removal = tokio::time::timeout(Duration::from_secs(1), store.remove(reference)).await;
    assert!(removal.is_ok(), "the stalled pull still holds the store");
}

#[tokio::test]
async fn a_dripping_layer_fails_the_pull_within_the_window() {
    let image = fake_registry::tiny();
    // 1 byte every 100 ms: the read timeout never fires, and the layer
    // (2 KiB) would take minutes.
    let drip = Pace::Drip {
        bytes: 1,
        every: Duration::from_millis(100),
    };
    let address = fake_registry::serve_paced(paced(image, sha256_digest(&image.layer), drip)).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = store(&root, &address).await;
    let reference = format!("{address}/drip:latest");
    let (object, bytes, window, _) = stalled_pull(&store, &reference).await;
    let layer = format!(
        "http://{address}/v2/drip/blobs/{}",
        sha256_digest(&image.layer)
    );
    assert_eq!(object, layer);
    assert!(bytes > 0 && bytes < MIN_PROGRESS_BYTES, "{bytes}");
    assert_eq!(window, WINDOW);
    assert_nothing_left(&store, &root, &reference).await;
}

#[tokio::test]
async fn a_registry_that_never_answers_fails_the_pull_within_the_window() {
    let route: PacedRoute = Arc::new(|_| ((200, vec![], vec![]), Pace::Silent));
    let address = fake_registry::serve_paced(route).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = store(&root, &address).await;
    let reference = format!("{address}/silent:latest");
    let (object, bytes, _, _) = stalled_pull(&store, &reference).await;
    assert_eq!(
        object,
        format!("http://{address}/v2/silent/manifests/latest")
    );
    assert_eq!(bytes, 0);
    assert_nothing_left(&store, &root, &reference).await;
    // The failed pull is no longer in flight: pulling again is a new pull
    // (a joined one would fail at once, as `Error::SharedPull`).
    stalled_pull(&store, &reference).await;
}

#[tokio::test]
async fn a_body_that_never_comes_fails_the_pull_within_the_window() {
    let image = fake_registry::tiny();
    let route = paced(image, sha256_digest(&image.config), Pace::HeadersOnly);
    let address = fake_registry::serve_paced(route).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = store(&root, &address).await;
    let reference = format!("{address}/headers:latest");
    let (object, bytes, _, _) = stalled_pull(&store, &reference).await;
    let config = format!(
        "http://{address}/v2/headers/blobs/{}",
        sha256_digest(&image.config)
    );
    assert_eq!(object, config);
    // The manifest, if it arrived late enough to be in the last window.
    assert!(bytes <= image.manifest.len() as u64, "{bytes}");
    assert_nothing_left(&store, &root, &reference).await;
}

#[tokio::test]
async fn a_slow_but_steady_registry_still_serves() {
    static IMAGE: OnceLock<Tiny> = OnceLock::new();
    // 256 KiB at 64 KiB/s: twice the minimum a window needs, for two
    // windows.
    let image = IMAGE.get_or_init(|| one_file_image("data", &[7; 256 << 10]));
    let steady = Pace::Drip {
        bytes: 8 << 10,
        every: Duration::from_millis(125),
    };
    let address =
        fake_registry::serve_paced(paced(image, sha256_digest(&image.layer), steady)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir.path().join("s"), &address).await;
    let start = Instant::now();
    let pulled = store.pull(&format!("{address}/steady:latest"), None).await;
    let took = start.elapsed();
    let pulled = pulled.unwrap_or_else(|e| panic!("after {took:?}: {e}"));
    assert_eq!(pulled.id, sha256_digest(&image.config));
    assert!(
        took > 2 * WINDOW,
        "the download outlasted the window: {took:?}"
    );
}
