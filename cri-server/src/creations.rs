//! Creations in flight, and finished ones kept for a while, by the
//! object's name: kubelet cancels a RunPodSandbox or CreateContainer at its
//! deadline and calls again with the same request, and the retry must get
//! the object the first call is still making (or has made), as CRI-O's
//! resource store does, not `AlreadyExists` naming it.
//!
//! A creation runs to its end in a task of its own, whatever its callers do
//! ([`Creations::create_once`]). Its result goes to every caller still
//! waiting and stays here for a grace period: even a caller that got it may
//! have lost the answer on the way (a deadline passing as it is sent), and
//! its retry must still get the same id. A result no caller ever got is
//! handed back by [`Creations::expired`] for the daemon to undo, so that
//! nothing a cancelled call made lingers for good; removing the object
//! forgets it ([`Creations::forget_id`]).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::{Code, Status};

/// An answer sent this close to the caller's deadline may not reach it.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// The deadline a gRPC request's `grpc-timeout` header sets, counted from
/// now (`"100m"` is 100 ms; units H, M, S, m, u, n).
pub fn deadline_of(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

/// How long a finished creation nobody claimed waits for a retry.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(120);

/// Where a creation is.
#[derive(Debug, Clone)]
enum State {
    Running,
    /// The id made, or the error as its gRPC code and message.
    Done(Result<String, (Code, String)>),
}

#[derive(Debug)]
struct Entry {
    fingerprint: u64,
    state: watch::Receiver<State>,
    /// Callers waiting on the result right now.
    waiters: usize,
    /// When it finished.
    finished_at: Option<Instant>,
    /// Whether a caller got the result.
    claimed: bool,
}

/// The creations of one kind of object (pods, or containers), by name.
#[derive(Debug)]
pub struct Creations {
    entries: Mutex<HashMap<String, Entry>>,
    grace: Duration,
}

/// A fingerprint of a request: a retry has the same one, a different
/// request under the same name has another.
pub fn fingerprint(request: &impl prost::Message) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    request.encode_to_vec().hash(&mut hasher);
    hasher.finish()
}

impl Creations {
    /// No creations; unclaimed results wait `grace` for a retry.
    pub fn new(grace: Duration) -> Arc<Creations> {
        Arc::new(Creations {
            entries: Mutex::new(HashMap::new()),
            grace,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `create` for `name` unless the same request (`fingerprint`) is
    /// already being made or was made and not yet claimed, in which case
    /// its result is awaited and returned instead. A different request for
    /// a name in flight is `AlreadyExists`. `create` runs to its end in a
    /// task of its own even if every caller goes away.
    ///
    /// `current` says whether an object made earlier is still what a retry
    /// may get (a pod since stopped is not): one that is not is forgotten
    /// and a new one made. `deadline` is the caller's (gRPC's
    /// `grpc-timeout`), if it sent one.
    pub async fn create_once<F>(
        self: &Arc<Self>,
        name: &str,
        fingerprint: u64,
        deadline: Option<Instant>,
        current: impl Fn(&str) -> bool,
        create: F,
    ) -> Result<String, Status>
    where
        F: Future<Output = Result<String, Status>> + Send + 'static,
    {
        self.forget_stale(name, current);
        let state = self.admit(name, fingerprint, create)?;
        let _waiting = Waiting::new(self, name);
        let mut state = state;
        let result = loop {
            if let State::Done(result) = &*state.borrow_and_update() {
                break result.clone();
            }
            if state.changed().await.is_err() {
                // The task ended without a result: it panicked.
                break Err((Code::Internal, format!("creating {name} failed")));
            }
        };
        let maybe_lost = deadline.is_some_and(|d| Instant::now() + DEADLINE_MARGIN >= d);
        self.claim(name, maybe_lost);
        result.map_err(|(code, message)| Status::new(code, message))
    }

    /// Forgets `name`'s finished creation if its object is no longer current.
    fn forget_stale(&self, name: &str, current: impl Fn(&str) -> bool) {
        let mut entries = self.lock();
        let stale = entries
            .get(name)
            .is_some_and(|e| matches!(&*e.state.borrow(), State::Done(Ok(id)) if !current(id)));
        if stale {
            entries.remove(name);
        }
    }

    /// Joins the creation of `name` or starts it.
    fn admit<F>(
        self: &Arc<Self>,
        name: &str,
        fingerprint: u64,
        create: F,
    ) -> Result<watch::Receiver<State>, Status>
    where
        F: Future<Output = Result<String, Status>> + Send + 'static,
    {
        let mut entries = self.lock();
        if let Some(entry) = entries.get(name) {
            if entry.fingerprint == fingerprint {
                tracing::info!(%name, "a retry joins the creation already made or under way");
                return Ok(entry.state.clone());
            }
            return Err(Status::already_exists(format!(
                "{name} is being created by another request"
            )));
        }
        let (sender, receiver) = watch::channel(State::Running);
        entries.insert(
            name.to_string(),
            Entry {
                fingerprint,
                state: receiver.clone(),
                waiters: 0,
                finished_at: None,
                claimed: false,
            },
        );
        let creations = Arc::clone(self);
        let name = name.to_string();
        // A graceful shutdown lets the creation finish (see
        // `in_flight::VERBS`).
        let entered = crate::in_flight::VERBS.enter();
        tokio::spawn(async move {
            let _entered = entered;
            let result = create.await;
            creations.finish(&name, &result);
            let _ = sender.send(State::Done(
                result.map_err(|s| (s.code(), s.message().to_string())),
            ));
        });
        Ok(receiver)
    }

    /// Marks `name` finished; a failure nobody waits for is forgotten (its
    /// verb undid it).
    fn finish(&self, name: &str, result: &Result<String, Status>) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        entry.finished_at = Some(Instant::now());
        if result.is_err() && entry.waiters == 0 {
            entries.remove(name);
        }
    }

    /// A caller received the result. It is forgotten, so that a later
    /// duplicate is `AlreadyExists` from the verb, unless the caller's
    /// deadline was (nearly) over: then the answer may be lost on its way,
    /// and a success is kept through the grace period for the retry, but
    /// never undone (the caller may well have it).
    fn claim(&self, name: &str, maybe_lost: bool) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        let succeeded = match &*entry.state.borrow() {
            State::Done(result) => result.is_ok(),
            State::Running => return,
        };
        if succeeded && maybe_lost {
            entry.claimed = true;
        } else {
            entries.remove(name);
        }
    }

    /// Forgets the creation that made `id` (it was removed): a later
    /// request under the same name makes a new object.
    pub fn forget_id(&self, id: &str) {
        self.lock()
            .retain(|_, e| !matches!(&*e.state.borrow(), State::Done(Ok(made)) if made == id));
    }

    /// Finished creations whose grace period is over, removed from here:
    /// those no caller ever got come back as `(name, id)` pairs for the
    /// daemon to undo.
    pub fn expired(&self, now: Instant) -> Vec<(String, String)> {
        let mut entries = self.lock();
        let over: Vec<String> = entries
            .iter()
            .filter(|(_, e)| {
                e.waiters == 0
                    && e.finished_at
                        .is_some_and(|at| now.saturating_duration_since(at) >= self.grace)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let mut unclaimed = Vec::new();
        for name in over {
            let Some(entry) = entries.remove(&name) else {
                continue;
            };
            let made = match &*entry.state.borrow() {
                State::Done(Ok(id)) if !entry.claimed => Some(id.clone()),
                _ => None,
            };
            if let Some(id) = made {
                unclaimed.push((name, id));
            }
        }
        unclaimed
    }

    /// Names in flight or unclaimed (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is in flight or unclaimed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A caller waiting on a creation; counted while it waits, so a result
/// that arrives after every caller left is known to be unclaimed.
struct Waiting<'a> {
    creations: &'a Creations,
    name: String,
}

impl<'a> Waiting<'a> {
    fn new(creations: &'a Creations, name: &str) -> Waiting<'a> {
        if let Some(entry) = creations.lock().get_mut(name) {
            entry.waiters += 1;
        }
        Waiting {
            creations,
            name: name.to_string(),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut entries = self.creations.lock();
        let Some(entry) = entries.get_mut(&self.name) else {
            return;
        };
        entry.waiters = entry.waiters.saturating_sub(1);
        // A failure nobody waits for any more is forgotten; a success
        // stays until claimed by a retry or expired.
        if entry.waiters == 0 && matches!(&*entry.state.borrow(), State::Done(Err(_))) {
            entries.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A creation that takes `delay`, counts its runs, and returns `id`.
    fn slow(
        runs: &Arc<AtomicUsize>,
        delay: Duration,
        id: &str,
    ) -> impl Future<Output = Result<String, Status>> + Send + 'static {
        let runs = Arc::clone(runs);
        let id = id.to_string();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(id)
        }
    }

    /// `create_once` for a pod that is always current.
    fn once<'a>(
        creations: &'a Arc<Creations>,
        name: &str,
        fingerprint: u64,
        deadline: Option<Instant>,
        work: impl Future<Output = Result<String, Status>> + Send + 'static,
    ) -> impl Future<Output = Result<String, Status>> + 'a {
        let name = name.to_string();
        async move {
            creations
                .create_once(&name, fingerprint, deadline, |_| true, work)
                .await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_call_runs_on_and_its_retry_gets_the_same_id() {
        let creations = Creations::new(DEFAULT_GRACE);
        let runs = Arc::new(AtomicUsize::new(0));
        // The client gives up after 10 ms of a 1 s creation.
        let first = once(
            &creations,
            "pod-a",
            1,
            None,
            slow(&runs, Duration::from_secs(1), "id-1"),
        );
        assert!(tokio::time::timeout(Duration::from_millis(10), first)
            .await
            .is_err());
        // Its retry, while the creation still runs, gets the same pod.
        let retry = once(
            &creations,
            "pod-a",
            1,
            None,
            slow(&runs, Duration::ZERO, "id-2"),
        );
        assert_eq!(retry.await.unwrap(), "id-1");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the retry made a second pod"
        );
        // It got its answer in time: forgotten, a later duplicate is the
        // verb's to refuse.
        assert!(creations.is_empty());

        // A retry after the first one finished, unclaimed.
        let late = once(
            &creations,
            "pod-b",
            2,
            None,
            slow(&runs, Duration::from_secs(1), "id-3"),
        );
        assert!(tokio::time::timeout(Duration::from_millis(10), late)
            .await
            .is_err());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let retry = once(
            &creations,
            "pod-b",
            2,
            None,
            slow(&runs, Duration::ZERO, "id-4"),
        );
        assert_eq!(retry.await.unwrap(), "id-3");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_at_the_deadline_may_be_lost_so_its_retry_gets_the_same_id() {
        let creations = Creations::new(DEFAULT_GRACE);
        let runs = Arc::new(AtomicUsize::new(0));
        let at_deadline = Some(Instant::now());
        let first = once(
            &creations,
            "pod-a",
            1,
            at_deadline,
            slow(&runs, Duration::ZERO, "id-1"),
        );
        assert_eq!(first.await.unwrap(), "id-1");
        let retry = once(
            &creations,
            "pod-a",
            1,
            None,
            slow(&runs, Duration::ZERO, "id-2"),
        );
        assert_eq!(retry.await.unwrap(), "id-1");
        // Never undone: the first caller may well have had it.
        let later = Instant::now() + DEFAULT_GRACE + Duration::from_secs(1);
        assert!(creations.expired(later).is_empty());
        assert!(creations.is_empty());

        // Not once the pod is stopped, or removed: then the name makes a new one.
        let first = once(
            &creations,
            "pod-b",
            2,
            at_deadline,
            slow(&runs, Duration::ZERO, "id-3"),
        );
        assert_eq!(first.await.unwrap(), "id-3");
        let stopped = creations
            .create_once(
                "pod-b",
                2,
                None,
                |id| id != "id-3",
                slow(&runs, Duration::ZERO, "id-4"),
            )
            .await;
        assert_eq!(stopped.unwrap(), "id-4");
        let first = once(
            &creations,
            "pod-c",
            3,
            at_deadline,
            slow(&runs, Duration::ZERO, "id-5"),
        );
        assert_eq!(first.await.unwrap(), "id-5");
        creations.forget_id("id-5");
        assert!(creations.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unclaimed_creation_expires_after_the_grace_period() {
        let creations = Creations::new(Duration::from_secs(60));
        let runs = Arc::new(AtomicUsize::new(0));
        let call = once(
            &creations,
            "pod-a",
            1,
            None,
            slow(&runs, Duration::from_secs(1), "id-1"),
        );
        assert!(tokio::time::timeout(Duration::from_millis(10), call)
            .await
            .is_err());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            creations.expired(Instant::now()).is_empty(),
            "expired too early"
        );
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(
            creations.expired(later),
            [("pod-a".to_string(), "id-1".to_string())]
        );
        assert!(creations.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn another_request_for_a_name_in_flight_is_refused_and_failures_are_forgotten() {
        let creations = Creations::new(DEFAULT_GRACE);
        let runs = Arc::new(AtomicUsize::new(0));
        let first = tokio::spawn({
            let creations = Arc::clone(&creations);
            let work = slow(&runs, Duration::from_secs(1), "id-1");
            async move { once(&creations, "pod-a", 1, None, work).await }
        });
        tokio::task::yield_now().await;
        let other = once(
            &creations,
            "pod-a",
            2,
            None,
            slow(&runs, Duration::ZERO, "x"),
        )
        .await
        .unwrap_err();
        assert_eq!(other.code(), Code::AlreadyExists);
        assert_eq!(first.await.unwrap().unwrap(), "id-1");

        let failing = async { Err::<String, _>(Status::invalid_argument("bad pod")) };
        let err = once(&creations, "pod-c", 3, None, failing)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(creations.is_empty(), "a failure stays listed");
    }

    #[test]
    fn grpc_timeouts_become_deadlines() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(deadline_of(&metadata), None);
        metadata.insert("grpc-timeout", "250m".parse().unwrap());
        let deadline = deadline_of(&metadata).unwrap();
        let left = deadline - Instant::now();
        assert!(left <= Duration::from_millis(250) && left > Duration::from_millis(200));
        metadata.insert("grpc-timeout", "2S".parse().unwrap());
        assert!(deadline_of(&metadata).unwrap() > Instant::now() + Duration::from_secs(1));
        metadata.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(deadline_of(&metadata), None);
    }
}
