//! Send-side flow control of one SPDY/3.1 session.
//!
//! SPDY/3.1 gives every stream and the session as a whole a send window
//! (64 KiB at first); each DATA payload spends it and the peer's
//! WINDOW_UPDATE frames give it back. The stream window starts at the
//! peer's `SETTINGS_INITIAL_WINDOW_SIZE`, and a change of that setting moves
//! every open stream's window by the difference.
//!
//! Kubernetes' own SPDY library (spdystream, in kubelet and crictl) neither
//! sends WINDOW_UPDATE nor reads it: a server that waited for credit would
//! stall every such session after 64 KiB. So windows are always *counted*,
//! but only *enforced* once the peer shows it takes part in flow control by
//! sending a WINDOW_UPDATE or an initial window setting. From then on, data
//! that does not fit waits in order per stream (a frame larger than the
//! window is split), and what already went over the window before that
//! moment is owed first.
//!
//! # Examples
//!
//! ```
//! use bytes::Bytes;
//! use cri_streaming::spdy::flow::SendWindows;
//!
//! let mut windows = SendWindows::new();
//! // A peer that speaks flow control: the session now obeys windows.
//! assert!(windows.window_update(1, 1).unwrap().is_empty());
//! let sent = windows.push(1, Bytes::from(vec![0; 70_000]), false);
//! assert_eq!(sent[0].data.len(), 65_536); // the session's initial window
//! assert_eq!(windows.pending_bytes(), 70_000 - 65_536);
//! // Credit on the stream alone is not enough: the session window is empty.
//! assert!(windows.window_update(1, 10_000).unwrap().is_empty());
//! let sent = windows.window_update(0, 10_000).unwrap();
//! assert_eq!(sent[0].data.len(), 70_000 - 65_536);
//! ```

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// The window every stream and the session start with (SPDY/3.1 §2.6.8).
pub const DEFAULT_WINDOW: i64 = 64 * 1024;
/// `SETTINGS_INITIAL_WINDOW_SIZE`.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// The largest window the protocol allows (2^31 - 1).
const MAX_WINDOW: i64 = i32::MAX as i64;

/// One DATA frame cleared to go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    /// The stream.
    pub stream: u32,
    /// The payload (possibly part of what was pushed).
    pub data: Bytes,
    /// Whether this frame ends the stream.
    pub fin: bool,
}

/// Why the peer's flow-control frames cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// A WINDOW_UPDATE pushed a window past 2^31 - 1 (§2.6.8: the stream, or
    /// for stream 0 the session, must end with FLOW_CONTROL_ERROR).
    #[error("SPDY stream {0}: window update overflows the window")]
    Overflow(u32),
}

/// The send windows and the data waiting for them.
#[derive(Debug)]
pub struct SendWindows {
    enforcing: bool,
    initial: i64,
    session: i64,
    streams: HashMap<u32, i64>,
    pending: HashMap<u32, VecDeque<(Bytes, bool)>>,
    /// Streams with pending data, oldest first, so credit is shared fairly.
    waiting: VecDeque<u32>,
    pending_bytes: usize,
}

impl Default for SendWindows {
    fn default() -> Self {
        SendWindows::new()
    }
}

impl SendWindows {
    /// Windows as a new session has them; not enforced until the peer shows
    /// it does flow control.
    pub fn new() -> Self {
        SendWindows {
            enforcing: false,
            initial: DEFAULT_WINDOW,
            session: DEFAULT_WINDOW,
            streams: HashMap::new(),
            pending: HashMap::new(),
            waiting: VecDeque::new(),
            pending_bytes: 0,
        }
    }

    /// Whether the peer takes part in flow control (sending waits on credit).
    pub fn enforcing(&self) -> bool {
        self.enforcing
    }

    /// Payload bytes waiting for credit.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Offers a DATA frame for `stream`; returns what may be written now, in
    /// order. The rest waits for [`SendWindows::window_update`].
    pub fn push(&mut self, stream: u32, data: Bytes, fin: bool) -> Vec<Cleared> {
        let queue = self.pending.entry(stream).or_default();
        if queue.is_empty() {
            self.waiting.push_back(stream);
        }
        self.pending_bytes += data.len();
        queue.push_back((data, fin));
        self.drain()
    }

    /// Applies the peer's WINDOW_UPDATE (`stream` 0 = the session) and
    /// returns the data it releases.
    pub fn window_update(&mut self, stream: u32, delta: u32) -> Result<Vec<Cleared>, FlowError> {
        self.enforcing = true;
        let delta = i64::from(delta & 0x7fff_ffff);
        let window = if stream == 0 {
            &mut self.session
        } else {
            self.streams.entry(stream).or_insert(self.initial)
        };
        if *window + delta > MAX_WINDOW {
            return Err(FlowError::Overflow(stream));
        }
        *window += delta;
        Ok(self.drain())
    }

    /// Applies the peer's `SETTINGS_INITIAL_WINDOW_SIZE`: every stream's
    /// window moves by the change (and may go negative).
    pub fn initial_window(&mut self, size: u32) -> Vec<Cleared> {
        self.enforcing = true;
        let size = i64::from(size).min(MAX_WINDOW);
        let change = size - self.initial;
        self.initial = size;
        for window in self.streams.values_mut() {
            *window += change;
        }
        self.drain()
    }

    /// Forgets a stream the peer reset: its waiting data is dropped.
    pub fn reset(&mut self, stream: u32) {
        if let Some(queue) = self.pending.remove(&stream) {
            self.pending_bytes -= queue.iter().map(|(d, _)| d.len()).sum::<usize>();
        }
        self.waiting.retain(|s| *s != stream);
        self.streams.remove(&stream);
    }

    /// Sends what the windows allow, streams taking turns.
    fn drain(&mut self) -> Vec<Cleared> {
        let mut out = Vec::new();
        let mut blocked = VecDeque::new();
        while let Some(stream) = self.waiting.pop_front() {
            let window = *self.streams.entry(stream).or_insert(self.initial);
            let Some(queue) = self.pending.get_mut(&stream) else {
                continue;
            };
            let Some((data, fin)) = queue.front_mut() else {
                self.pending.remove(&stream);
                continue;
            };
            let allowed = if self.enforcing {
                window.min(self.session).max(0) as usize
            } else {
                usize::MAX
            };
            // An empty frame (a bare FIN) spends nothing and always goes.
            let take = data.len().min(allowed);
            if take == 0 && !data.is_empty() {
                blocked.push_back(stream);
                continue;
            }
            let chunk = data.split_to(take);
            let done = data.is_empty();
            let frame_fin = done && *fin;
            if done {
                queue.pop_front();
            }
            self.pending_bytes -= take;
            self.session -= take as i64;
            if let Some(w) = self.streams.get_mut(&stream) {
                *w -= take as i64;
            }
            out.push(Cleared {
                stream,
                data: chunk,
                fin: frame_fin,
            });
            if self.pending.get(&stream).is_some_and(|q| !q.is_empty()) {
                // Its turn again after the others.
                self.waiting.push_back(stream);
            } else {
                self.pending.remove(&stream);
            }
        }
        self.waiting = blocked;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn a_peer_without_flow_control_is_never_stalled() {
        let mut w = SendWindows::new();
        let sent = w.push(1, bytes(200_000, 1), false);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].data.len(), 200_000);
        assert_eq!(w.pending_bytes(), 0);
        assert!(!w.enforcing());
    }

    #[test]
    fn debt_from_before_enforcement_is_paid_first() {
        let mut w = SendWindows::new();
        w.push(1, bytes(100_000, 1), false);
        // The peer starts granting credit: 100 000 - 65 536 is owed.
        assert!(w.window_update(1, 10_000).unwrap().is_empty());
        assert!(w.window_update(0, 10_000).unwrap().is_empty());
        assert!(w.push(1, bytes(10, 2), false).is_empty());
        assert_eq!(w.pending_bytes(), 10);
        let sent = w.window_update(1, 30_000).unwrap();
        assert!(sent.is_empty(), "the session window still owes");
        let sent = w.window_update(0, 30_000).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].data.len(), 10);
    }

    #[test]
    fn fin_waits_behind_data_but_needs_no_credit() {
        let mut w = SendWindows::new();
        w.initial_window(4);
        let sent = w.push(3, bytes(6, 1), false);
        assert_eq!(sent[0].data.len(), 4);
        assert!(w.push(3, Bytes::new(), true).is_empty());
        let sent = w.window_update(3, 2).unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[0].data.len(), sent[0].fin), (2, false));
        assert_eq!((sent[1].data.len(), sent[1].fin), (0, true));
        // A bare FIN on a stream with nothing queued goes at once.
        assert_eq!(w.push(5, Bytes::new(), true).len(), 1);
    }

    #[test]
    fn a_smaller_initial_window_can_make_windows_negative() {
        let mut w = SendWindows::new();
        w.initial_window(100);
        w.push(1, bytes(100, 1), false);
        w.initial_window(50); // stream 1 now at -50
        assert!(w.push(1, bytes(1, 2), false).is_empty());
        assert!(w.window_update(1, 50).unwrap().is_empty());
        assert_eq!(w.window_update(1, 1).unwrap().len(), 1);
    }

    #[test]
    fn reset_streams_drop_their_backlog_and_overflow_is_an_error() {
        let mut w = SendWindows::new();
        w.initial_window(0);
        w.push(1, bytes(10, 1), false);
        w.push(3, bytes(5, 1), false);
        assert_eq!(w.pending_bytes(), 15);
        w.reset(1);
        assert_eq!(w.pending_bytes(), 5);
        assert_eq!(w.window_update(3, 5).unwrap().len(), 1);
        assert!(w.window_update(3, 0x7fff_ffff).is_ok());
        assert_eq!(w.window_update(3, 1), Err(FlowError::Overflow(3)));
    }

    proptest! {
        /// Whatever the peer grants, an enforcing session never sends past a
        /// window, each stream's bytes arrive whole and in order, and once
        /// enough credit arrives nothing is left waiting.
        #[test]
        fn windows_hold_and_order_is_kept(
            ops in proptest::collection::vec(
                prop_oneof![
                    (0u32..3, 0usize..40_000).prop_map(|(s, n)| (0u8, s, n as u32)),
                    (0u32..4, 0u32..50_000).prop_map(|(s, d)| (1u8, s, d)),
                ],
                1..60,
            )
        ) {
            let mut w = SendWindows::new();
            w.initial_window(DEFAULT_WINDOW as u32);
            let mut pushed: HashMap<u32, Vec<u8>> = HashMap::new();
            let mut sent: HashMap<u32, Vec<u8>> = HashMap::new();
            let mut granted_session = DEFAULT_WINDOW;
            let mut granted: HashMap<u32, i64> = HashMap::new();
            let mut counter = 0u8;
            let record = |cleared: Vec<Cleared>, sent: &mut HashMap<u32, Vec<u8>>| {
                for c in cleared {
                    sent.entry(c.stream).or_default().extend_from_slice(&c.data);
                }
            };
            for (kind, s, n) in ops {
                let stream = 2 * s + 1;
                if kind == 0 {
                    counter = counter.wrapping_add(1);
                    let data: Vec<u8> = (0..n).map(|i| counter.wrapping_add(i as u8)).collect();
                    pushed.entry(stream).or_default().extend_from_slice(&data);
                    record(w.push(stream, Bytes::from(data), false), &mut sent);
                } else {
                    let target = if s == 3 { 0 } else { stream };
                    if target == 0 { granted_session += i64::from(n); }
                    else { *granted.entry(target).or_insert(DEFAULT_WINDOW) += i64::from(n); }
                    record(w.window_update(target, n).unwrap(), &mut sent);
                }
                let total: i64 = sent.values().map(|v| v.len() as i64).sum();
                prop_assert!(total <= granted_session);
                for (stream, bytes) in &sent {
                    let limit = granted.get(stream).copied().unwrap_or(DEFAULT_WINDOW);
                    prop_assert!(bytes.len() as i64 <= limit);
                    prop_assert_eq!(&pushed[stream][..bytes.len()], &bytes[..]);
                }
            }
            for s in [1u32, 3, 5] {
                record(w.window_update(s, 0x3fff_ffff).unwrap(), &mut sent);
            }
            record(w.window_update(0, 0x3fff_ffff).unwrap(), &mut sent);
            prop_assert_eq!(w.pending_bytes(), 0);
            for (stream, bytes) in &pushed {
                prop_assert_eq!(sent.get(stream).map(|v| v.len()).unwrap_or(0), bytes.len());
            }
        }
    }
}
