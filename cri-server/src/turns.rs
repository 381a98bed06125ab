//! Turns for work a caller waits on: a few at once, first come first
//! served, and nobody held up for long by one that hangs.
//!
//! A pod's CNI ADD (the bridge plugin, its IPAM plugin, nine `iptables`
//! runs, portmap) is a chain of short processes that keeps about one CPU
//! busy. When more ADDs than CPUs run at once, the kernel shares the CPUs
//! between all of them and every one of them ends late, at about the time
//! the last one does. Taking turns, one per CPU, the first ones end
//! after about their own time and the rest follow: the same CPU spent,
//! the same last finish, and the median caller served sooner. By hand on
//! this 2-CPU machine, four ADDs started together ended at p50 56–64 ms
//! all at once, 45–53 ms two at a time, and 67–76 ms one at a time (an ADD
//! also waits on the kernel's network locks, and a second one overlaps
//! that); a lone ADD took 28–32 ms.
//!
//! A place is held for [`Turns::run`]'s work for at most the turns'
//! limit; past it the work goes on without it, so a plugin that hangs (a
//! DHCP IPAM waiting for a lease, a plugin waiting on a remote service)
//! delays the callers behind it once, by that limit, and never stops the
//! node's other pods from starting.

use std::future::Future;
use std::time::Duration;

/// At most `width` pieces of work at once, each holding its place for at
/// most a limit.
#[derive(Debug)]
pub struct Turns {
    places: tokio::sync::Semaphore,
    hold_at_most: Duration,
}

impl Turns {
    /// Turns for `width` at once (at least one), each held for at most
    /// `hold_at_most`.
    pub fn new(width: usize, hold_at_most: Duration) -> Turns {
        Turns {
            places: tokio::sync::Semaphore::new(width.max(1)),
            hold_at_most,
        }
    }

    /// Waits for a place (in the order callers came), then runs `work` to
    /// its end; returns its output and how long it waited for the place.
    /// The place is given up when `work` ends or after the limit,
    /// whichever comes first. Dropping the returned future gives up the
    /// place, or the place in the queue, and drops `work`.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let turns = cri_server::turns::Turns::new(2, Duration::from_millis(500));
    /// let (sum, waited) = turns.run(async { 1 + 1 }).await;
    /// assert_eq!(sum, 2);
    /// assert!(waited < Duration::from_millis(500), "a place was free");
    /// # });
    /// ```
    pub async fn run<F: Future>(&self, work: F) -> (F::Output, Duration) {
        let asked = tokio::time::Instant::now();
        // The semaphore is never closed: `ok()` only drops an `Err` that
        // cannot happen, and the work then runs without a place.
        let place = self.places.acquire().await.ok();
        let waited = asked.elapsed();
        tokio::pin!(work);
        tokio::select! {
            biased;
            output = &mut work => return (output, waited),
            () = tokio::time::sleep(self.hold_at_most) => {}
        }
        drop(place);
        (work.await, waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const LIMIT: Duration = Duration::from_millis(500);

    /// Work that takes `took` and reports when it started.
    async fn work(took: Duration) -> tokio::time::Instant {
        let started = tokio::time::Instant::now();
        tokio::time::sleep(took).await;
        started
    }

    /// A caller of `turns` in a task of its own, whose work takes `took`;
    /// it has asked for its place when this returns.
    async fn caller(
        turns: &Arc<Turns>,
        took: Duration,
    ) -> tokio::task::JoinHandle<(tokio::time::Instant, Duration)> {
        let turns = Arc::clone(turns);
        let task = tokio::spawn(async move { turns.run(work(took)).await });
        tokio::task::yield_now().await;
        task
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_width_run_at_once_and_the_rest_follow_in_order() {
        let turns = Arc::new(Turns::new(2, LIMIT));
        let began = tokio::time::Instant::now();
        let took = Duration::from_millis(40);
        let mut callers = Vec::new();
        for _ in 0..5 {
            callers.push(caller(&turns, took).await);
        }
        let mut starts = Vec::new();
        for caller in callers {
            let (started, waited) = caller.await.unwrap();
            assert_eq!(
                started - began,
                waited,
                "the work starts when its turn comes"
            );
            starts.push(waited);
        }
        assert_eq!(
            starts,
            [0, 0, 40, 40, 80].map(Duration::from_millis),
            "two at a time, first come first served"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_outlasts_the_limit_gives_up_its_place_and_still_ends() {
        let turns = Arc::new(Turns::new(1, LIMIT));
        let hung = caller(&turns, Duration::from_secs(60)).await;
        let (_, waited) = turns.run(work(Duration::from_millis(10))).await;
        assert_eq!(waited, LIMIT, "held up once, by the limit");
        let (started, waited) = hung.await.unwrap();
        assert_eq!(waited, Duration::ZERO);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(60),
            "it ran to its end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_while_waiting_leaves_the_queue() {
        let turns = Arc::new(Turns::new(1, LIMIT));
        let first = caller(&turns, Duration::from_millis(100)).await;
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), turns.run(work(Duration::ZERO))).await;
        assert!(gave_up.is_err(), "the only place was taken");
        let (_, waited) = turns.run(work(Duration::ZERO)).await;
        assert_eq!(
            waited,
            Duration::from_millis(90),
            "next after the first, not behind the caller that left"
        );
        first.await.unwrap();
    }

    #[test]
    fn a_width_of_zero_still_lets_work_run() {
        let turns = Turns::new(0, LIMIT);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (done, _) = runtime.block_on(turns.run(async { true }));
        assert!(done);
    }
}
