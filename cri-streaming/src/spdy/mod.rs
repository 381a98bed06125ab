//! SPDY/3.1 as Kubernetes streaming uses it: framing, compressed header
//! blocks, and the session that maps streams to remotecommand channels or
//! forwarded ports.

pub mod dictionary;
pub mod flow;
mod forward;
pub mod frame;
pub mod header_block;
mod session;
mod writer;

use crate::request::{Command, StreamRequest};
use crate::Backend;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use session::Mode;
pub use writer::MAX_PENDING;

/// Remotecommand protocol versions, most preferred first.
pub const REMOTECOMMAND_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// The portforward protocol.
pub const PORTFORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// The best of the client's `X-Stream-Protocol-Version` offers (the header
/// may repeat and may hold comma-separated lists).
pub fn negotiate<'a, I: IntoIterator<Item = &'a str>>(
    offers: I,
    port_forward: bool,
) -> Option<&'static str> {
    let offers: Vec<&str> = offers
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if port_forward {
        return offers
            .contains(&PORTFORWARD_PROTOCOL)
            .then_some(PORTFORWARD_PROTOCOL);
    }
    REMOTECOMMAND_PROTOCOLS
        .into_iter()
        .find(|p| offers.contains(p))
}

/// Answers an `Upgrade: SPDY/3.1` request: 101 with the negotiated protocol,
/// then the session runs on the upgraded connection.
pub(crate) fn upgrade(
    backend: Backend,
    req: &mut Request<Incoming>,
    request: StreamRequest,
) -> Response<Full<Bytes>> {
    let offers = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let mode = match request {
        StreamRequest::Exec(exec) => Mode::Command(Command::Exec(exec)),
        StreamRequest::Attach(attach) => Mode::Command(Command::Attach(attach)),
        StreamRequest::PortForward(forward) => Mode::PortForward {
            pod: forward.pod_sandbox_id,
        },
    };
    let port_forward = matches!(mode, Mode::PortForward { .. });
    let Some(protocol) = negotiate(offers, port_forward) else {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"unable to upgrade: unable to negotiate protocol\n",
        )));
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => session::serve(TokioIo::new(upgraded), backend, mode, protocol).await,
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", protocol)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn negotiation() {
        assert_eq!(
            super::negotiate(["channel.k8s.io, v4.channel.k8s.io"], false),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            super::negotiate(["v2.channel.k8s.io"], false),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(super::negotiate(["v9.channel.k8s.io"], false), None);
        assert_eq!(
            super::negotiate(["portforward.k8s.io"], true),
            Some("portforward.k8s.io")
        );
        assert_eq!(super::negotiate(["v4.channel.k8s.io"], true), None);
    }
}
