//! The exporter the batch processor drives: OTLP's, wrapped so that an
//! unreachable collector is logged once per outage rather than at every
//! batch (the SDK's own logging is compiled out).

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Wraps `E`, logging when exports start failing and when they work again.
#[derive(Debug)]
pub struct Reporting<E> {
    inner: E,
    endpoint: String,
    /// Whether the last export failed (a warning was logged for it).
    failing: AtomicBool,
}

impl<E> Reporting<E> {
    /// Wraps `inner`, which sends to `endpoint` (named in the log lines).
    pub fn new(inner: E, endpoint: &str) -> Self {
        Reporting {
            inner,
            endpoint: endpoint.to_string(),
            failing: AtomicBool::new(false),
        }
    }

    /// Logs a change between working and failing; nothing otherwise.
    fn note(&self, result: &OTelSdkResult, spans: usize) {
        match result {
            Err(error) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                endpoint = %self.endpoint,
                %error,
                spans,
                "OTLP collector unreachable: spans are dropped until it answers (CRI calls are not affected)"
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(endpoint = %self.endpoint, "OTLP collector answers again")
            }
            _ => {}
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.note(&result, spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Fails while `down` is set; counts calls.
    #[derive(Debug, Default)]
    struct Flaky {
        down: Arc<AtomicBool>,
        calls: AtomicUsize,
    }

    impl SpanExporter for Flaky {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                Err(OTelSdkError::InternalFailure("connection refused".into()))
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn results_pass_through_and_each_outage_is_noted_once() {
        let down = Arc::new(AtomicBool::new(true));
        let exporter = Reporting::new(
            Flaky {
                down: Arc::clone(&down),
                ..Flaky::default()
            },
            "http://127.0.0.1:1",
        );
        assert!(exporter.export(Vec::new()).await.is_err());
        assert!(exporter.failing.load(Ordering::Relaxed));
        assert!(exporter.export(Vec::new()).await.is_err());
        down.store(false, Ordering::Relaxed);
        assert!(exporter.export(Vec::new()).await.is_ok());
        assert!(!exporter.failing.load(Ordering::Relaxed));
        assert_eq!(exporter.inner.calls.load(Ordering::Relaxed), 3);
    }
}
