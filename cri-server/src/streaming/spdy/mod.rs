//! SPDY/3.1 as Kubernetes streaming uses it: framing, compressed header
//! blocks, and the session that maps streams to remotecommand channels.

use super::protocol::StreamRequest;
use crate::daemon::Daemon;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

/// Answers an `Upgrade: SPDY/3.1` request.
pub fn upgrade(
    _daemon: Arc<Daemon>,
    _req: &mut Request<Incoming>,
    _request: StreamRequest,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(
        b"SPDY/3.1 sessions are not supported yet; use WebSocket\n",
    )));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}
