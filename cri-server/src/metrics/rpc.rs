//! Per-RPC metrics, recorded by one tower layer around both CRI services:
//! requests, errors and latency by method and gRPC code.
//!
//! The gRPC code travels in `grpc-status`: in the response headers when the
//! answer is trailers-only (tonic answers every error that way), otherwise
//! in the trailers after the body. The layer reads the headers first and,
//! when the code is not there, wraps the body to catch the trailers. A body
//! dropped before its trailers (a client that closed a stream) counts as
//! `Canceled`.

use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::codegen::http;
use tonic::Code;

/// The label set of every RPC metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: &'static str,
}

/// Latency buckets: 0.5 ms up to about two minutes (a large image pull), in
/// factors of four.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 4.0, 10))
}

/// Requests, errors and latency by method and code. Clones share the
/// counts.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    requests: Family<RpcLabels, Counter>,
    errors: Family<RpcLabels, Counter>,
    latency: Family<RpcLabels, Histogram, fn() -> Histogram>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl RpcMetrics {
    /// Records one finished call of `method` (a gRPC path) that ended with
    /// `code` after `elapsed`.
    pub fn record(&self, method: &str, code: Code, elapsed: Duration) {
        let labels = RpcLabels {
            method: method_label(method),
            code: code_name(code),
        };
        self.requests.get_or_create(&labels).inc();
        if code != Code::Ok {
            self.errors.get_or_create(&labels).inc();
        }
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Registers the three families in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "grpc_requests",
            "CRI calls handled, by method and gRPC code.",
            self.requests.clone(),
        );
        registry.register(
            "grpc_errors",
            "CRI calls that ended with a gRPC code other than OK, by method and code.",
            self.errors.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "Time from a CRI call's arrival to its gRPC status, by method and code.",
            self.latency.clone(),
        );
    }
}

/// The `method` label of a request path: `runtime.v1.RuntimeService/Version`
/// for `/runtime.v1.RuntimeService/Version`. A path outside the CRI
/// services, or one no method could have, is `other`, so a client cannot
/// make up label values without bound. Spans are named the same way
/// (`crate::otel::layer`).
pub(crate) fn method_label(path: &str) -> String {
    let path = path.trim_start_matches('/');
    let known = ["runtime.v1.RuntimeService/", "runtime.v1.ImageService/"]
        .iter()
        .find_map(|service| path.strip_prefix(service))
        .is_some_and(|method| {
            !method.is_empty()
                && method.len() <= 64
                && method.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if known {
        path.to_string()
    } else {
        "other".to_string()
    }
}

/// The canonical gRPC name of `code`, as other gRPC servers label it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// The layer to add to the gRPC server.
///
/// # Examples
///
/// ```
/// use cri_server::metrics::rpc::{RpcMetrics, RpcMetricsLayer};
///
/// let metrics = RpcMetrics::default();
/// let _server = tonic::transport::Server::builder().layer(RpcMetricsLayer::new(metrics));
/// ```
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    metrics: RpcMetrics,
}

impl RpcMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        RpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RecordRpc<S>;

    fn layer(&self, inner: S) -> RecordRpc<S> {
        RecordRpc {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`RpcMetricsLayer`] wraps around the gRPC routes.
#[derive(Clone, Debug)]
pub struct RecordRpc<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RecordRpc<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Send + 'static,
{
    type Response = http::Response<RecordedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = Call {
            metrics: self.metrics.clone(),
            method: request.uri().path().to_string(),
            started: Instant::now(),
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await {
                Ok(response) => {
                    let pending = match grpc_status(response.headers()) {
                        Some(code) => {
                            call.finish(code);
                            None
                        }
                        None => Some(call),
                    };
                    Ok(response.map(|body| RecordedBody {
                        inner: Box::pin(body),
                        pending,
                    }))
                }
                Err(e) => {
                    // The routes never fail this way; if they did, the
                    // client would see no gRPC status at all.
                    call.finish(Code::Unknown);
                    Err(e)
                }
            }
        })
    }
}

/// A call whose code is not known yet.
#[derive(Debug)]
struct Call {
    metrics: RpcMetrics,
    method: String,
    started: Instant,
}

impl Call {
    fn finish(self, code: Code) {
        self.metrics
            .record(&self.method, code, self.started.elapsed());
    }
}

/// A response body that records its call when the trailers go by.
pub struct RecordedBody<B> {
    inner: Pin<Box<B>>,
    /// `None` once recorded (or when the headers carried the code).
    pending: Option<Call>,
}

impl<B> std::fmt::Debug for RecordedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedBody")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl<B> RecordedBody<B> {
    fn finish(&mut self, code: Code) {
        if let Some(call) = self.pending.take() {
            call.finish(code);
        }
    }
}

impl<B: Body> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        // Unpin: the inner body is boxed, the rest is plain data.
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(Code::Unknown),
            // A gRPC response always ends with a status; one without is
            // broken, whatever it carried.
            Poll::Ready(None) => this.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for RecordedBody<B> {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, StreamBody};
    use prometheus_client::encoding::text::encode;
    use std::convert::Infallible;
    use tower::{Layer, Service};

    fn scrape(metrics: &RpcMetrics) -> String {
        let mut registry = Registry::with_prefix(super::super::PREFIX);
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn methods_outside_the_cri_services_are_other() {
        assert_eq!(
            method_label("/runtime.v1.RuntimeService/Version"),
            "runtime.v1.RuntimeService/Version"
        );
        assert_eq!(
            method_label("/runtime.v1.ImageService/PullImage"),
            "runtime.v1.ImageService/PullImage"
        );
        for other in [
            "/",
            "/grpc.health.v1.Health/Check",
            "/runtime.v1.RuntimeService/",
            "/runtime.v1.RuntimeService/a/b",
            &format!("/runtime.v1.RuntimeService/{}", "x".repeat(65)),
        ] {
            assert_eq!(method_label(other), "other", "{other}");
        }
    }

    #[test]
    fn codes_have_their_canonical_names() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::from_bytes(b"5")), "NotFound");
    }

    #[test]
    fn record_counts_requests_errors_and_latency() {
        let metrics = RpcMetrics::default();
        let method = "/runtime.v1.RuntimeService/Version";
        metrics.record(method, Code::Ok, Duration::from_millis(1));
        metrics.record(method, Code::NotFound, Duration::from_millis(1));
        let text = scrape(&metrics);
        let labels = "method=\"runtime.v1.RuntimeService/Version\"";
        assert!(
            text.contains(&format!(
                "cri_server_grpc_requests_total{{{labels},code=\"OK\"}} 1"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "cri_server_grpc_errors_total{{{labels},code=\"NotFound\"}} 1"
        )));
        assert!(!text.contains(&format!(
            "cri_server_grpc_errors_total{{{labels},code=\"OK\"}}"
        )));
        assert!(text.contains(&format!(
            "cri_server_grpc_request_duration_seconds_count{{{labels},code=\"OK\"}} 1"
        )));
    }

    fn request(path: &str) -> http::Request<Empty<Bytes>> {
        http::Request::builder()
            .uri(path)
            .body(Empty::new())
            .unwrap()
    }

    #[tokio::test]
    async fn a_trailers_only_error_is_read_from_the_headers() {
        let metrics = RpcMetrics::default();
        let mut service =
            RpcMetricsLayer::new(metrics.clone()).layer(tower::service_fn(|_| async {
                let response = http::Response::builder()
                    .header("grpc-status", "5")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                Ok::<_, Infallible>(response)
            }));
        let response = service
            .call(request("/runtime.v1.RuntimeService/ContainerStatus"))
            .await
            .unwrap();
        // Recorded before the body is read, and not again when it is dropped.
        assert!(scrape(&metrics).contains("code=\"NotFound\"} 1"));
        drop(response);
        let text = scrape(&metrics);
        assert!(!text.contains("Canceled"), "{text}");
    }

    #[tokio::test]
    async fn a_status_in_the_trailers_is_recorded_when_the_body_ends() {
        let metrics = RpcMetrics::default();
        let mut service =
            RpcMetricsLayer::new(metrics.clone()).layer(tower::service_fn(|_| async {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let frames = vec![
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"reply"))),
                    Ok(Frame::trailers(trailers)),
                ];
                let body = StreamBody::new(futures_util::stream::iter(frames));
                Ok::<_, Infallible>(http::Response::new(body))
            }));
        let response = service
            .call(request("/runtime.v1.ImageService/ListImages"))
            .await
            .unwrap();
        assert!(!scrape(&metrics).contains("ListImages"));
        let collected = response.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_some());
        let text = scrape(&metrics);
        assert!(
            text.contains(
                "cri_server_grpc_requests_total{method=\"runtime.v1.ImageService/ListImages\",code=\"OK\"} 1"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_status_is_canceled() {
        let metrics = RpcMetrics::default();
        let mut service =
            RpcMetricsLayer::new(metrics.clone()).layer(tower::service_fn(|_| async {
                Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
            }));
        let response = service
            .call(request("/runtime.v1.RuntimeService/GetContainerEvents"))
            .await
            .unwrap();
        drop(response);
        assert!(scrape(&metrics).contains("code=\"Canceled\"} 1"));
    }
}
