//! The `[tracing]` table: OpenTelemetry spans of every CRI call, sent to
//! an OTLP/gRPC collector (`crate::otel`). Off unless `endpoint` is set.

use serde::{Deserialize, Serialize};
use tonic::codegen::http::Uri;

/// The `[tracing]` table.
///
/// # Examples
///
/// ```
/// use cri_server::config::Config;
///
/// assert!(!Config::default().tracing.enabled());
/// let config: Config =
///     toml::from_str("[tracing]\nendpoint = \"http://127.0.0.1:4317\"").unwrap();
/// assert!(config.tracing.enabled());
/// assert_eq!(config.tracing.sampling_ratio, 1.0);
/// assert_eq!(config.tracing.service_name, "cri-server");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's OTLP/gRPC endpoint, `http://HOST:PORT` (4317 is
    /// OTLP's port); empty (the default) turns tracing off, and then
    /// nothing of it runs. Plain HTTP/2 only: a collector on the node or
    /// reached through a local agent.
    pub endpoint: String,
    /// The share of traces kept, from 0 to 1 (the default: all). A call
    /// whose client sent a W3C `traceparent` follows the client's choice.
    pub sampling_ratio: f64,
    /// The `service.name` the spans are reported under.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            endpoint: String::new(),
            sampling_ratio: 1.0,
            service_name: "cri-server".into(),
        }
    }
}

impl TracingConfig {
    /// Whether spans are exported at all.
    pub fn enabled(&self) -> bool {
        !self.endpoint.is_empty()
    }

    /// Checks each key; the error says which ([`TracingConfigError::key`]).
    pub(super) fn check(&self) -> Result<(), TracingConfigError> {
        if self.enabled() {
            check_endpoint(&self.endpoint)?;
        }
        // Written so that NaN fails too.
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(TracingConfigError::SamplingRatio(self.sampling_ratio));
        }
        if self.service_name.trim().is_empty() {
            return Err(TracingConfigError::ServiceName);
        }
        Ok(())
    }
}

/// Accepts `http://HOST:PORT` with nothing after the port but `/`.
fn check_endpoint(endpoint: &str) -> Result<(), TracingConfigError> {
    let bad = |why: &'static str| TracingConfigError::Endpoint {
        endpoint: endpoint.to_string(),
        why,
    };
    let uri: Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "https is not supported; use http:// to a collector on the node or a local agent",
            ))
        }
        _ => return Err(bad("the scheme must be http://")),
    }
    let authority = uri.authority().ok_or(bad("no host"))?;
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    if authority.port_u16().is_none_or(|port| port == 0) {
        return Err(bad("no port (OTLP/gRPC listens on 4317)"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("a gRPC endpoint has no path"));
    }
    Ok(())
}

/// Why a `[tracing]` key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TracingConfigError {
    /// The endpoint is not `http://HOST:PORT`.
    #[error("{endpoint:?}: {why} (e.g. \"http://127.0.0.1:4317\"; empty turns tracing off)")]
    Endpoint {
        /// The value given.
        endpoint: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The ratio is outside 0..=1.
    #[error("{0} is not a ratio from 0 to 1")]
    SamplingRatio(f64),
    /// The service name is blank.
    #[error("must not be empty")]
    ServiceName,
}

impl TracingConfigError {
    /// The dotted key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            TracingConfigError::Endpoint { .. } => "tracing.endpoint",
            TracingConfigError::SamplingRatio(_) => "tracing.sampling_ratio",
            TracingConfigError::ServiceName => "tracing.service_name",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(endpoint: &str) -> Result<(), TracingConfigError> {
        TracingConfig {
            endpoint: endpoint.into(),
            ..TracingConfig::default()
        }
        .check()
    }

    #[test]
    fn off_by_default() {
        let config = TracingConfig::default();
        assert!(!config.enabled());
        config.check().unwrap();
    }

    #[test]
    fn endpoints_must_be_http_host_and_port() {
        for good in [
            "http://127.0.0.1:4317",
            "http://[::1]:4317/",
            "http://otel-collector.monitoring:4317",
        ] {
            with_endpoint(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, why) in [
            ("127.0.0.1:4317", "scheme"),
            ("localhost", "scheme"),
            ("https://127.0.0.1:4317", "https is not supported"),
            ("grpc://127.0.0.1:4317", "scheme"),
            ("http://127.0.0.1", "no port"),
            ("http://127.0.0.1:0", "no port"),
            ("http://127.0.0.1:4317/v1/traces", "no path"),
            ("http://", "not a URL"),
            ("http://a b:4317", "not a URL"),
        ] {
            let err = with_endpoint(bad).unwrap_err();
            assert_eq!(err.key(), "tracing.endpoint");
            let message = err.to_string();
            assert!(message.contains(why), "{bad}: {message}");
            assert!(message.contains(bad), "{bad}: {message}");
        }
    }

    #[test]
    fn sampling_ratio_is_from_zero_to_one() {
        for (ratio, ok) in [
            (0.0, true),
            (0.25, true),
            (1.0, true),
            (-0.1, false),
            (1.5, false),
            (f64::NAN, false),
        ] {
            let config = TracingConfig {
                sampling_ratio: ratio,
                ..TracingConfig::default()
            };
            match config.check() {
                Ok(()) => assert!(ok, "{ratio} accepted"),
                Err(e) => {
                    assert!(!ok, "{ratio}: {e}");
                    assert_eq!(e.key(), "tracing.sampling_ratio");
                }
            }
        }
    }

    #[test]
    fn a_blank_service_name_is_refused() {
        let config = TracingConfig {
            service_name: " ".into(),
            ..TracingConfig::default()
        };
        assert_eq!(config.check().unwrap_err().key(), "tracing.service_name");
    }
}
