//! The `/metrics` HTTP endpoint: `GET /metrics` answers the registry in the
//! OpenMetrics text format; anything else is 404.

use bytes::Bytes;
use cri_streaming::accept::{self, Limits};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The content type of the OpenMetrics text format, which Prometheus
/// negotiates and parses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The endpoint's listener limits: a few scrapers.
pub const LIMITS: Limits = Limits {
    max_connections: 32,
    header_timeout: Duration::from_secs(10),
};

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listening socket could not be bound.
    #[error("metrics endpoint {address}: bind: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The bound endpoint, ready to serve once the daemon's registry exists.
///
/// # Examples
///
/// ```no_run
/// use cri_server::metrics::server::MetricsServer;
/// use prometheus_client::registry::Registry;
///
/// # async fn demo() -> Result<(), cri_server::metrics::server::MetricsError> {
/// let server = MetricsServer::bind("127.0.0.1:9090".parse().unwrap()).await?;
/// let task = server.spawn(Registry::default());
/// task.abort();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MetricsServer {
    listener: tokio::net::TcpListener,
}

impl MetricsServer {
    /// Binds `address`; the daemon binds before it restores its state, so
    /// a taken port stops it at once.
    pub async fn bind(address: SocketAddr) -> Result<MetricsServer, MetricsError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| MetricsError::Bind { address, source })?;
        Ok(MetricsServer { listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `registry` on a task of its own until the task is aborted.
    pub fn spawn(self, registry: Registry) -> tokio::task::JoinHandle<()> {
        let registry = Arc::new(registry);
        let listener = self.listener;
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "metrics endpoint listening");
        }
        tokio::spawn(accept::serve_forever(
            listener,
            "metrics",
            LIMITS,
            move |stream, peer| {
                let registry = Arc::clone(&registry);
                async move {
                    let service = hyper::service::service_fn(move |request| {
                        let registry = Arc::clone(&registry);
                        async move { Ok::<_, Infallible>(answer(&registry, &request)) }
                    });
                    let connection = LIMITS
                        .http1()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "metrics connection");
                    }
                }
            },
        ))
    }
}

fn answer(registry: &Registry, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    respond(registry, request.method(), request.uri().path())
}

/// The answer to `method path`.
fn respond(registry: &Registry, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if method == Method::GET && path == "/metrics" {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, registry) {
            Ok(()) => (StatusCode::OK, CONTENT_TYPE, text),
            // Encoding into a String fails only if a collector does.
            Err(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "encoding the metrics failed\n".to_string(),
            ),
        }
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the metrics are at GET /metrics\n".to_string(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use prometheus_client::metrics::counter::Counter;

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn get_metrics_answers_the_registry_and_the_rest_is_404() {
        let mut registry = Registry::with_prefix("cri_server");
        let counter = Counter::<u64>::default();
        counter.inc();
        registry.register("things", "Things.", counter);
        let ok = respond(&registry, &Method::GET, "/metrics");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["content-type"], CONTENT_TYPE);
        let text = body(ok).await;
        assert!(text.contains("cri_server_things_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        for (method, path) in [
            (Method::GET, "/"),
            (Method::GET, "/metrics/x"),
            (Method::POST, "/metrics"),
        ] {
            let response = respond(&registry, &method, path);
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        }
    }

    #[tokio::test]
    async fn the_endpoint_serves_over_tcp() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let address = server.local_addr().unwrap();
        let task = server.spawn(Registry::default());
        let answer = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap();
        task.abort();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("# EOF\n"), "{answer}");
    }
}
