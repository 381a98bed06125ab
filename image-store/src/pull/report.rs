//! A pull's progress, logged at info level every [`REPORT_EVERY`] while
//! its layers download: bytes done of the declared total, per layer and in
//! all. Kubernetes shows no pull progress (an old complaint against both
//! anchors); this is what an operator watching the journal of a node stuck
//! on a large image sees.

use super::layers::LayerSpec;
use crate::digest::Digest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a pull in progress is reported.
pub(super) const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Bytes done per layer, updated by the downloads as chunks arrive.
pub(super) struct Report {
    started: Instant,
    layers: Vec<(Digest, u64, AtomicU64)>,
}

impl Report {
    /// A report over `specs`, nothing done yet.
    pub(super) fn new(specs: &[LayerSpec<'_>]) -> Self {
        Report {
            started: Instant::now(),
            layers: specs
                .iter()
                .map(|s| {
                    (
                        s.descriptor.digest.clone(),
                        s.descriptor.size,
                        AtomicU64::new(0),
                    )
                })
                .collect(),
        }
    }

    /// Layer `index`'s counter.
    pub(super) fn done(&self, index: usize) -> &AtomicU64 {
        &self.layers[index].2
    }

    /// Marks layer `index` complete (present, fetched by another pull, or
    /// finished).
    pub(super) fn complete(&self, index: usize) {
        let (_, total, done) = &self.layers[index];
        done.store(*total, Ordering::Relaxed);
    }

    /// Logs where the pull of `image` stands.
    pub(super) fn log(&self, image: &str) {
        let summary = self.summary();
        tracing::info!(
            %image,
            done_mib = format!("{:.1}", mib(summary.done)),
            total_mib = format!("{:.1}", mib(summary.total)),
            layers_complete = summary.complete,
            layers_total = self.layers.len(),
            elapsed_s = self.started.elapsed().as_secs(),
            layers = %summary.layers,
            "pull in progress"
        );
    }

    fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        let mut layers = Vec::with_capacity(self.layers.len());
        for (digest, size, bytes) in &self.layers {
            let bytes = bytes.load(Ordering::Relaxed).min(*size);
            summary.done += bytes;
            summary.total += size;
            summary.complete += usize::from(bytes == *size);
            let full = digest.to_string();
            let short = full.get(..19).unwrap_or(&full);
            layers.push(format!("{short} {:.1}/{:.1} MiB", mib(bytes), mib(*size)));
        }
        summary.layers = layers.join(", ");
        summary
    }
}

/// Totals over a pull's layers.
#[derive(Debug, Default)]
struct Summary {
    done: u64,
    total: u64,
    complete: usize,
    layers: String,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_is_capped_at_each_layers_size_and_summed() {
        let digest = |c: char| -> Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let report = Report {
            started: Instant::now(),
            layers: vec![
                (digest('a'), 4 << 20, AtomicU64::new(1 << 20)),
                (digest('b'), 2 << 20, AtomicU64::new(9 << 20)),
            ],
        };
        report.complete(0);
        let summary = report.summary();
        assert_eq!(
            (summary.done, summary.total, summary.complete),
            (6 << 20, 6 << 20, 2)
        );
        assert_eq!(
            summary.layers,
            "sha256:aaaaaaaaaaaa 4.0/4.0 MiB, sha256:bbbbbbbbbbbb 2.0/2.0 MiB"
        );
        report.done(0).store(0, Ordering::Relaxed);
        assert_eq!(report.summary().complete, 1);
    }
}
