//! OpenTelemetry spans of every CRI call, exported over OTLP/gRPC when
//! `[tracing] endpoint` is set (off by default: then nothing here runs, no
//! thread, no connection, and the layer only passes calls on).
//!
//! - [`layer`]: the tower layer that makes one span per call.
//! - [`attributes`]: the pod, container and image ids a call's messages name.
//! - [`kept`]: the messages' bytes, kept (capped) for that.
//! - [`exporter`]: OTLP's exporter, logging an unreachable collector once.
//!
//! A CRI call never waits for the collector: a finished span goes into the
//! SDK's bounded queue ([`QUEUE_SPANS`]) without blocking, and one thread of
//! the SDK's own sends batches (its gRPC connection runs on the daemon's
//! runtime). When the queue is full, because the collector is slow or gone,
//! new spans are dropped. On SIGTERM what is queued is sent within
//! [`FLUSH_BOUND`].

pub mod attributes;
pub mod exporter;
pub mod kept;
pub mod layer;

use crate::config::TracingConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use std::time::Duration;

/// The most finished spans waiting for export; past it spans are dropped.
/// A CRI call's span is well under 1 KiB (one naming a 2 KB image about
/// 4 KiB), so the queue holds about a MiB, a few at worst.
pub const QUEUE_SPANS: usize = 2048;
/// How long one export may take, retries included, before its batch is
/// given up (a collector that accepts connections and never answers).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the last spans to be sent.
pub const FLUSH_BOUND: Duration = Duration::from_secs(2);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    /// The OTLP exporter refused its configuration.
    #[error("tracing.endpoint {endpoint:?}: {source}")]
    Exporter {
        /// The endpoint configured.
        endpoint: String,
        /// The exporter's reason.
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The running exporter: a tracer for the layer, and the provider to flush
/// at shutdown.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts exporting to `config.endpoint`, or returns `None` when it is
    /// empty. Must run inside the daemon's tokio runtime: the exporter's
    /// channel lives there. Connects only when the first batch is sent.
    pub fn start(config: &TracingConfig) -> Result<Option<Tracing>, TracingError> {
        if !config.enabled() {
            return Ok(None);
        }
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|source| TracingError::Exporter {
                endpoint: config.endpoint.clone(),
                source,
            })?;
        let exporter = exporter::Reporting::new(otlp, &config.endpoint);
        let batches = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE_SPANS)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batches)
            .build();
        let root_sampler = Sampler::TraceIdRatioBased(config.sampling_ratio);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(root_sampler)))
            .with_resource(resource(config))
            .build();
        tracing::info!(endpoint = %config.endpoint, ratio = config.sampling_ratio, "exporting CRI call spans over OTLP/gRPC");
        Ok(Some(Tracing { provider }))
    }

    /// The tracer the layer makes spans with.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("cri-server")
    }

    /// Sends what is queued and stops the export thread, waiting at most
    /// [`FLUSH_BOUND`]; an unreachable collector loses those spans.
    pub async fn shutdown(self) {
        let provider = self.provider;
        // Blocking: it waits on the export thread, whose export runs on
        // this runtime.
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_BOUND)).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!("spans flushed"),
            Ok(Err(error)) => tracing::warn!(%error, "the last spans were not all sent"),
            Err(error) => tracing::warn!(%error, "flushing spans failed"),
        }
    }
}

/// `service.name` from the config, and the daemon's version.
fn resource(config: &TracingConfig) -> Resource {
    Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn off_without_an_endpoint() {
        assert!(Tracing::start(&TracingConfig::default()).unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn on_with_an_endpoint_and_shut_down_within_the_bound() {
        let config = TracingConfig {
            // Nothing listens there: the spans are lost, and shutdown
            // still returns in time.
            endpoint: "http://127.0.0.1:9".into(),
            ..TracingConfig::default()
        };
        let tracing = Tracing::start(&config).unwrap().expect("on");
        use opentelemetry::trace::{Span as _, Tracer as _};
        tracing.tracer().start("a span").end();
        let started = std::time::Instant::now();
        tracing.shutdown().await;
        assert!(started.elapsed() < FLUSH_BOUND + Duration::from_secs(1));
    }
}
