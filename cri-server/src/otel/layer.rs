//! One OpenTelemetry span per CRI call, made by a tower layer around both
//! services, beside the metrics layer (`crate::metrics::rpc`) and read the
//! same way: the gRPC code from the headers of a trailers-only answer,
//! else from the trailers.
//!
//! The span is named after the method (`runtime.v1.RuntimeService/
//! RunPodSandbox`), is a child of the caller's span when the request
//! carries a W3C `traceparent` (kubelet's tracing sends one), and carries
//! `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code` and
//! what [`super::attributes`] reads from the messages. Any code but OK sets
//! the span's status to error with the gRPC message. Without a tracer the
//! layer only passes calls on.

use super::attributes;
use super::kept::{Chunks, KeptBody, SharedChunks};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status as SpanStatus, Tracer as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::{Code, Status};

/// The layer to add to the gRPC server.
///
/// # Examples
///
/// ```
/// use cri_server::otel::layer::SpanLayer;
///
/// // Tracing off: calls pass through untouched.
/// let _server = tonic::transport::Server::builder().layer(SpanLayer::new(None));
/// ```
#[derive(Clone, Debug)]
pub struct SpanLayer {
    tracer: Option<SdkTracer>,
}

impl SpanLayer {
    /// A layer making spans with `tracer`; `None` makes none.
    pub fn new(tracer: Option<SdkTracer>) -> Self {
        SpanLayer { tracer }
    }
}

impl<S> tower::Layer<S> for SpanLayer {
    type Service = TraceRpc<S>;

    fn layer(&self, inner: S) -> TraceRpc<S> {
        TraceRpc {
            inner,
            tracer: self.tracer.clone(),
        }
    }
}

/// The service [`SpanLayer`] wraps around the gRPC routes.
#[derive(Clone, Debug)]
pub struct TraceRpc<S> {
    inner: S,
    tracer: Option<SdkTracer>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for TraceRpc<S>
where
    S: tower::Service<http::Request<KeptBody<ReqBody>>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ReqBody: Body<Data = Bytes> + Unpin,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
{
    type Response = http::Response<SpanBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = self.tracer.as_ref().and_then(|t| Call::start(t, &request));
        let kept = call.as_ref().map(|c| Arc::clone(&c.request));
        let response = self
            .inner
            .call(request.map(|body| KeptBody::new(body, kept)));
        Box::pin(async move {
            let response = match response.await {
                Ok(response) => response,
                Err(e) => {
                    // The routes never fail this way (see metrics::rpc).
                    if let Some(call) = call {
                        call.finish(&Status::unknown("the gRPC routes failed"));
                    }
                    return Err(e);
                }
            };
            let call = match (call, Status::from_header_map(response.headers())) {
                (Some(call), Some(status)) => {
                    call.finish(&status);
                    None
                }
                (call, _) => call,
            };
            Ok(response.map(|inner| SpanBody { inner, call }))
        })
    }
}

/// A call being traced: its span (recording) and its messages' bytes.
#[derive(Debug)]
struct Call {
    span: Span,
    /// The bare method name, such as `RunPodSandbox`.
    method: String,
    request: SharedChunks,
    /// Kept only for the methods whose answer names an object.
    response: Option<Chunks>,
}

impl Call {
    /// A span for `request`, or `None` for a path outside the CRI services
    /// or a call the sampler left out.
    fn start<B>(tracer: &SdkTracer, request: &http::Request<B>) -> Option<Call> {
        let name = crate::metrics::rpc::method_label(request.uri().path());
        let (service, method) = name.split_once('/')?;
        let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
        let builder = tracer
            .span_builder(name.clone())
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service.to_string()),
                KeyValue::new("rpc.method", method.to_string()),
            ]);
        let span = tracer.build_with_context(builder, &parent);
        if !span.is_recording() {
            return None;
        }
        Some(Call {
            span,
            response: attributes::response_has_attributes(method).then(Chunks::default),
            method: method.to_string(),
            request: Arc::default(),
        })
    }

    /// Ends the span with `status` and what the messages said.
    fn finish(mut self, status: &Status) {
        let request = self.request.lock().ok().and_then(|c| c.first_message());
        if let Some(message) = request {
            let found = attributes::of_request(&self.method, &message);
            self.span.set_attributes(found);
        }
        let code = status.code();
        self.span
            .set_attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
        if code == Code::Ok {
            if let Some(message) = self.response.as_ref().and_then(Chunks::first_message) {
                let found = attributes::of_response(&self.method, &message);
                self.span.set_attributes(found);
            }
        } else {
            self.span.set_status(SpanStatus::error(describe(status)));
        }
        self.span.end();
    }
}

/// The span's error description: the gRPC message, or the code's name when
/// there is none.
fn describe(status: &Status) -> String {
    if status.message().is_empty() {
        status.code().description().to_string()
    } else {
        status.message().to_string()
    }
}

/// The request's headers as the propagator reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// A response body that ends its call's span when the trailers go by.
pub struct SpanBody<B> {
    inner: B,
    /// `None` once ended (or when nothing is traced).
    call: Option<Call>,
}

impl<B> std::fmt::Debug for SpanBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanBody")
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

impl<B> SpanBody<B> {
    fn finish(&mut self, status: &Status) {
        if let Some(call) = self.call.take() {
            call.finish(status);
        }
    }

    /// Keeps a data frame of a response whose answer names an object.
    fn keep(&mut self, frame: &Frame<Bytes>) {
        let response = self.call.as_mut().and_then(|c| c.response.as_mut());
        if let (Some(response), Some(data)) = (response, frame.data_ref()) {
            response.push(data);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for SpanBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                Some(trailers) => {
                    let status = Status::from_header_map(trailers).unwrap_or_else(|| {
                        Status::unknown("the answer's trailers carry no grpc-status")
                    });
                    this.finish(&status);
                }
                None => this.keep(frame),
            },
            Poll::Ready(Some(Err(_))) => {
                this.finish(&Status::unknown("the answer's body failed"));
            }
            Poll::Ready(None) => this.finish(&Status::unknown("the answer ended without a status")),
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

impl<B> Drop for SpanBody<B> {
    fn drop(&mut self) {
        self.finish(&Status::cancelled(
            "the client went away before the answer ended",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty, Full, StreamBody};
    use opentelemetry::trace::{Status as SpanStatus, TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use prost::Message;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use tower::{Layer, Service};

    /// Keeps every span it is given.
    #[derive(Clone, Debug, Default)]
    struct Collected(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collected {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    impl Collected {
        fn spans(&self) -> Vec<SpanData> {
            self.0.lock().unwrap().clone()
        }
    }

    fn provider() -> (SdkTracerProvider, Collected) {
        let exporter = Collected::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        (provider, exporter)
    }

    fn grpc_frame(message: &impl Message) -> Bytes {
        let encoded = message.encode_to_vec();
        let mut out = vec![0];
        out.extend((encoded.len() as u32).to_be_bytes());
        out.extend(encoded);
        Bytes::from(out)
    }

    fn request(path: &str, body: Bytes) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .uri(path)
            .body(Full::new(body))
            .unwrap()
    }

    fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    fn only_span(exporter: &Collected) -> SpanData {
        let mut spans = exporter.spans();
        assert_eq!(spans.len(), 1, "{spans:?}");
        spans.remove(0)
    }

    #[tokio::test]
    async fn a_call_answered_in_the_trailers_names_its_objects() {
        let (provider, exporter) = provider();
        let tracer = provider.tracer("test");
        // A handler that reads the request, as tonic does, then answers.
        let mut service = SpanLayer::new(Some(tracer)).layer(tower::service_fn(
            |request: http::Request<_>| async move {
                let body: KeptBody<Full<Bytes>> = request.into_body();
                body.collect().await.unwrap();
                let answer = cri_api::v1::RunPodSandboxResponse {
                    pod_sandbox_id: "new-pod".into(),
                };
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let frames = vec![
                    Ok::<_, Infallible>(Frame::data(grpc_frame(&answer))),
                    Ok(Frame::trailers(trailers)),
                ];
                let body = StreamBody::new(futures_util::stream::iter(frames));
                Ok::<_, Infallible>(http::Response::new(body))
            },
        ));
        let run = cri_api::v1::RunPodSandboxRequest {
            config: Some(cri_api::v1::PodSandboxConfig {
                metadata: Some(cri_api::v1::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "uid-1".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        };
        let response = service
            .call(request(
                "/runtime.v1.RuntimeService/RunPodSandbox",
                grpc_frame(&run),
            ))
            .await
            .unwrap();
        assert!(exporter.spans().is_empty());
        response.into_body().collect().await.unwrap();
        let span = only_span(&exporter);
        assert_eq!(span.name, "runtime.v1.RuntimeService/RunPodSandbox");
        assert_eq!(span.span_kind, SpanKind::Server);
        assert_eq!(attribute(&span, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(
            attribute(&span, "rpc.service").as_deref(),
            Some("runtime.v1.RuntimeService")
        );
        assert_eq!(
            attribute(&span, "rpc.method").as_deref(),
            Some("RunPodSandbox")
        );
        assert_eq!(
            attribute(&span, "rpc.grpc.status_code").as_deref(),
            Some("0")
        );
        assert_eq!(
            attribute(&span, attributes::POD_SANDBOX_ID).as_deref(),
            Some("new-pod")
        );
        assert_eq!(
            attribute(&span, attributes::POD_UID).as_deref(),
            Some("uid-1")
        );
        assert_eq!(span.status, SpanStatus::Unset);
    }

    #[tokio::test]
    async fn a_trailers_only_error_sets_the_status_with_its_message() {
        let (provider, exporter) = provider();
        let mut service =
            SpanLayer::new(Some(provider.tracer("test"))).layer(tower::service_fn(|_| async {
                let response = http::Response::builder()
                    .header("grpc-status", "5")
                    .header("grpc-message", "container%20c1%20not%20found")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                Ok::<_, Infallible>(response)
            }));
        let status = cri_api::v1::ContainerStatusRequest {
            container_id: "c1".into(),
            verbose: false,
        };
        let response = service
            .call(request(
                "/runtime.v1.RuntimeService/ContainerStatus",
                grpc_frame(&status),
            ))
            .await
            .unwrap();
        // Ended from the headers, and not again when the body goes.
        drop(response);
        let span = only_span(&exporter);
        assert_eq!(
            attribute(&span, "rpc.grpc.status_code").as_deref(),
            Some("5")
        );
        assert_eq!(span.status, SpanStatus::error("container c1 not found"));
    }

    #[tokio::test]
    async fn a_traceparent_makes_the_span_a_child_and_dropped_bodies_are_cancelled() {
        let (provider, exporter) = provider();
        let mut service =
            SpanLayer::new(Some(provider.tracer("test"))).layer(tower::service_fn(|_| async {
                Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
            }));
        let mut request = request(
            "/runtime.v1.RuntimeService/GetContainerEvents",
            Bytes::new(),
        );
        request.headers_mut().insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        );
        drop(service.call(request).await.unwrap());
        let span = only_span(&exporter);
        assert_eq!(
            span.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(span.parent_span_id.to_string(), "b7ad6b7169203331");
        assert_eq!(
            attribute(&span, "rpc.grpc.status_code").as_deref(),
            Some("1")
        );
        assert!(matches!(span.status, SpanStatus::Error { .. }));
        // The layer's own context plays no part: nothing was active.
        assert!(!opentelemetry::Context::current().has_active_span());
    }

    #[tokio::test]
    async fn without_a_tracer_or_outside_cri_nothing_is_recorded() {
        let (provider, exporter) = provider();
        let answer = |_| async { Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new())) };
        let mut off = SpanLayer::new(None).layer(tower::service_fn(answer));
        drop(
            off.call(request("/runtime.v1.RuntimeService/Version", Bytes::new()))
                .await,
        );
        let mut on = SpanLayer::new(Some(provider.tracer("test"))).layer(tower::service_fn(answer));
        drop(
            on.call(request("/grpc.health.v1.Health/Check", Bytes::new()))
                .await,
        );
        assert!(exporter.spans().is_empty());
    }
}
