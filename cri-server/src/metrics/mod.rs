//! The daemon's own Prometheus metrics, served on `[metrics] address` (off
//! by default) by [`server`].
//!
//! - RPCs: requests, errors and latency by method and gRPC code, recorded
//!   for every call by one tower layer ([`rpc`]).
//! - Trust decisions by outcome, counted where RunPodSandbox asks the
//!   policy ([`Metrics::trust_decision`]).
//! - Image pulls by result ([`Metrics::image_pull`]) and the bytes the image
//!   store has fetched.
//! - Signature policy checks by result ([`SignatureCounts`]), counted by
//!   the pull check itself, so re-evaluations after a reload count too.
//! - Configuration reloads by result ([`Metrics::count_reload`]).
//! - Pods and containers by state and runtime handler, counted from the
//!   daemon's stores at each scrape ([`collector`]).
//!
//! Counting is always on (a few atomics per request); only serving them
//! needs the address, which a reload may change ([`endpoint`]).

pub mod collector;
pub mod endpoint;
pub mod rpc;
pub mod server;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The prefix of every metric name the daemon serves.
pub const PREFIX: &str = "cri_server";

/// How a trust decision ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum TrustOutcome {
    /// The pod runs on the trusted handler.
    Trusted,
    /// The pod runs on the untrusted (sandboxing) handler.
    Untrusted,
    /// The policy refused the pod.
    Rejected,
}

impl TrustOutcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustOutcome::Trusted => "trusted",
            TrustOutcome::Untrusted => "untrusted",
            TrustOutcome::Rejected => "rejected",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// How a signature policy check of an image ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SignatureResult {
    /// Signatures vouched for it.
    Verified,
    /// Accepted without signatures (`insecureAcceptAnything`).
    Accepted,
    /// Refused: the pull fails.
    Refused,
}

impl SignatureResult {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureResult::Verified => "verified",
            SignatureResult::Accepted => "accepted",
            SignatureResult::Refused => "refused",
        }
    }
}

/// `signature_verifications_total` by result. Clones share the counts: the
/// pull check holds one, the registry another.
#[derive(Clone, Debug, Default)]
pub struct SignatureCounts(Family<ResultLabels, Counter>);

impl SignatureCounts {
    /// Counts one check.
    pub fn count(&self, result: SignatureResult) {
        self.0
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
    }

    /// The count of `result` so far.
    pub fn get(&self, result: SignatureResult) -> u64 {
        self.0
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .get()
    }
}

/// Pull durations from 0.1 s to about 7 minutes.
fn pull_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 13))
}

/// Pull durations by result (a newtype: the family has no `Default`).
#[derive(Debug, Clone)]
struct PullSeconds(Family<ResultLabels, Histogram, fn() -> Histogram>);

impl Default for PullSeconds {
    fn default() -> Self {
        PullSeconds(Family::new_with_constructor(pull_histogram))
    }
}

/// PullImage calls in progress; see [`Metrics::pull_in_flight`].
#[must_use]
pub struct PullInFlight(Gauge);

impl Drop for PullInFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The daemon's counters; cheap to update from any handler.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Per-RPC counts and latencies, recorded by [`rpc::RpcMetricsLayer`].
    pub rpc: rpc::RpcMetrics,
    trust_decisions: Family<OutcomeLabels, Counter>,
    image_pulls: Family<ResultLabels, Counter>,
    image_pull_seconds: PullSeconds,
    image_pulls_in_flight: Gauge,
    /// Signature policy checks by result, counted by the pull check.
    pub signatures: SignatureCounts,
    config_reloads: Family<ResultLabels, Counter>,
}

impl Metrics {
    /// Counts one trust decision.
    pub fn trust_decision(&self, outcome: TrustOutcome) {
        self.trust_decisions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts one PullImage by whether it succeeded, and how long it took.
    pub fn image_pull(&self, succeeded: bool, took: Duration) {
        let result = if succeeded { "success" } else { "failure" };
        self.image_pulls
            .get_or_create(&ResultLabels { result })
            .inc();
        self.image_pull_seconds
            .0
            .get_or_create(&ResultLabels { result })
            .observe(took.as_secs_f64());
    }

    /// Counts a PullImage in progress until the guard is dropped.
    pub fn pull_in_flight(&self) -> PullInFlight {
        self.image_pulls_in_flight.inc();
        PullInFlight(self.image_pulls_in_flight.clone())
    }

    /// Counts one configuration reload (SIGHUP) by whether it was applied.
    pub fn count_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "failed" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Registers these counters (the RPC ones included) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        self.rpc.register(registry);
        registry.register(
            "trust_decisions",
            "Trust decisions RunPodSandbox asked for, by outcome.",
            self.trust_decisions.clone(),
        );
        registry.register(
            "image_pulls",
            "PullImage calls, by result.",
            self.image_pulls.clone(),
        );
        registry.register(
            "image_pull_duration_seconds",
            "How long PullImage calls took, by result.",
            self.image_pull_seconds.0.clone(),
        );
        registry.register(
            "image_pulls_in_flight",
            "PullImage calls in progress.",
            self.image_pulls_in_flight.clone(),
        );
        registry.register(
            "signature_verifications",
            "Images checked against [image] signature_policy (pulls and re-evaluations after a reload), by result.",
            self.signatures.0.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result: applied, or failed and the previous configuration kept.",
            self.config_reloads.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn trust_and_pull_counters_encode_with_their_labels() {
        let metrics = Metrics::default();
        metrics.trust_decision(TrustOutcome::Trusted);
        metrics.trust_decision(TrustOutcome::Trusted);
        metrics.trust_decision(TrustOutcome::Rejected);
        metrics.image_pull(true, Duration::from_millis(300));
        metrics.image_pull(false, Duration::from_secs(2));
        let in_flight = metrics.pull_in_flight();
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register("trust_decisions", "t", metrics.trust_decisions.clone());
        registry.register("image_pulls", "p", metrics.image_pulls.clone());
        registry.register("pull_seconds", "s", metrics.image_pull_seconds.0.clone());
        registry.register("pulling", "f", metrics.image_pulls_in_flight.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("cri_server_trust_decisions_total{outcome=\"trusted\"} 2"),
            "{text}"
        );
        assert!(text.contains("cri_server_trust_decisions_total{outcome=\"rejected\"} 1"));
        assert!(text.contains("cri_server_image_pulls_total{result=\"failure\"} 1"));
        assert!(
            text.contains("cri_server_pull_seconds_bucket{le=\"0.4\",result=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("cri_server_pulling 1"), "{text}");
        drop(in_flight);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains("cri_server_pulling 0"), "{text}");
    }

    #[test]
    fn signature_checks_are_counted_by_result_in_the_registry() {
        let metrics = Metrics::default();
        let counts = metrics.signatures.clone();
        counts.count(SignatureResult::Verified);
        counts.count(SignatureResult::Refused);
        counts.count(SignatureResult::Refused);
        assert_eq!(metrics.signatures.get(SignatureResult::Refused), 2);
        let mut registry = Registry::with_prefix(PREFIX);
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "cri_server_signature_verifications_total{result=\"verified\"} 1",
            "cri_server_signature_verifications_total{result=\"refused\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
