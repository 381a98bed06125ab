//! Percentiles of latency samples.

use std::time::Duration;

/// Latency samples of one operation.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`th percentile by the nearest-rank method (no interpolation, so
    /// the figure is always a latency that was really observed); zero when
    /// there are no samples.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// The median.
    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    /// The 95th percentile.
    pub fn p95(&self) -> Duration {
        self.percentile(95.0)
    }
}

/// `d` in milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(ms: &[u64]) -> Samples {
        let mut s = Samples::default();
        for &m in ms {
            s.push(Duration::from_millis(m));
        }
        s
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = samples(&[5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
        assert_eq!(s.p50(), Duration::from_millis(5));
        assert_eq!(s.p95(), Duration::from_millis(10));
        assert_eq!(s.percentile(10.0), Duration::from_millis(1));
        assert_eq!(s.percentile(0.0), Duration::from_millis(1));
        assert_eq!(s.percentile(100.0), Duration::from_millis(10));
    }

    #[test]
    fn one_and_no_sample() {
        assert_eq!(samples(&[7]).p95(), Duration::from_millis(7));
        assert_eq!(Samples::default().p50(), Duration::ZERO);
    }
}
