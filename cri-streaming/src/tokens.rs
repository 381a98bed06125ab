//! Single-use URL tokens that expire: what an Exec, Attach or PortForward
//! call hands out and the streaming server redeems exactly once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tokens to pending requests, each redeemable once before its deadline.
///
/// # Examples
///
/// ```
/// use cri_streaming::tokens::TokenStore;
/// use std::time::Duration;
///
/// let store = TokenStore::new(Duration::from_secs(60));
/// let token = store.insert("exec c1").unwrap();
/// assert_eq!(store.take(&token), Some("exec c1"));
/// assert_eq!(store.take(&token), None); // single use
/// ```
#[derive(Debug)]
pub struct TokenStore<T> {
    ttl: Duration,
    pending: Mutex<HashMap<String, (Instant, T)>>,
}

/// A token could not be drawn from the system's random source.
#[derive(Debug, thiserror::Error)]
#[error("streaming token: random source: {source}")]
pub struct TokenError {
    /// Why the random source failed.
    pub source: getrandom::Error,
}

impl<T> TokenStore<T> {
    /// An empty store whose tokens live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        TokenStore {
            ttl,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `request` under a fresh unguessable token (128 random bits, hex)
    /// and returns the token. Expired entries are dropped on the way.
    pub fn insert(&self, request: T) -> Result<String, TokenError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|source| TokenError { source })?;
        let token = hex::encode(raw);
        let now = Instant::now();
        let mut pending = self.lock();
        pending.retain(|_, (deadline, _)| *deadline > now);
        pending.insert(token.clone(), (now + self.ttl, request));
        Ok(token)
    }

    /// Removes and returns the request of `token` if it exists and has not
    /// expired. A token is never returned twice.
    pub fn take(&self, token: &str) -> Option<T> {
        let (deadline, request) = self.lock().remove(token)?;
        (deadline > Instant::now()).then_some(request)
    }

    /// How many tokens are waiting (expired ones included until the next insert).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no token is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, T)>> {
        // A panic while holding the lock leaves a map that is still valid.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_and_unique() {
        let store = TokenStore::new(Duration::from_secs(60));
        let a = store.insert(1).unwrap();
        let b = store.insert(2).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(store.take(&b), Some(2));
        assert_eq!(store.take(&b), None);
        assert_eq!(store.take("nope"), None);
        assert_eq!(store.take(&a), Some(1));
        assert!(store.is_empty());
    }

    #[test]
    fn expired_tokens_are_refused_and_swept() {
        let store = TokenStore::new(Duration::from_millis(20));
        let a = store.insert(1).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(store.take(&a), None);
        let _ = store.insert(2).unwrap();
        let _b = store.insert(3).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        let _ = store.insert(4).unwrap();
        assert_eq!(store.len(), 1, "expired entries are swept on insert");
    }
}
