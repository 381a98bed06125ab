//! The mutating verbs still running, so that a graceful shutdown lets them
//! finish instead of dropping them halfway.
//!
//! A verb runs [`crate::runtime_service::detached`]: to its end whatever its
//! caller does. Without this count, SIGTERM would end the server, then the
//! runtime, and drop every verb still running, killing its CNI plugins
//! mid-DEL: the bridge plugin then leaves its masquerading chain in the
//! `nat` table, and no later DEL removes it (it finds no interface, so no
//! address to tear down).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// The mutating verbs running now (verbs run `detached`, creations, network
/// releases), which a graceful shutdown lets finish.
pub static VERBS: InFlight = InFlight::new();

/// A count of verbs running and a wake-up for when it reaches zero.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use cri_server::in_flight::InFlight;
/// use std::time::Duration;
/// static VERBS: InFlight = InFlight::new();
/// let verb = VERBS.enter();
/// assert_eq!(VERBS.count(), 1);
/// drop(verb);
/// assert!(VERBS.wait_idle(Duration::from_millis(10)).await);
/// # });
/// ```
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One running verb; leaves the count when dropped.
pub struct Entered<'a>(&'a InFlight);

impl InFlight {
    /// Nothing running.
    pub const fn new() -> InFlight {
        InFlight {
            count: AtomicUsize::new(0),
            idle: Notify::const_new(),
        }
    }

    /// Counts a verb until the returned guard is dropped.
    pub fn enter(&self) -> Entered<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        Entered(self)
    }

    /// How many verbs run now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until no verb runs, for at most `limit`; false when some still
    /// run at the limit.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a verb ending between the
            // check and the wait still wakes us.
            notified.as_mut().enable();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count() == 0;
            }
        }
    }
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight::new()
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_last_verb_and_gives_up_at_the_limit() {
        static VERBS: InFlight = InFlight::new();
        let verb = VERBS.enter();
        assert!(!VERBS.wait_idle(Duration::from_millis(20)).await);
        let ending = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(verb);
        });
        assert!(VERBS.wait_idle(Duration::from_secs(5)).await);
        ending.await.unwrap();
    }
}
