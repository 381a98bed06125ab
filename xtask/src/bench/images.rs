//! Image pull/unpack and image metadata latency (owned by the image-store work).
//!
//! Against the fixture registry (`cargo xtask fixtures`, run first here):
//! pull-and-unpack of each fixture image into an empty store (cold) and again
//! (already present), then ListImages / ImageStatus latency with 100 images
//! stored. Reported as times and ratios.

use crate::fixtures;
use anyhow::{Context, Result};
use image_store::{ImageStore, Registries, RegistriesConfig, RegistryConfig};
use std::path::Path;
use std::time::{Duration, Instant};

const IMAGES: &[&str] = &[
    "registry.k8s.io/e2e-test-images/busybox:1.29-2",
    "registry.k8s.io/user-uid:latest",
    "registry.k8s.io/user-name:latest",
    "registry.k8s.io/user-uid-gid:latest",
    "registry.k8s.io/user-name-group:latest",
    "registry.k8s.io/multi-layer:latest",
];
const STORED: usize = 100;
const ROUNDS: usize = 200;

/// Measures pull-and-unpack time and image listing latency.
pub fn run(root: &Path) -> Result<()> {
    fixtures::prepare(root)?;
    let target = fixtures::push::Registry::new(fixtures::registry::ADDRESS);
    for image in fixtures::images::tiny_images(STORED)? {
        fixtures::images::publish(&target, &image)?;
    }
    let scratch = std::env::temp_dir().join(format!("image-bench-{}", std::process::id()));
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let result = runtime.block_on(measure(&scratch));
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn registries() -> Result<Registries> {
    let config = RegistriesConfig {
        registries: vec![
            RegistryConfig {
                prefix: "registry.k8s.io".into(),
                mirrors: vec![fixtures::registry::ADDRESS.into()],
                insecure: true,
                mirrors_only: true,
                ..Default::default()
            },
            RegistryConfig {
                prefix: fixtures::registry::ADDRESS.into(),
                mirrors: vec![],
                insecure: true,
                mirrors_only: false,
                ..Default::default()
            },
        ],
    };
    config.load().context("loading the registries")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn measure(scratch: &Path) -> Result<()> {
    println!("image pull-and-unpack (cold = empty store, warm = already present)");
    println!(
        "{:<48} {:>10} {:>10} {:>8}",
        "image", "cold ms", "warm ms", "ratio"
    );
    let (mut cold_total, mut warm_total) = (Duration::ZERO, Duration::ZERO);
    for (i, image) in IMAGES.iter().enumerate() {
        let store = ImageStore::open(scratch.join(format!("cold-{i}")), registries()?).await?;
        let start = Instant::now();
        store.pull(image, None).await?;
        let cold = start.elapsed();
        let start = Instant::now();
        store.pull(image, None).await?;
        let warm = start.elapsed();
        cold_total += cold;
        warm_total += warm;
        println!(
            "{image:<48} {:>10.1} {:>10.1} {:>7.1}x",
            ms(cold),
            ms(warm),
            cold.as_secs_f64() / warm.as_secs_f64()
        );
    }
    println!(
        "{:<48} {:>10.1} {:>10.1} {:>7.1}x",
        "total",
        ms(cold_total),
        ms(warm_total),
        cold_total.as_secs_f64() / warm_total.as_secs_f64()
    );

    let store = ImageStore::open(scratch.join("many"), registries()?).await?;
    let start = Instant::now();
    let mut last_id = String::new();
    for i in 0..STORED {
        last_id = store
            .pull(&format!("127.0.0.1:5000/bench/tiny:t{i}"), None)
            .await?
            .id;
    }
    let fill = start.elapsed();
    let listed = store.list().len();
    println!(
        "\n{listed} images stored (pulling them took {:.0} ms)",
        ms(fill)
    );
    let list = median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(store.list());
                start.elapsed()
            })
            .collect(),
    );
    let by_tag = median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                let _ = std::hint::black_box(store.status("127.0.0.1:5000/bench/tiny:t50"));
                start.elapsed()
            })
            .collect(),
    );
    let by_id = median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                let _ = std::hint::black_box(store.status(&last_id));
                start.elapsed()
            })
            .collect(),
    );
    println!(
        "ListImages   median {:>8.1} µs ({:.2} µs per image)",
        list.as_secs_f64() * 1e6,
        list.as_secs_f64() * 1e6 / listed.max(1) as f64
    );
    println!(
        "ImageStatus  median {:>8.1} µs by tag, {:.1} µs by id (tag/id {:.1}x)",
        by_tag.as_secs_f64() * 1e6,
        by_id.as_secs_f64() * 1e6,
        by_tag.as_secs_f64() / by_id.as_secs_f64()
    );
    Ok(())
}
