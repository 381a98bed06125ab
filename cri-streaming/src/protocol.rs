//! What the remotecommand protocol shares whatever carries it (SPDY or
//! WebSocket): the stream kinds, the error stream's `metav1.Status` and the
//! resize message.

use bytes::Bytes;
use serde::Deserialize;

/// A remotecommand stream, by the `streamType` header (SPDY) or channel
/// number (WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Client → process.
    Stdin,
    /// Process → client.
    Stdout,
    /// Process → client.
    Stderr,
    /// Server → client: the outcome (a `metav1.Status` from v4 on).
    Error,
    /// Client → server: terminal sizes as JSON.
    Resize,
}

impl StreamKind {
    /// From a SPDY `streamType` header value.
    pub fn from_header(value: &str) -> Option<StreamKind> {
        Some(match value {
            "stdin" => StreamKind::Stdin,
            "stdout" => StreamKind::Stdout,
            "stderr" => StreamKind::Stderr,
            "error" => StreamKind::Error,
            "resize" => StreamKind::Resize,
            _ => return None,
        })
    }

    /// The WebSocket channel number.
    pub fn channel(self) -> u8 {
        match self {
            StreamKind::Stdin => 0,
            StreamKind::Stdout => 1,
            StreamKind::Stderr => 2,
            StreamKind::Error => 3,
            StreamKind::Resize => 4,
        }
    }

    /// From a WebSocket channel number.
    pub fn from_channel(channel: u8) -> Option<StreamKind> {
        Some(match channel {
            0 => StreamKind::Stdin,
            1 => StreamKind::Stdout,
            2 => StreamKind::Stderr,
            3 => StreamKind::Error,
            4 => StreamKind::Resize,
            _ => return None,
        })
    }
}

/// A terminal size, as clients send it on the resize stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Splits resize-stream bytes into sizes: clients write one JSON object per
/// event, possibly several in one frame. Bad JSON ends the decoding.
pub fn parse_sizes(data: &[u8]) -> Vec<TerminalSize> {
    serde_json::Deserializer::from_slice(data)
        .into_iter::<TerminalSize>()
        .map_while(Result::ok)
        .collect()
}

/// How a command ended, as the error stream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Success,
    /// Any other exit code.
    Exited(i32),
    /// It could not run at all, or the session failed.
    Failed(String),
}

impl Outcome {
    /// The error stream's payload. From v4 on (`structured`), a
    /// `metav1.Status`; before, a plain message and nothing on success.
    pub fn encode(&self, structured: bool) -> Option<Bytes> {
        if !structured {
            return match self {
                Outcome::Success => None,
                Outcome::Exited(code) => Some(Bytes::from(format!(
                    "command terminated with non-zero exit code: exit status {code}"
                ))),
                Outcome::Failed(message) => Some(Bytes::from(message.clone())),
            };
        }
        let status = match self {
            Outcome::Success => serde_json::json!({"metadata": {}, "status": "Success"}),
            Outcome::Exited(code) => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Outcome::Failed(message) => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "InternalError",
                "code": 500,
            }),
        };
        Some(Bytes::from(status.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_status_is_what_kubectl_reads() {
        let json: serde_json::Value =
            serde_json::from_slice(&Outcome::Exited(3).encode(true).unwrap()).unwrap();
        assert_eq!(json["status"], "Failure");
        assert_eq!(json["reason"], "NonZeroExitCode");
        assert_eq!(json["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(json["details"]["causes"][0]["message"], "3");
        let ok: serde_json::Value =
            serde_json::from_slice(&Outcome::Success.encode(true).unwrap()).unwrap();
        assert_eq!(ok["status"], "Success");
        assert_eq!(Outcome::Success.encode(false), None);
    }

    #[test]
    fn sizes_parse_one_or_many_and_stop_at_garbage() {
        let s = parse_sizes(br#"{"Width":80,"Height":24}{"Width":100,"Height":40}"#);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].width, 100);
        assert!(parse_sizes(b"not json").is_empty());
    }

    #[test]
    fn channels_round_trip() {
        for c in 0..=4 {
            assert_eq!(StreamKind::from_channel(c).unwrap().channel(), c);
        }
        assert_eq!(StreamKind::from_channel(5), None);
        assert_eq!(StreamKind::from_header("resize"), Some(StreamKind::Resize));
    }
}
