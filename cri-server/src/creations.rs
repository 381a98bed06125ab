//! Creations in flight, and finished ones nobody has claimed yet, by the
//! object's name: kubelet cancels a RunPodSandbox or CreateContainer at its
//! deadline and calls again with the same request, and the retry must get
//! the object the first call is still making (or has made), as CRI-O's
//! resource store does, not `AlreadyExists` naming it.
//!
//! A creation runs to its end in a task of its own, whatever its callers do
//! ([`Creations::create_once`]). Its result goes to every caller still
//! waiting; when none is (the only caller gave up), it stays here unclaimed
//! until a retry takes it, or until [`Creations::expired`] hands it back to
//! the daemon to undo after a grace period, so that nothing a cancelled call
//! made lingers for good.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::{Code, Status};

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
    /// When it finished unclaimed.
    unclaimed_since: Option<Instant>,
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
    pub async fn create_once<F>(
        self: &Arc<Self>,
        name: &str,
        fingerprint: u64,
        create: F,
    ) -> Result<String, Status>
    where
        F: Future<Output = Result<String, Status>> + Send + 'static,
    {
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
        self.claim(name);
        result.map_err(|(code, message)| Status::new(code, message))
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
                unclaimed_since: None,
            },
        );
        let creations = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            let result = create.await;
            creations.finish(&name, &result);
            let _ = sender.send(State::Done(
                result.map_err(|s| (s.code(), s.message().to_string())),
            ));
        });
        Ok(receiver)
    }

    /// Marks `name` finished: a failure is forgotten (its verb undid it);
    /// a success nobody waits for stays to be claimed.
    fn finish(&self, name: &str, result: &Result<String, Status>) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        if result.is_err() && entry.waiters == 0 {
            entries.remove(name);
        } else if entry.waiters == 0 {
            entry.unclaimed_since = Some(Instant::now());
        }
    }

    /// A caller received the result: the entry has served its purpose.
    fn claim(&self, name: &str) {
        let mut entries = self.lock();
        if entries
            .get(name)
            .is_some_and(|e| matches!(*e.state.borrow(), State::Done(_)))
        {
            entries.remove(name);
        }
    }

    /// Finished creations nobody claimed within the grace period, removed
    /// from here: `(name, id)` pairs for the daemon to undo.
    pub fn expired(&self, now: Instant) -> Vec<(String, String)> {
        let mut entries = self.lock();
        let expired: Vec<(String, Option<String>)> = entries
            .iter()
            .filter(|(_, e)| {
                e.waiters == 0
                    && e.unclaimed_since
                        .is_some_and(|since| now.duration_since(since) >= self.grace)
            })
            .map(|(name, e)| {
                let id = match &*e.state.borrow() {
                    State::Done(Ok(id)) => Some(id.clone()),
                    _ => None,
                };
                (name.clone(), id)
            })
            .collect();
        for (name, _) in &expired {
            entries.remove(name);
        }
        expired
            .into_iter()
            .filter_map(|(name, id)| id.map(|id| (name, id)))
            .collect()
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
            entry.unclaimed_since = None;
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
        if entry.waiters > 0 {
            return;
        }
        let failed = match &*entry.state.borrow() {
            State::Done(Err(_)) => true,
            // Nobody got it: it waits for a retry, or for the sweep.
            State::Done(Ok(_)) => {
                entry.unclaimed_since = Some(Instant::now());
                false
            }
            State::Running => false,
        };
        if failed {
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

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_call_runs_on_and_its_retry_gets_the_same_id() {
        let creations = Creations::new(DEFAULT_GRACE);
        let runs = Arc::new(AtomicUsize::new(0));
        // The client gives up after 10 ms of a 1 s creation.
        let first = creations.create_once("pod-a", 1, slow(&runs, Duration::from_secs(1), "id-1"));
        assert!(tokio::time::timeout(Duration::from_millis(10), first)
            .await
            .is_err());
        // Its retry, while the creation still runs, and once it finished.
        let retry = creations.create_once("pod-a", 1, slow(&runs, Duration::ZERO, "id-2"));
        assert_eq!(retry.await.unwrap(), "id-1");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the retry made a second pod"
        );
        assert!(creations.is_empty(), "the claimed creation is still listed");

        let late = creations.create_once("pod-b", 2, slow(&runs, Duration::from_secs(1), "id-3"));
        assert!(tokio::time::timeout(Duration::from_millis(10), late)
            .await
            .is_err());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let retry = creations.create_once("pod-b", 2, slow(&runs, Duration::ZERO, "id-4"));
        assert_eq!(retry.await.unwrap(), "id-3");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unclaimed_creation_expires_after_the_grace_period() {
        let creations = Creations::new(Duration::from_secs(60));
        let runs = Arc::new(AtomicUsize::new(0));
        let call = creations.create_once("pod-a", 1, slow(&runs, Duration::from_secs(1), "id-1"));
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
            async move { creations.create_once("pod-a", 1, work).await }
        });
        tokio::task::yield_now().await;
        let other = creations
            .create_once("pod-a", 2, slow(&runs, Duration::ZERO, "x"))
            .await
            .unwrap_err();
        assert_eq!(other.code(), Code::AlreadyExists);
        assert_eq!(first.await.unwrap().unwrap(), "id-1");

        let failing = async { Err::<String, _>(Status::invalid_argument("bad pod")) };
        let err = creations
            .create_once("pod-c", 3, failing)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(creations.is_empty(), "a failure stays listed");
    }
}
