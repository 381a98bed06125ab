//! Layers in flight and layers known good, shared by every pull of one
//! store.
//!
//! A layer is fetched at most once at a time: the first pull that needs a
//! chain id leads its download; another pull that needs it meanwhile waits
//! for the leader's outcome instead of fetching it too, and fetches it
//! itself only when the leader failed or was cancelled (a failure may be
//! the leader's alone: its credentials, its endpoint).
//!
//! A stored layer is skipped before any byte of it is fetched only when the
//! store has verified that this very blob unpacks to it: the pair (chain
//! id, compressed digest) is *known*. The chain id alone would do for what
//! the container sees (the directory holds what the config's diff ids
//! name), but a blob an image names and nobody checked is refused, not
//! trusted: a layer whose compressed digest is new is fetched and hashed
//! against its diff id, even when its chain id is unpacked already.

use crate::digest::Digest;
use crate::layer_store::ChainId;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::watch;

/// What a pull does about one layer; see [`Flights::claim`].
pub(crate) enum Claim<'a> {
    /// The blob was verified to unpack to this chain id before: nothing to
    /// fetch, if the directory is still there.
    Known,
    /// Another pull is fetching this chain id: wait for its outcome.
    Join(Flight),
    /// Ours to fetch; others wait for it until it is dropped.
    Lead(Lead<'a>),
}

/// Another pull's download of a layer, to wait for.
pub(crate) struct Flight(watch::Receiver<Option<Digest>>);

impl Flight {
    /// The compressed digest the leader verified, or `None` when it failed
    /// or was cancelled.
    pub(crate) async fn outcome(mut self) -> Option<Digest> {
        match self.0.wait_for(Option::is_some).await {
            Ok(digest) => digest.clone(),
            Err(_) => None,
        }
    }
}

/// The right (and duty) to fetch one layer. Dropping it without
/// [`Lead::succeed`] tells the waiting pulls it failed.
pub(crate) struct Lead<'a> {
    flights: &'a Flights,
    chain_id: ChainId,
    /// The flight's number in the table; `None` when another flight for the
    /// chain id was registered (a pull retrying on its own after joining
    /// one that failed).
    registered: Option<u64>,
    outcome: watch::Sender<Option<Digest>>,
}

impl Lead<'_> {
    /// Records that blob `digest` was verified to unpack to the chain id
    /// (and that the layer is in place), and tells the waiting pulls.
    pub(crate) fn succeed(self, digest: Digest) {
        let mut state = self.flights.lock();
        state.known.insert((self.chain_id.clone(), digest.clone()));
        self.outcome.send_replace(Some(digest));
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut state = self.flights.lock();
        let ours = state
            .flying
            .get(&self.chain_id)
            .is_some_and(|(n, _)| Some(*n) == self.registered);
        if ours {
            state.flying.remove(&self.chain_id);
        }
    }
}

/// The store's layers in flight and known (chain id, blob) pairs.
#[derive(Default)]
pub(crate) struct Flights {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// (chain id, compressed digest) pairs verified by a pull: the blob
    /// decompresses to the diff id at the top of the chain.
    known: HashSet<(ChainId, Digest)>,
    /// Layers being fetched, by chain id, with the flight's number.
    flying: HashMap<ChainId, (u64, watch::Receiver<Option<Digest>>)>,
    next: u64,
}

impl Flights {
    /// A table that knows `pairs` (from the stored images' records).
    pub(crate) fn new(pairs: impl IntoIterator<Item = (ChainId, Digest)>) -> Self {
        let state = State {
            known: pairs.into_iter().collect(),
            ..State::default()
        };
        Self {
            state: Mutex::new(state),
        }
    }

    /// What to do about layer `chain_id` whose blob is `digest`: skip it
    /// (known), wait for another pull's download of it (unless `join` is
    /// false: a pull whose wait ended in failure retries on its own), or
    /// fetch it.
    pub(crate) fn claim(&self, chain_id: &ChainId, digest: &Digest, join: bool) -> Claim<'_> {
        let mut state = self.lock();
        if state.known.contains(&(chain_id.clone(), digest.clone())) {
            return Claim::Known;
        }
        if let Some((_, outcome)) = state.flying.get(chain_id).filter(|_| join) {
            return Claim::Join(Flight(outcome.clone()));
        }
        let (sender, receiver) = watch::channel(None);
        let registered = (!state.flying.contains_key(chain_id)).then(|| {
            state.next += 1;
            let number = state.next;
            state.flying.insert(chain_id.clone(), (number, receiver));
            number
        });
        Claim::Lead(Lead {
            flights: self,
            chain_id: chain_id.clone(),
            registered,
            outcome: sender,
        })
    }

    /// Forgets a known pair whose layer is no longer unpacked.
    pub(crate) fn forget(&self, chain_id: &ChainId, digest: &Digest) {
        self.lock()
            .known
            .remove(&(chain_id.clone(), digest.clone()));
    }

    /// Forgets every known pair whose chain id is not in `kept` (after
    /// garbage collection removed those layers).
    pub(crate) fn retain(&self, kept: &HashSet<ChainId>) {
        self.lock().known.retain(|(chain, _)| kept.contains(chain));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain sets: consistent whatever a panicking holder did.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn chain(c: char) -> ChainId {
        crate::layer_store::chain_ids(&[digest(c)]).remove(0)
    }

    #[tokio::test]
    async fn a_second_claim_joins_and_learns_the_outcome() {
        let flights = Flights::default();
        let Claim::Lead(lead) = flights.claim(&chain('a'), &digest('1'), true) else {
            panic!("the first claim leads");
        };
        let Claim::Join(flight) = flights.claim(&chain('a'), &digest('1'), true) else {
            panic!("the second claim joins");
        };
        lead.succeed(digest('1'));
        assert_eq!(flight.outcome().await, Some(digest('1')));
        assert!(matches!(
            flights.claim(&chain('a'), &digest('1'), true),
            Claim::Known
        ));
        // Another blob for the same chain id is not known: it is checked.
        assert!(matches!(
            flights.claim(&chain('a'), &digest('2'), true),
            Claim::Lead(_)
        ));
    }

    #[tokio::test]
    async fn a_dropped_lead_fails_its_joiners_and_frees_the_chain_id() {
        let flights = Flights::default();
        let lead = flights.claim(&chain('a'), &digest('1'), true);
        let Claim::Join(flight) = flights.claim(&chain('a'), &digest('1'), true) else {
            panic!("the second claim joins");
        };
        drop(lead);
        assert_eq!(flight.outcome().await, None);
        let Claim::Lead(retry) = flights.claim(&chain('a'), &digest('1'), true) else {
            panic!("nobody flies it any more");
        };
        assert!(retry.registered.is_some());
        // A retry that will not join leads beside a registered flight,
        // without replacing it.
        let Claim::Lead(alone) = flights.claim(&chain('a'), &digest('1'), false) else {
            panic!("no join asked");
        };
        assert!(alone.registered.is_none());
        drop(alone);
        assert!(matches!(
            flights.claim(&chain('a'), &digest('1'), true),
            Claim::Join(_)
        ));
    }

    #[test]
    fn pairs_are_forgotten_with_their_layers() {
        let flights = Flights::new([(chain('a'), digest('1')), (chain('b'), digest('2'))]);
        flights.retain(&HashSet::from([chain('b')]));
        assert!(matches!(
            flights.claim(&chain('a'), &digest('1'), true),
            Claim::Lead(_)
        ));
        assert!(matches!(
            flights.claim(&chain('b'), &digest('2'), true),
            Claim::Known
        ));
        flights.forget(&chain('b'), &digest('2'));
        assert!(matches!(
            flights.claim(&chain('b'), &digest('2'), true),
            Claim::Lead(_)
        ));
    }
}
