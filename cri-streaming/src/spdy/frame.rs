//! SPDY/3.1 frames: parsing from and serializing to bytes.
//!
//! Header blocks stay compressed here (their zlib context spans the whole
//! session, see [`super::header_block`]). Parsing never panics on any input:
//! a truncated buffer is "need more", anything malformed is a [`FrameError`].

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol version every control frame carries.
pub const VERSION: u16 = 3;
/// Control and data frame header length.
pub const HEADER_LEN: usize = 8;
/// `FLAG_FIN`: the sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;
/// `FLAG_UNIDIRECTIONAL` on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The initial per-stream flow-control window.
pub const INITIAL_WINDOW: u32 = 64 * 1024;
/// SETTINGS id of the initial window size.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// RST_STREAM status codes used here.
pub mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM.
    pub const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL.
    pub const CANCEL: u32 = 5;
    /// FLOW_CONTROL_ERROR.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    /// STREAM_IN_USE.
    pub const STREAM_IN_USE: u32 = 8;
}

/// One SPDY/3.1 frame.
///
/// # Examples
///
/// ```
/// use cri_streaming::spdy::frame::Frame;
///
/// let ping = Frame::Ping { id: 7 };
/// let bytes = ping.encode();
/// assert_eq!(Frame::parse(&bytes).unwrap(), Some((ping, bytes.len())));
/// assert_eq!(Frame::parse(&bytes[..3]).unwrap(), None); // need more
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Payload on a stream.
    Data {
        /// The stream.
        stream_id: u32,
        /// `FLAG_FIN` or 0.
        flags: u8,
        /// The bytes.
        data: Bytes,
    },
    /// Opens a stream.
    SynStream {
        /// The new stream (odd from clients).
        stream_id: u32,
        /// The stream it belongs to, or 0.
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// Flags (`FLAG_FIN`, `FLAG_UNIDIRECTIONAL`).
        flags: u8,
        /// The compressed header block.
        headers: Bytes,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// `FLAG_FIN` or 0.
        flags: u8,
        /// The compressed header block.
        headers: Bytes,
    },
    /// Aborts a stream.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why (see [`rst`]).
        status: u32,
    },
    /// Session settings: `(flags, id, value)` entries.
    Settings {
        /// Frame flags.
        flags: u8,
        /// The entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// A liveness probe, echoed by the receiver.
    Ping {
        /// Opaque id.
        id: u32,
    },
    /// The sender will open no more streams.
    GoAway {
        /// The last stream the sender accepted.
        last_good_stream_id: u32,
        /// Why.
        status: u32,
    },
    /// More headers on a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// `FLAG_FIN` or 0.
        flags: u8,
        /// The compressed header block.
        headers: Bytes,
    },
    /// More room in the receiver's window.
    WindowUpdate {
        /// The stream (0 for the session).
        stream_id: u32,
        /// Bytes added.
        delta: u32,
    },
    /// A control frame type this implementation does not use (skipped, as the
    /// spec asks).
    Unknown {
        /// The frame type.
        kind: u16,
    },
}

/// A frame that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A control frame of another SPDY version.
    #[error("SPDY frame: version {0}, expected 3")]
    Version(u16),
    /// A control frame whose length does not fit its type.
    #[error("SPDY frame: type {kind} with a bad length {len}")]
    Length {
        /// The frame type.
        kind: u16,
        /// Its declared length.
        len: usize,
    },
    /// A frame longer than this session accepts.
    #[error("SPDY frame: {0} bytes is more than allowed")]
    TooLarge(usize),
    /// Stream id 0 where a stream is required.
    #[error("SPDY frame: type {0} on stream 0")]
    StreamZero(u16),
}

/// The largest frame payload accepted (stdin chunks and headers are small).
pub const MAX_PAYLOAD: usize = 1 << 20;

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Frame {
    /// Parses one frame from the front of `buf`: `Ok(None)` when `buf` holds
    /// only part of one, else the frame and how many bytes it used.
    pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let flags = buf[4];
        let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = &buf[HEADER_LEN..HEADER_LEN + len];
        let used = HEADER_LEN + len;
        if buf[0] & 0x80 == 0 {
            let stream_id = be32(buf) & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(FrameError::StreamZero(0));
            }
            let data = Bytes::copy_from_slice(body);
            let frame = Frame::Data {
                stream_id,
                flags,
                data,
            };
            return Ok(Some((frame, used)));
        }
        let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = u16::from_be_bytes([buf[2], buf[3]]);
        Ok(Some((Frame::parse_control(kind, flags, body)?, used)))
    }

    /// A control frame's body, by type.
    fn parse_control(kind: u16, flags: u8, body: &[u8]) -> Result<Frame, FrameError> {
        let len = body.len();
        let bad_len = || FrameError::Length { kind, len };
        let need = |n: usize, exact: bool| {
            if (exact && len != n) || len < n {
                Err(bad_len())
            } else {
                Ok(())
            }
        };
        let stream = |b: &[u8]| -> Result<u32, FrameError> {
            match be32(b) & 0x7fff_ffff {
                0 => Err(FrameError::StreamZero(kind)),
                id => Ok(id),
            }
        };
        Ok(match kind {
            1 => {
                need(10, false)?;
                Frame::SynStream {
                    stream_id: stream(body)?,
                    associated_to: be32(&body[4..]) & 0x7fff_ffff,
                    priority: body[8] >> 5,
                    flags,
                    headers: Bytes::copy_from_slice(&body[10..]),
                }
            }
            2 | 8 => {
                need(4, false)?;
                let (stream_id, headers) = (stream(body)?, Bytes::copy_from_slice(&body[4..]));
                if kind == 2 {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            3 => {
                need(8, true)?;
                let (stream_id, status) = (stream(body)?, be32(&body[4..]));
                Frame::RstStream { stream_id, status }
            }
            4 => Frame::parse_settings(flags, body).ok_or_else(bad_len)?,
            6 => {
                need(4, true)?;
                Frame::Ping { id: be32(body) }
            }
            7 => {
                need(8, true)?;
                let last_good_stream_id = be32(body) & 0x7fff_ffff;
                let status = be32(&body[4..]);
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            9 => {
                need(8, true)?;
                let stream_id = be32(body) & 0x7fff_ffff;
                let delta = be32(&body[4..]) & 0x7fff_ffff;
                Frame::WindowUpdate { stream_id, delta }
            }
            other => Frame::Unknown { kind: other },
        })
    }

    /// A SETTINGS body; `None` when its entry count disagrees with its length.
    fn parse_settings(flags: u8, body: &[u8]) -> Option<Frame> {
        let count = be32(body.get(..4)?) as usize;
        if count.checked_mul(8).and_then(|n| n.checked_add(4)) != Some(body.len()) {
            return None;
        }
        let entries = body[4..]
            .chunks_exact(8)
            .map(|e| (e[0], be32(e) & 0x00ff_ffff, be32(&e[4..])))
            .collect();
        Some(Frame::Settings { flags, entries })
    }

    /// Serializes the frame. `Unknown` encodes as an empty control frame of
    /// its type.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        let Some((kind, flags, body)) = self.control_body() else {
            if let Frame::Data {
                stream_id,
                flags,
                data,
            } = self
            {
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32((u32::from(*flags) << 24) | (data.len() as u32 & 0x00ff_ffff));
                out.put_slice(data);
            }
            return out.freeze();
        };
        out.put_u16(0x8000 | VERSION);
        out.put_u16(kind);
        out.put_u32((u32::from(flags) << 24) | (body.len() as u32 & 0x00ff_ffff));
        out.put_slice(&body);
        out.freeze()
    }

    /// A control frame's type, flags and body; `None` for DATA.
    fn control_body(&self) -> Option<(u16, u8, BytesMut)> {
        let mut body = BytesMut::new();
        let (kind, flags) = match self {
            Frame::Data { .. } => return None,
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                body.put_u32(stream_id & 0x7fff_ffff);
                body.put_u32(associated_to & 0x7fff_ffff);
                body.put_u8((priority & 0x7) << 5);
                body.put_u8(0);
                body.put_slice(headers);
                (1, *flags)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                body.put_u32(stream_id & 0x7fff_ffff);
                body.put_slice(headers);
                (
                    if matches!(self, Frame::SynReply { .. }) {
                        2
                    } else {
                        8
                    },
                    *flags,
                )
            }
            Frame::RstStream { stream_id, status } => {
                body.put_u32(stream_id & 0x7fff_ffff);
                body.put_u32(*status);
                (3, 0)
            }
            Frame::Settings { flags, entries } => {
                body.put_u32(entries.len() as u32);
                for (f, id, value) in entries {
                    body.put_u32((u32::from(*f) << 24) | (id & 0x00ff_ffff));
                    body.put_u32(*value);
                }
                (4, *flags)
            }
            Frame::Ping { id } => {
                body.put_u32(*id);
                (6, 0)
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                body.put_u32(last_good_stream_id & 0x7fff_ffff);
                body.put_u32(*status);
                (7, 0)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                body.put_u32(stream_id & 0x7fff_ffff);
                body.put_u32(delta & 0x7fff_ffff);
                (9, 0)
            }
            Frame::Unknown { kind } => (*kind, 0),
        };
        Some((kind, flags, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames() -> impl Strategy<Value = Frame> {
        let id = 1u32..0x7fff_ffff;
        let bytes = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        prop_oneof![
            (id.clone(), 0u8..2, bytes.clone()).prop_map(|(stream_id, flags, data)| Frame::Data {
                stream_id,
                flags,
                data
            }),
            (id.clone(), 0u32..0x7fff_ffff, 0u8..8, 0u8..4, bytes.clone()).prop_map(
                |(stream_id, associated_to, priority, flags, headers)| Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers
                }
            ),
            (id.clone(), 0u8..2, bytes.clone()).prop_map(|(stream_id, flags, headers)| {
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            }),
            (id.clone(), any::<u32>())
                .prop_map(|(stream_id, status)| Frame::RstStream { stream_id, status }),
            (
                any::<u8>(),
                proptest::collection::vec((any::<u8>(), 0u32..0x00ff_ffff, any::<u32>()), 0..5)
            )
                .prop_map(|(flags, entries)| Frame::Settings { flags, entries }),
            any::<u32>().prop_map(|id| Frame::Ping { id }),
            (0u32..0x7fff_ffff, any::<u32>()).prop_map(|(last_good_stream_id, status)| {
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }),
            (id.clone(), 0u8..2, bytes).prop_map(|(stream_id, flags, headers)| Frame::Headers {
                stream_id,
                flags,
                headers
            }),
            (0u32..0x7fff_ffff, 0u32..0x7fff_ffff)
                .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(frame in frames()) {
            let bytes = frame.encode();
            prop_assert_eq!(Frame::parse(&bytes).unwrap(), Some((frame, bytes.len())));
            // Every strict prefix is "need more", never an error or a frame.
            for cut in 0..bytes.len() {
                prop_assert_eq!(Frame::parse(&bytes[..cut]).unwrap(), None);
            }
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((_, used))) = Frame::parse(&data) {
                prop_assert!(used <= data.len() && used >= HEADER_LEN);
            }
        }

        #[test]
        fn several_frames_back_to_back(a in frames(), b in frames()) {
            let mut bytes = a.encode().to_vec();
            bytes.extend_from_slice(&b.encode());
            let (first, used) = Frame::parse(&bytes).unwrap().unwrap();
            prop_assert_eq!(first, a);
            prop_assert_eq!(Frame::parse(&bytes[used..]).unwrap().map(|f| f.0), Some(b));
        }
    }

    #[test]
    fn protocol_violations_are_errors() {
        // SPDY/2 control frame.
        assert_eq!(
            Frame::parse(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]),
            Err(FrameError::Version(2))
        );
        // PING with 3 bytes.
        assert!(matches!(
            Frame::parse(&[0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 1]),
            Err(FrameError::Length { kind: 6, .. })
        ));
        // Data on stream 0.
        assert!(Frame::parse(&[0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Oversized.
        assert!(matches!(
            Frame::parse(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge(_))
        ));
        // SETTINGS whose count disagrees with its length.
        assert!(Frame::parse(&[0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 0, 9]).is_err());
        // Unknown types are skipped, not refused.
        assert_eq!(
            Frame::parse(&[0x80, 3, 0, 10, 0, 0, 0, 0]).unwrap(),
            Some((Frame::Unknown { kind: 10 }, 8))
        );
    }
}
