//! The bytes of a traced call's messages, kept as they pass so that the
//! span can name the objects the call is about once it ends.
//!
//! Keeping costs no copy while the call runs (the chunks are shared
//! `Bytes`) and is capped: a message past [`LIMIT`] is not kept, and its
//! span simply names no object.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The most bytes kept of one direction of a call (gRPC's default message
/// cap is 4 MiB; CRI requests are a few KiB).
pub const LIMIT: usize = 1 << 20;

/// The gRPC message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// Chunks of a body, up to [`LIMIT`] bytes.
#[derive(Debug, Default)]
pub struct Chunks {
    chunks: Vec<Bytes>,
    len: usize,
    overflowed: bool,
}

impl Chunks {
    /// Keeps `data`, unless that would pass the limit (then nothing more is
    /// kept, and what was is let go).
    pub fn push(&mut self, data: &Bytes) {
        if self.overflowed {
            return;
        }
        if self.len + data.len() > LIMIT {
            self.overflowed = true;
            self.chunks = Vec::new();
            return;
        }
        self.len += data.len();
        self.chunks.push(data.clone());
    }

    /// The body's first gRPC message; `None` when it is not all there, is
    /// compressed, or was past the limit.
    pub fn first_message(&self) -> Option<Vec<u8>> {
        if self.overflowed || self.len < PREFIX {
            return None;
        }
        let whole: Vec<u8> = self.chunks.iter().flatten().copied().collect();
        let (prefix, rest) = whole.split_at(PREFIX);
        let compressed = prefix[0] != 0;
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if compressed || rest.len() < len {
            return None;
        }
        Some(rest[..len].to_vec())
    }
}

/// Chunks shared between a request body, which fills them, and the call's
/// span, which reads them at the end.
pub type SharedChunks = Arc<Mutex<Chunks>>;

/// A request body that keeps its chunks when asked to; otherwise it only
/// passes frames on.
#[derive(Debug)]
pub struct KeptBody<B> {
    inner: B,
    kept: Option<SharedChunks>,
}

impl<B> KeptBody<B> {
    /// `inner`, keeping its chunks in `kept` when there is one.
    pub fn new(inner: B, kept: Option<SharedChunks>) -> Self {
        KeptBody { inner, kept }
    }
}

impl<B> Body for KeptBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(kept)) = (&polled, &this.kept) {
            if let (Some(data), Ok(mut chunks)) = (frame.data_ref(), kept.lock()) {
                chunks.push(data);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend((message.len() as u32).to_be_bytes());
        out.extend(message);
        out
    }

    #[test]
    fn a_message_split_over_chunks_is_put_together() {
        let framed = framed(b"hello");
        let mut chunks = Chunks::default();
        chunks.push(&Bytes::copy_from_slice(&framed[..3]));
        assert_eq!(chunks.first_message(), None);
        chunks.push(&Bytes::copy_from_slice(&framed[3..7]));
        assert_eq!(chunks.first_message(), None);
        chunks.push(&Bytes::copy_from_slice(&framed[7..]));
        assert_eq!(chunks.first_message().as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn compressed_and_oversized_messages_are_not_read() {
        let mut compressed = framed(b"x");
        compressed[0] = 1;
        let mut chunks = Chunks::default();
        chunks.push(&Bytes::from(compressed));
        assert_eq!(chunks.first_message(), None);
        let mut chunks = Chunks::default();
        chunks.push(&Bytes::from(framed(b"small")));
        chunks.push(&Bytes::from(vec![0; LIMIT]));
        assert_eq!(chunks.first_message(), None);
        assert!(chunks.chunks.is_empty(), "nothing held past the limit");
    }

    #[test]
    fn an_empty_message_is_a_message() {
        let mut chunks = Chunks::default();
        chunks.push(&Bytes::from(framed(b"")));
        assert_eq!(chunks.first_message(), Some(Vec::new()));
    }
}
