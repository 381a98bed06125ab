//! Background work that yields to the calls kubelet waits on.
//!
//! A stopped pod's network release (CNI DEL: plugins and `iptables`
//! processes, then the network namespace's teardown in the kernel) runs
//! off StopPodSandbox's path, but on the same two CPUs as the pod calls
//! that follow it. During a node-wide teardown each stop's kill-to-exit
//! chain (the dying process, its monitor's reap, the daemon's wake-up)
//! queued behind five or six DELs, and the slowest stops took three times
//! the median. [`Quiet`] counts the pod calls in flight (RunPodSandbox,
//! StopPodSandbox); while there are any, or were a moment ago, background
//! releases run one at a time ([`Quiet::turn`]) instead of several per
//! CPU. The work is only reordered, never skipped: the release is
//! recorded before it waits (a crash meanwhile leaves it for the next
//! start), and one always makes progress, so a node that never stops
//! starting and stopping pods still gets its addresses back. Waiting for
//! quiet alone (every release held until the calls paused, up to a limit)
//! made the releases of a busy node start in bursts at the limit, and
//! RunPodSandbox with four clients slowed from 1.6 to 3 times its
//! sequential figure.
//!
//! Deleting removed directories (a container's root filesystem files and
//! state, a pod's state: renamed out of every reader's way first, see
//! [`crate::discard`]) takes its turns the same way, in a lane of its own
//! ([`Lane::Deletion`]) so that it never holds back a release, and so does
//! removing deleted runc containers' cgroups ([`Lane::CgroupRemoval`],
//! `oci_shim::runtime::retired_runc`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// In-flight calls of one kind, when the last one ended, and the turn
/// background work takes meanwhile.
#[derive(Debug)]
pub struct Quiet {
    state: Mutex<State>,
    /// How long after the last call it counts as quiet.
    after: Duration,
    /// Each lane's single turn while it is not.
    busy_turns: [tokio::sync::Semaphore; LANES],
    /// How many of a lane's jobs may run at once, quiet or not.
    widths: [tokio::sync::Semaphore; LANES],
    /// Woken when the last call in flight ends, so waiters need not poll.
    idle: tokio::sync::Notify,
}

/// A background job's turn: holding it is running.
#[derive(Debug)]
pub struct Turn<'a> {
    /// The lane's single busy turn, when pod calls were in flight.
    busy: Option<tokio::sync::SemaphorePermit<'a>>,
    /// A place within the lane's width.
    _place: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl Turn<'_> {
    /// Whether this is the lane's single busy turn, taken while pod calls
    /// were in flight (rather than a place beside others in the quiet).
    pub fn is_busy(&self) -> bool {
        self.busy.is_some()
    }
}

/// Kinds of background work, each with its own single turn while pod calls
/// are in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A stopped pod's network release (CNI DEL).
    NetworkRelease = 0,
    /// Deleting a removed directory's files: one per CPU at most, even
    /// when it is quiet. Unbounded, the deletions a teardown had queued
    /// all started at its first quiet moment, each on a blocking thread of
    /// its own (dozens at 110 pods), and their last `rmdir`s, all in the
    /// same parent, queued on that directory's lock: the kernel's waiters
    /// spin while they can, and a profile found both CPUs spinning there
    /// at once for milliseconds.
    Deletion = 1,
    /// Removing a deleted container's cgroups: it waits for quiet, up to
    /// [`CGROUP_REMOVAL_PATIENCE`], and runs one at a time even then.
    CgroupRemoval = 2,
}

/// How long a cgroup removal waits for quiet before it takes its lane's
/// single turn beside the pod calls anyway. Taking turns alone did not
/// help: at 110 pods, one removal at a time while the stops ran left
/// StopPodSandbox p50 where it was (7.4–7.8 against 6.7–9.5 ms), while
/// removals held until after the stops lowered it to 5.4–5.9 ms. Longer
/// than a node's teardown of a hundred pods (about half a second here),
/// short enough that a node that never pauses still empties its cgroups.
pub const CGROUP_REMOVAL_PATIENCE: Duration = Duration::from_secs(2);

/// How many [`Lane`]s there are.
const LANES: usize = 3;

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    last_end: Option<tokio::time::Instant>,
}

/// Where a waiter stands.
enum Wait {
    /// Quiet now.
    Quiet,
    /// Calls are in flight: until the last one ends.
    Calls,
    /// The last call ended too recently: for this long.
    Calm(Duration),
}

/// One call in flight; dropping it ends the call.
#[must_use = "the call ends when the guard is dropped"]
#[derive(Debug)]
pub struct Busy<'a> {
    quiet: &'a Quiet,
}

impl Quiet {
    /// A tracker under which it is quiet `after` the last call ended.
    pub fn new(after: Duration) -> Quiet {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Quiet {
            state: Mutex::default(),
            after,
            busy_turns: std::array::from_fn(|_| tokio::sync::Semaphore::new(1)),
            widths: std::array::from_fn(|lane| {
                tokio::sync::Semaphore::new(match lane {
                    l if l == Lane::Deletion as usize => cpus,
                    // Releases have their own bound
                    // (`daemon::parallel_releases`); cgroup removals take
                    // their single turn even when it is quiet.
                    _ => tokio::sync::Semaphore::MAX_PERMITS,
                })
            }),
            idle: tokio::sync::Notify::new(),
        }
    }

    /// Waits for a background job's turn in `lane`: at once when it is
    /// quiet, otherwise the lane's single busy turn (or quiet, whichever
    /// comes first), then a place within the lane's width. Holding the
    /// turn is running. A cgroup removal waits for quiet first, at most
    /// [`CGROUP_REMOVAL_PATIENCE`], then for its lane's single turn, quiet
    /// or not: the kernel serialises cgroup removals anyway.
    pub async fn turn(&self, lane: Lane) -> Turn<'_> {
        let lane = lane as usize;
        let busy = if lane == Lane::CgroupRemoval as usize {
            let _ = tokio::time::timeout(CGROUP_REMOVAL_PATIENCE, self.wait()).await;
            self.busy_turns[lane].acquire().await.ok()
        } else {
            tokio::select! {
                biased;
                () = self.wait() => None,
                permit = self.busy_turns[lane].acquire() => permit.ok(),
            }
        };
        // Semaphores here are never closed: `ok()` only drops the `Err`
        // that cannot happen.
        let place = self.widths[lane].acquire().await.ok();
        Turn {
            busy,
            _place: place,
        }
    }

    /// Runs blocking `job` on a blocking thread once `lane` gives it a turn
    /// ([`Quiet::turn`]); nobody waits for it. Must be called within a
    /// tokio runtime.
    pub fn run_in_turn(self: &Arc<Self>, lane: Lane, job: impl FnOnce() + Send + 'static) {
        let quiet = Arc::clone(self);
        tokio::spawn(async move {
            let _turn = quiet.turn(lane).await;
            // A panic in the job is its own; the turn ends either way.
            let _ = tokio::task::spawn_blocking(job).await;
        });
    }

    /// Marks a call in flight until the returned guard is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let quiet = cri_server::quiet::Quiet::new(std::time::Duration::ZERO);
    /// let busy = quiet.enter();
    /// assert!(!quiet.is_quiet());
    /// drop(busy);
    /// assert!(quiet.is_quiet());
    /// ```
    pub fn enter(&self) -> Busy<'_> {
        self.lock().in_flight += 1;
        Busy { quiet: self }
    }

    /// Whether no call is in flight and none has ended within the quiet
    /// period.
    pub fn is_quiet(&self) -> bool {
        matches!(self.stand(), Wait::Quiet)
    }

    fn stand(&self) -> Wait {
        let state = self.lock();
        if state.in_flight > 0 {
            return Wait::Calls;
        }
        match state.last_end.map(|end| end.elapsed()) {
            Some(since) if since < self.after => Wait::Calm(self.after - since),
            _ => Wait::Quiet,
        }
    }

    /// Waits until no call has been in flight for the quiet period.
    pub async fn wait(&self) {
        loop {
            // Registered before the state is read, so a last call ending in
            // between still wakes this waiter.
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            match self.stand() {
                Wait::Quiet => return,
                Wait::Calls => idle.await,
                Wait::Calm(left) => tokio::time::sleep(left).await,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain fields, whole after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self.quiet.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.last_end = Some(tokio::time::Instant::now());
        if state.in_flight == 0 {
            self.quiet.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_calls_in_flight_and_a_quiet_moment_after() {
        let calm = Duration::from_millis(50);
        let quiet = std::sync::Arc::new(Quiet::new(calm));
        let q = std::sync::Arc::clone(&quiet);
        let busy_for = Duration::from_millis(300);
        let call = tokio::spawn(async move {
            let _busy = q.enter();
            tokio::time::sleep(busy_for).await;
        });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        quiet.wait().await;
        assert_eq!(started.elapsed(), busy_for + calm);
        call.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_starting_in_the_calm_restarts_the_wait() {
        let calm = Duration::from_millis(50);
        let quiet = std::sync::Arc::new(Quiet::new(calm));
        drop(quiet.enter());
        let q = std::sync::Arc::clone(&quiet);
        let call = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _busy = q.enter();
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        let started = tokio::time::Instant::now();
        quiet.wait().await;
        assert_eq!(started.elapsed(), Duration::from_millis(120) + calm);
        call.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn without_calls_it_does_not_wait() {
        let quiet = Quiet::new(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        quiet.wait().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_jobs_take_turns_and_quiet_ones_all_run() {
        let quiet = Quiet::new(Duration::from_millis(50));
        let first = quiet.turn(Lane::NetworkRelease).await;
        assert!(!first.is_busy(), "quiet: no busy turn needed");
        let busy = quiet.enter();
        let one = quiet.turn(Lane::NetworkRelease).await;
        assert!(one.is_busy());
        let two = quiet.turn(Lane::NetworkRelease);
        tokio::pin!(two);
        let waited = tokio::time::timeout(Duration::from_secs(1), &mut two).await;
        assert!(waited.is_err(), "a second job waits while the call runs");
        drop(busy);
        let started = tokio::time::Instant::now();
        assert!(
            !two.await.is_busy(),
            "quiet again: it runs beside the first"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        drop(one);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cgroup_removal_waits_for_quiet_as_long_as_its_patience_allows() {
        let quiet = Arc::new(Quiet::new(Duration::from_millis(50)));
        let busy = quiet.enter();
        let started = tokio::time::Instant::now();
        let first = quiet.turn(Lane::CgroupRemoval).await;
        assert_eq!(started.elapsed(), CGROUP_REMOVAL_PATIENCE, "never quiet");
        assert!(first.is_busy());
        let q = Arc::clone(&quiet);
        let second = tokio::spawn(async move {
            let _turn = q.turn(Lane::CgroupRemoval).await;
            tokio::time::Instant::now()
        });
        // Quiet now; the second still waits for the first's turn.
        drop(busy);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let freed = tokio::time::Instant::now();
        drop(first);
        assert!(
            second.await.unwrap() >= freed,
            "one at a time, quiet or not"
        );
        let started = tokio::time::Instant::now();
        let _third = quiet.turn(Lane::CgroupRemoval).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "quiet: at once");
    }

    #[tokio::test(start_paused = true)]
    async fn deletions_in_the_quiet_run_one_per_cpu_at_most() {
        let quiet = Quiet::new(Duration::from_millis(50));
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let mut running = Vec::new();
        for _ in 0..cpus {
            let turn = tokio::time::timeout(Duration::from_secs(1), quiet.turn(Lane::Deletion))
                .await
                .expect("quiet: a place is free");
            assert!(!turn.is_busy());
            running.push(turn);
        }
        let next = quiet.turn(Lane::Deletion);
        tokio::pin!(next);
        let waited = tokio::time::timeout(Duration::from_secs(1), &mut next).await;
        assert!(waited.is_err(), "one deletion per CPU, even in the quiet");
        running.pop();
        let freed = tokio::time::timeout(Duration::from_secs(1), next).await;
        assert!(freed.is_ok(), "a place freed is taken at once");
        // Releases are bounded elsewhere: any number run in the quiet.
        let mut releases = Vec::new();
        for _ in 0..cpus * 8 {
            releases.push(quiet.turn(Lane::NetworkRelease).await);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_lane_has_its_own_busy_turn() {
        let quiet = Quiet::new(Duration::from_millis(50));
        let _busy = quiet.enter();
        let release = quiet.turn(Lane::NetworkRelease).await;
        assert!(release.is_busy());
        let deletion = tokio::time::timeout(Duration::from_secs(1), quiet.turn(Lane::Deletion))
            .await
            .expect("a deletion does not wait for a release's turn");
        assert!(deletion.is_busy());
        let second = tokio::time::timeout(Duration::from_secs(1), quiet.turn(Lane::Deletion)).await;
        assert!(second.is_err(), "one deletion at a time while busy");
    }
}
