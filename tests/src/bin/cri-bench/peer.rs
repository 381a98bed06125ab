//! The same lifecycles against containerd's CRI plugin in the same run
//! (issue #20), and the parallel rows judged against it.

use crate::lifecycle::{self, LifecycleSamples};
use crate::scale::ScaleRun;
use crate::{ratio, verdict};
use anyhow::{Context, Result};
use cri_api::v1 as cri;
use std::path::Path;
use tests::containerd::Containerd;
use tests::fixtures::{image_spec, BUSYBOX};

/// containerd's sandbox image: busybox `sleep`, pushed by `cargo xtask
/// bench lifecycle` (the fixtures have no pause image).
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/bench/pause:1";

/// The rows with a target against containerd: (name, index in
/// [`lifecycle::RPCS`] or a sum of them, the most ours may take per theirs).
const TARGETS: [(&str, &[usize], f64); 5] = [
    ("RunPodSandbox", &[0], 0.4),
    ("StopPodSandbox", &[5], 0.3),
    ("RemoveContainer", &[4], 1.0),
    ("pod lifecycle (Run+Stop+Remove)", &[0, 5, 6], 0.4),
    (
        "container lifecycle (Create+Start+Stop+Remove)",
        &[1, 2, 3, 4],
        0.4,
    ),
];

/// containerd's lifecycles, `parallel` at once, after a warm-up, and its
/// run at scale (`scale_pods`, none when 0); every pod removed before
/// containerd stops.
pub async fn lifecycles(
    logs: &Path,
    parallel: usize,
    iterations: usize,
    scale_pods: usize,
) -> Result<(LifecycleSamples, Option<ScaleRun>)> {
    let containerd = Containerd::start_cri(SANDBOX_IMAGE)?;
    let socket = containerd.socket();
    let channel = tests::daemon::channel(&socket).await;
    let mut images = cri::image_service_client::ImageServiceClient::new(channel.clone());
    // Before any pod: containerd 1.6.20 dies of a concurrent map write when
    // four RunPodSandbox race its first pull of the sandbox image.
    for image in [SANDBOX_IMAGE, BUSYBOX] {
        images
            .pull_image(cri::PullImageRequest {
                image: image_spec(image),
                ..Default::default()
            })
            .await
            .with_context(|| format!("containerd: PullImage {image}"))?;
    }
    let run = async {
        rounds(&socket, logs, "peer-warm", 1, 2).await?;
        let samples = rounds(&socket, logs, "peer-par", parallel, iterations).await?;
        let scale = match scale_pods {
            0 => None,
            n => Some(crate::scale::run(&socket, logs, "peer", n, parallel, None).await?),
        };
        Ok::<_, anyhow::Error>((samples, scale))
    };
    let result = run.await;
    let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(channel);
    let left = lifecycle::remove_all(&mut rt).await;
    drop(containerd);
    left.context("containerd: removing what the lifecycles left")?;
    result
}

/// `iterations` lifecycles, `workers` at once, each worker on a connection
/// of its own.
async fn rounds(
    socket: &Path,
    logs: &Path,
    tag: &str,
    workers: usize,
    iterations: usize,
) -> Result<LifecycleSamples> {
    let (logs, tag) = (logs.to_path_buf(), tag.to_string());
    let runs = crate::scale::in_parallel(socket, workers, iterations, move |mut rt, i| {
        let (logs, name) = (logs.clone(), format!("bench-{tag}-{i}"));
        async move {
            let mut samples = LifecycleSamples::default();
            lifecycle::run(&mut rt, &name, &logs, false, &mut samples).await?;
            Ok(samples)
        }
    })
    .await?;
    let mut all = LifecycleSamples::default();
    for run in &runs {
        all.extend(run);
    }
    Ok(all)
}

/// Ours beside containerd's, p50, with the targets; true when all are met.
pub fn report(parallel: usize, ours: &LifecycleSamples, theirs: &LifecycleSamples) -> bool {
    println!("\n{parallel} in parallel against containerd 1.6 in the same run (p50 ms):");
    println!(
        "  {:<48} {:>8} {:>11} {:>7}",
        "", "ours", "containerd", "ratio"
    );
    for (name, s) in lifecycle::RPCS
        .iter()
        .zip(ours.rpcs.iter().zip(&theirs.rpcs))
    {
        println!(
            "  {name:<48} {:>8.1} {:>11.1} {:>6.2}x",
            ms(s.0),
            ms(s.1),
            ratio(s.0, s.1)
        );
    }
    let mut passed = true;
    for (name, rows, target) in TARGETS {
        let sum = |samples: &LifecycleSamples| -> f64 {
            rows.iter()
                .map(|&i| samples.rpcs[i].p50().as_secs_f64())
                .sum()
        };
        let (a, b) = (sum(ours), sum(theirs));
        let r = a / b.max(1e-9);
        let ok = r <= target;
        passed &= ok;
        println!(
            "  {name:<48} {:>8.1} {:>11.1} {r:>6.2}x (target <= {target}x) {}",
            a * 1e3,
            b * 1e3,
            verdict(ok)
        );
    }
    passed
}

fn ms(s: &crate::stats::Samples) -> f64 {
    s.p50().as_secs_f64() * 1e3
}
