//! Stall detection for a pull, as containerd's `image_pull_progress_timeout`
//! and curl's `--speed-limit`/`--speed-time` do it.
//!
//! A registry that drips a byte now and then, or that accepts a connection
//! and never answers, would otherwise keep a pull (and the store's locks it
//! holds) alive for good: a per-read timeout restarts at every byte, and
//! PullImage runs detached from the gRPC call that asked for it. So one
//! [`Progress`] watches a whole pull, every request of it (manifests, the
//! config, each layer, token requests, waiting for response headers): the
//! pull fails with [`Stall`] once, for a whole window of
//! [`PullOptions::stall_timeout`], fewer than [`MIN_PROGRESS_BYTES`] arrived
//! and no request completed.
//!
//! The window's clock runs only while the pull waits on the network
//! ([`Progress::bound`]): unpacking a large layer on a slow disk is not the
//! registry's fault, and a pull spends almost all of a drip waiting anyway.
//! Bytes are kept per sixteenth of a window, so "the last window" is exact
//! to within a sixteenth, always in the registry's favour.

use crate::options::{PullOptions, MIN_STALL_TIMEOUT};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The bytes a pull must receive in every window of its stall timeout
/// (unless a request completes in it): 64 KiB a minute by default, about
/// 1 KiB/s, far below any registry that is serving.
pub const MIN_PROGRESS_BYTES: u64 = 64 << 10;
/// The per-read timeout used before stall detection; reads keep it when the
/// window is longer.
const MAX_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The connect timeout used before stall detection.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Slots per window: the resolution of "the last window".
const SLOTS: u32 = 16;

/// The per-read timeout for a pull with stall timeout `window`: never longer
/// than the window, so a connection silent for a whole window is reported
/// as the stall it is (see [`Progress::stall_after_timeout`]).
pub(crate) fn read_timeout(window: Duration) -> Duration {
    window.min(MAX_READ_TIMEOUT)
}

/// The connect timeout for a pull with stall timeout `window`: at most half
/// the window, so an unreachable mirror fails as an endpoint (and the next
/// one is tried) rather than as a stall of the whole pull.
pub(crate) fn connect_timeout(window: Duration) -> Duration {
    (window / 2).min(MAX_CONNECT_TIMEOUT)
}

/// A pull that made too little progress: what it was fetching, and what
/// arrived in the last window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stall {
    /// The URL being fetched when the window ran out.
    pub object: String,
    /// Bytes received in the last window.
    pub bytes: u64,
    /// The window.
    pub window: Duration,
}

/// The progress of one pull; see the module's documentation.
pub(crate) struct Progress {
    window: Duration,
    slot: Duration,
    state: Mutex<State>,
}

struct State {
    /// Waiting time of the waits that have ended.
    waited: Duration,
    /// When the waits in progress began (the clock runs while any is on).
    waiting_since: Option<Instant>,
    /// Waits in progress.
    waits: u32,
    /// Waiting time at the last completed request (or at the start).
    completed_at: Duration,
    /// Bytes per slot of waiting time, `(slot, bytes)`, oldest first; only
    /// slots that may still be in the window are kept.
    slots: VecDeque<(u64, u64)>,
    /// What is being fetched.
    object: String,
}

impl Progress {
    /// A watch with the stall timeout of `options`.
    pub(crate) fn new(options: &PullOptions) -> Self {
        // The options are checked, but a zero slot would divide by zero.
        let window = options.stall_timeout().max(MIN_STALL_TIMEOUT);
        Self {
            window,
            slot: window / SLOTS,
            state: Mutex::new(State {
                waited: Duration::ZERO,
                waiting_since: None,
                waits: 0,
                completed_at: Duration::ZERO,
                slots: VecDeque::new(),
                object: String::new(),
            }),
        }
    }

    /// The stall timeout.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// Notes that `object` (a URL) is what the pull waits for now.
    pub(crate) fn fetching(&self, object: &str) {
        let mut state = self.lock();
        state.object.clear();
        state.object.push_str(object);
    }

    /// Counts `bytes` received.
    pub(crate) fn received(&self, bytes: u64) {
        let mut state = self.lock();
        let slot = self.slot_of(state.clock(Instant::now()));
        match state.slots.back_mut() {
            Some((last, count)) if *last == slot => *count = count.saturating_add(bytes),
            _ => state.slots.push_back((slot, bytes)),
        }
        while state
            .slots
            .front()
            .is_some_and(|(s, _)| s.saturating_add(u64::from(SLOTS)) < slot)
        {
            state.slots.pop_front();
        }
    }

    /// Notes that a request completed (or an endpoint was given up): a
    /// full window starts again.
    pub(crate) fn completed(&self) {
        let mut state = self.lock();
        state.completed_at = state.clock(Instant::now());
    }

    /// Runs `wait` (a wait on the registry) with the clock running, and
    /// gives it up when the pull stalls meanwhile (or already has).
    pub(crate) async fn bound<F: Future>(&self, wait: F) -> Result<F::Output, Stall> {
        let _waiting = Waiting::start(self);
        // A stall a previous wait ended too soon to see.
        self.check()?;
        let mut wait = std::pin::pin!(wait);
        loop {
            let next = self.next_check();
            tokio::select! {
                // An answer that is there is taken, even at a slot's end.
                biased;
                output = &mut wait => return Ok(output),
                () = tokio::time::sleep_until(next) => self.check()?,
            }
        }
    }

    /// Fails with the stall, if the pull has stalled.
    fn check(&self) -> Result<(), Stall> {
        match self.stall(Duration::ZERO) {
            Some(stall) => Err(stall),
            None => Ok(()),
        }
    }

    /// The stall a per-read timeout means, if the watch agrees: a read may
    /// time out a moment before the watch looks (their clocks start a
    /// moment apart), so the watch is given one slot of slack.
    pub(crate) fn stall_after_timeout(&self) -> Option<Stall> {
        self.stall(self.slot)
    }

    /// The stall, if for the last window (less `slack`) fewer than the
    /// minimum bytes arrived and no request completed.
    fn stall(&self, slack: Duration) -> Option<Stall> {
        let state = self.lock();
        let now = state.clock(Instant::now());
        if now.saturating_add(slack).saturating_sub(state.completed_at) < self.window {
            return None;
        }
        let oldest = self.slot_of(now).saturating_sub(u64::from(SLOTS));
        let bytes = state
            .slots
            .iter()
            .filter(|(slot, _)| *slot >= oldest)
            .fold(0u64, |sum, (_, bytes)| sum.saturating_add(*bytes));
        (bytes < MIN_PROGRESS_BYTES).then(|| Stall {
            object: state.object.clone(),
            bytes,
            window: self.window,
        })
    }

    /// When the next slot begins, in real time: the watch looks once a
    /// slot (bytes leave the window only then), so it sees a stall at most
    /// a slot late.
    fn next_check(&self) -> Instant {
        let now = Instant::now();
        let clock = self.lock().clock(now);
        let next = (self.slot_of(clock) + 1).saturating_mul(self.slot.as_nanos() as u64);
        now + Duration::from_nanos(next).saturating_sub(clock)
    }

    fn slot_of(&self, clock: Duration) -> u64 {
        // Whole windows are at most an hour, so nanoseconds fit in u64
        // for far longer than any pull.
        (clock.as_nanos() / self.slot.as_nanos().max(1)) as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain numbers: consistent whatever a panicking holder did.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Waiting time so far, at `now`.
    fn clock(&self, now: Instant) -> Duration {
        let running = self
            .waiting_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        self.waited.saturating_add(running)
    }
}

/// A wait in progress: the clock runs until the last one ends (or is
/// dropped, when the pull is cancelled).
struct Waiting<'a>(&'a Progress);

impl<'a> Waiting<'a> {
    fn start(progress: &'a Progress) -> Self {
        let mut state = progress.lock();
        if state.waits == 0 {
            state.waiting_since = Some(Instant::now());
        }
        state.waits += 1;
        Self(progress)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.waits = state.waits.saturating_sub(1);
        if state.waits == 0 {
            state.waited = state.clock(Instant::now());
            state.waiting_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{DEFAULT_STALL_TIMEOUT, MAX_STALL_TIMEOUT};
    use std::future::pending;
    use tokio::time::sleep;

    const SECOND: Duration = Duration::from_secs(1);

    fn progress(window: Duration) -> Progress {
        let options = PullOptions::default().with_stall_timeout(window).unwrap();
        let progress = Progress::new(&options);
        progress.fetching("http://registry/v2/app/blobs/sha256:ab");
        progress
    }

    /// Receives `bytes` every `every` until the watch gives up; returns the
    /// stall and the time it took.
    async fn drip(progress: &Progress, bytes: u64, every: Duration) -> (Stall, Duration) {
        let start = Instant::now();
        let dripping = async {
            loop {
                match progress.bound(sleep(every)).await {
                    Ok(()) => progress.received(bytes),
                    Err(stall) => return stall,
                }
            }
        };
        (never_past(dripping).await, start.elapsed())
    }

    /// Waits on the registry for nothing, until the watch gives up.
    async fn silence(progress: &Progress) -> Stall {
        never_past(progress.bound(pending::<()>()))
            .await
            .unwrap_err()
    }

    /// `f`'s output, or a test failure (not a hang) if the watch misses a
    /// stall.
    async fn never_past<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(600 * SECOND, f)
            .await
            .expect("no stall detected")
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_registry_stalls_after_one_window() {
        let progress = progress(2 * SECOND);
        let start = Instant::now();
        let stall = silence(&progress).await;
        let took = start.elapsed();
        assert!(
            took >= 2 * SECOND && took <= 2 * SECOND + progress.slot,
            "{took:?}"
        );
        assert_eq!(stall.bytes, 0);
        assert_eq!(stall.window, 2 * SECOND);
        assert_eq!(stall.object, "http://registry/v2/app/blobs/sha256:ab");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drip_below_the_minimum_stalls_whatever_its_pace() {
        for every in [Duration::from_millis(10), Duration::from_millis(900)] {
            let progress = progress(2 * SECOND);
            let (stall, took) = drip(&progress, 100, every).await;
            assert!(
                took <= 2 * SECOND + progress.slot + every,
                "{every:?}: {took:?}"
            );
            assert!(
                stall.bytes > 0 && stall.bytes < MIN_PROGRESS_BYTES,
                "{stall:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_trickle_above_the_minimum_goes_on() {
        let progress = progress(SECOND);
        // 80 KiB a second against 64 KiB a window, for ten windows.
        for _ in 0..100 {
            progress
                .bound(sleep(Duration::from_millis(100)))
                .await
                .unwrap();
            progress.received(8 << 10);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides_a_burst_does_not_buy_more_than_a_window() {
        let progress = progress(2 * SECOND);
        progress.bound(sleep(SECOND)).await.unwrap();
        progress.received(100 << 20);
        let start = Instant::now();
        let stall = silence(&progress).await;
        let took = start.elapsed();
        assert!(took <= 2 * SECOND + progress.slot, "{took:?}");
        assert_eq!(stall.bytes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn completed_requests_count_as_progress() {
        let progress = progress(2 * SECOND);
        for _ in 0..10 {
            progress.bound(sleep(SECOND)).await.unwrap();
            progress.received(1);
            progress.completed();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn time_outside_waits_is_not_counted() {
        let progress = progress(2 * SECOND);
        progress.bound(sleep(SECOND)).await.unwrap();
        // Unpacking a layer on a slow disk.
        sleep(60 * SECOND).await;
        assert!(progress.bound(sleep(SECOND / 2)).await.is_ok());
        let start = Instant::now();
        silence(&progress).await;
        assert!(start.elapsed() <= SECOND / 2 + progress.slot);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_timeout_is_a_stall_only_after_about_a_window() {
        let progress = progress(2 * SECOND);
        let waited = progress.bound(sleep(SECOND)).await;
        assert!(waited.is_ok());
        assert_eq!(progress.stall_after_timeout(), None);
        let waited = progress.bound(sleep(SECOND - progress.slot / 2)).await;
        assert!(waited.is_ok());
        assert!(progress.stall_after_timeout().is_some());
    }

    #[test]
    fn timeouts_are_derived_from_the_window() {
        assert_eq!(read_timeout(2 * SECOND), 2 * SECOND);
        assert_eq!(read_timeout(MAX_STALL_TIMEOUT), MAX_READ_TIMEOUT);
        assert_eq!(connect_timeout(2 * SECOND), SECOND);
        assert_eq!(connect_timeout(DEFAULT_STALL_TIMEOUT), MAX_CONNECT_TIMEOUT);
        for window in [MIN_STALL_TIMEOUT, DEFAULT_STALL_TIMEOUT, MAX_STALL_TIMEOUT] {
            assert!(read_timeout(window) <= window && connect_timeout(window) < window);
        }
    }
}
