//! Shared helpers for the integration tests: the fixture registry (started
//! and filled by `cargo xtask fixtures`; its catalogue is documented in
//! `xtask/src/fixtures/mod.rs`) and stores configured to reach it.
#![allow(dead_code)]

pub mod auth_registry;
pub mod fake_registry;

use image_store::{ImageStore, Registries, RegistriesConfig, RegistryConfig};
use std::net::TcpStream;
use std::time::Duration;

/// Where `cargo xtask fixtures` runs the registry.
pub const REGISTRY: &str = "127.0.0.1:5000";
/// The fixture busybox, pulled through the `registry.k8s.io` mirror.
pub const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
/// Its other tags.
pub const BUSYBOX_TAGS: [&str; 4] = ["1.29-2", "1.29", "latest", "stable"];
/// Images whose config sets `User`, with the uid / username CRI reports.
pub const USER_IMAGES: [(&str, Option<i64>, &str); 4] = [
    ("registry.k8s.io/user-uid:latest", Some(1002), ""),
    ("registry.k8s.io/user-name:latest", None, "www-data"),
    ("registry.k8s.io/user-uid-gid:latest", Some(1003), ""),
    ("registry.k8s.io/user-name-group:latest", None, "www-data"),
];
/// gzip + zstd + plain layers with a whiteout and an opaque directory.
pub const MULTI_LAYER: &str = "registry.k8s.io/multi-layer:latest";
/// Layer blobs that verify but do not unpack.
pub const TRUNCATED: &str = "127.0.0.1:5000/broken/truncated-layer:latest";
/// Layer blobs that verify but are not gzip.
pub const CORRUPT: &str = "127.0.0.1:5000/broken/corrupt-layer:latest";

/// Fails the test with instructions when the fixture registry is not up.
pub fn require_registry() {
    let up = TcpStream::connect_timeout(&REGISTRY.parse().unwrap(), Duration::from_secs(1)).is_ok();
    assert!(
        up,
        "no fixture registry on {REGISTRY}: run `cargo xtask fixtures` first"
    );
}

/// The daemon's default mirror configuration, plus plain HTTP for direct
/// references to the fixture registry. Nothing here leaves loopback as long
/// as the mirror has the image.
pub fn registries() -> Registries {
    RegistriesConfig {
        registries: vec![
            RegistryConfig {
                prefix: "registry.k8s.io".into(),
                mirrors: vec![REGISTRY.into()],
                insecure: true,
                mirrors_only: true,
                ..Default::default()
            },
            RegistryConfig {
                prefix: REGISTRY.into(),
                mirrors: vec![],
                insecure: true,
                mirrors_only: false,
                ..Default::default()
            },
        ],
    }
    .load()
    .unwrap()
}

/// A fresh store in a temporary directory.
pub async fn store() -> (tempfile::TempDir, ImageStore) {
    require_registry();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("store"), registries())
        .await
        .unwrap();
    (dir, store)
}

/// Names in a directory, sorted.
pub fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
