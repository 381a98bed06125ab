//! Gauges counted from the daemon's stores at each scrape: pods and
//! containers by state and runtime handler, and the bytes the image store
//! has pulled. Nothing is kept between scrapes, so the numbers cannot drift
//! from the stores.

use crate::daemon::Daemon;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sandbox_core::{ContainerFilter, ContainerState, SandboxFilter, SandboxState};
use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
    handler: String,
}

/// The `state` label of a pod.
fn pod_state(state: SandboxState) -> &'static str {
    match state {
        SandboxState::Ready => "ready",
        SandboxState::NotReady => "notready",
    }
}

/// The `state` label of a container.
fn container_state(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Unknown => "unknown",
    }
}

/// Counts `items` by (state, handler), with a zero for every state and
/// every handler in `handlers`, so a state that empties shows 0 rather than
/// vanishing.
fn count_by_state<'a>(
    states: &[&'static str],
    handlers: &BTreeSet<String>,
    items: impl Iterator<Item = (&'static str, &'a str)>,
) -> Family<StateLabels, Gauge> {
    let family = Family::<StateLabels, Gauge>::default();
    for handler in handlers {
        for state in states {
            // Creating the series is the point: it starts at 0.
            let _zero = family.get_or_create(&StateLabels {
                state,
                handler: handler.clone(),
            });
        }
    }
    for (state, handler) in items {
        family
            .get_or_create(&StateLabels {
                state,
                handler: handler.to_string(),
            })
            .inc();
    }
    family
}

/// Reads the daemon's stores when the registry is encoded.
#[derive(Debug)]
pub struct StoreCollector {
    daemon: Weak<Daemon>,
}

impl StoreCollector {
    /// A collector over `daemon`; once the daemon is gone it reports
    /// nothing.
    pub fn new(daemon: Weak<Daemon>) -> Self {
        StoreCollector { daemon }
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(daemon) = self.daemon.upgrade() else {
            return Ok(());
        };
        let sandboxes = daemon.sandboxes.list(&SandboxFilter::default());
        let containers = daemon.containers.list(&ContainerFilter::default());
        // Configured handlers, and any a record still names after a
        // configuration change.
        let handlers: BTreeSet<String> = daemon
            .handlers()
            .names()
            .cloned()
            .chain(sandboxes.iter().map(|s| s.runtime_handler.clone()))
            .chain(containers.iter().map(|c| c.runtime_handler.clone()))
            .filter(|h| !h.is_empty())
            .collect();

        let pods = count_by_state(
            &["ready", "notready"],
            &handlers,
            sandboxes
                .iter()
                .map(|s| (pod_state(s.state), s.runtime_handler.as_str())),
        );
        pods.encode(encoder.encode_descriptor(
            "pods",
            "Pods the daemon knows, by state and runtime handler.",
            None,
            pods.metric_type(),
        )?)?;

        let by_container = count_by_state(
            &["created", "running", "exited", "unknown"],
            &handlers,
            containers
                .iter()
                .map(|c| (container_state(c.state), c.runtime_handler.as_str())),
        );
        by_container.encode(encoder.encode_descriptor(
            "containers",
            "Workload containers the daemon knows, by state and runtime handler.",
            None,
            by_container.metric_type(),
        )?)?;

        let pulled = ConstCounter::new(daemon.images.bytes_pulled());
        pulled.encode(encoder.encode_descriptor(
            "image_pull_bytes",
            "Bytes of manifests, configs and layers fetched from registries and stored.",
            None,
            pulled.metric_type(),
        )?)?;
        Ok(())
    }
}

/// A registry of everything the daemon serves: its counters, and the gauges
/// [`StoreCollector`] reads from `daemon` at each scrape. The registry holds
/// the daemon weakly, so serving metrics never keeps a stopped daemon alive.
pub fn registry(daemon: &Arc<Daemon>) -> Registry {
    let mut registry = Registry::with_prefix(super::PREFIX);
    daemon.metrics.register(&mut registry);
    registry.register_collector(Box::new(StoreCollector::new(Arc::downgrade(daemon))));
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn states_are_counted_per_handler_with_zeros_for_the_rest() {
        let handlers: BTreeSet<String> = ["runc".to_string(), "runsc".to_string()].into();
        let family = count_by_state(
            &["ready", "notready"],
            &handlers,
            [("ready", "runc"), ("ready", "runc"), ("notready", "runsc")].into_iter(),
        );
        let mut registry = Registry::with_prefix("cri_server");
        registry.register("pods", "p", family);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "cri_server_pods{state=\"ready\",handler=\"runc\"} 2",
            "cri_server_pods{state=\"notready\",handler=\"runc\"} 0",
            "cri_server_pods{state=\"ready\",handler=\"runsc\"} 0",
            "cri_server_pods{state=\"notready\",handler=\"runsc\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn a_collector_without_its_daemon_reports_nothing() {
        let mut registry = Registry::with_prefix("cri_server");
        registry.register_collector(Box::new(StoreCollector::new(Weak::new())));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert_eq!(text, "# EOF\n");
    }
}
