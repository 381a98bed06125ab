//! Writable-layer usage for stats, measured at most every [`MAX_AGE`] per
//! container and never on the request path once known.
//!
//! Kubelet asks ListContainerStats for every container every 10–15 s.
//! Walking each container's upper directory on every call makes the call's
//! cost grow with what containers write (a container that unpacks 100 000
//! files slows every node-wide stats call). So, as containerd's snapshot
//! usage syncer does, figures are served from a cache: a container seen for
//! the first time is measured in the call (its layer is new, so small); a
//! figure older than [`MAX_AGE`] is served as is while one background task
//! re-measures every stale figure. Nothing runs when nobody asks.

use image_store::ContainerImages;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How old a figure may be before it is measured again: kubelet's own
/// stats period, so each of its calls sees figures at most one period old.
pub const MAX_AGE: Duration = Duration::from_secs(10);

/// Bytes and inodes of one writable layer; `None` when it has none.
type Usage = Option<(u64, u64)>;

/// The cached figures, by container id.
#[derive(Default)]
pub struct LayerUsageCache {
    figures: Mutex<HashMap<String, (Usage, Instant)>>,
    /// Whether a background refresh runs (at most one at a time).
    refreshing: Arc<AtomicBool>,
}

impl LayerUsageCache {
    /// The usage of each of `ids`, in order: cached figures as they are,
    /// unknown ones measured now in one pass, stale ones re-measured in the
    /// background for the next call.
    pub async fn usages(
        self: &Arc<Self>,
        images: &Arc<dyn ContainerImages>,
        ids: &[String],
    ) -> Vec<Usage> {
        let now = Instant::now();
        let (missing, stale) = self.sort(ids, now);
        if !missing.is_empty() {
            self.measure(images, missing).await;
        }
        if !stale.is_empty() && !self.refreshing.swap(true, Ordering::AcqRel) {
            self.refresh(Arc::clone(images), stale);
        }
        let figures = self.lock();
        ids.iter()
            .map(|id| figures.get(id).and_then(|(usage, _)| *usage))
            .collect()
    }

    /// Forgets a container's figure (it was removed).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The ids of `ids` with no figure, and those whose figure is stale.
    fn sort(&self, ids: &[String], now: Instant) -> (Vec<String>, Vec<String>) {
        let figures = self.lock();
        let (mut missing, mut stale) = (Vec::new(), Vec::new());
        for id in ids {
            match figures.get(id) {
                None => missing.push(id.clone()),
                Some((_, at)) if now.duration_since(*at) > MAX_AGE => stale.push(id.clone()),
                Some(_) => {}
            }
        }
        (missing, stale)
    }

    /// Measures `ids` and records their figures; a failed measurement
    /// records unknown, so it is not retried before [`MAX_AGE`].
    async fn measure(&self, images: &Arc<dyn ContainerImages>, ids: Vec<String>) {
        let measured = match images.writable_layer_usages(ids.clone()).await {
            Ok(measured) => measured,
            Err(e) => {
                tracing::debug!(error = %e, "measuring writable layers");
                vec![None; ids.len()]
            }
        };
        let at = Instant::now();
        let mut figures = self.lock();
        for (id, usage) in ids.into_iter().zip(measured) {
            figures.insert(id, (usage, at));
        }
    }

    /// Re-measures `stale` in a task of its own; clears the flag when done
    /// (also when the task is dropped with the runtime).
    fn refresh(self: &Arc<Self>, images: Arc<dyn ContainerImages>, stale: Vec<String>) {
        let cache = Arc::clone(self);
        let flag = ClearOnDrop(Arc::clone(&self.refreshing));
        tokio::spawn(async move {
            let _flag = flag;
            cache.measure(&images, stale).await;
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Usage, Instant)>> {
        // The map holds plain figures: a panic while it was held leaves
        // nothing half-updated that matters.
        self.figures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Clears the refresh flag when the refresh ends, however it ends.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_store::MockContainerImages;
    use std::sync::atomic::AtomicUsize;

    /// A store whose every layer measures `(calls, 1)`: the figure tells
    /// which measurement it came from.
    fn counting_store(calls: Arc<AtomicUsize>) -> Arc<dyn ContainerImages> {
        let mut images = MockContainerImages::new();
        images.expect_writable_layer_usages().returning(move |ids| {
            let n = calls.fetch_add(1, Ordering::SeqCst) as u64 + 1;
            Ok(ids.iter().map(|_| Some((n, 1))).collect())
        });
        Arc::new(images)
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn new_containers_are_measured_once_in_one_pass() {
        let calls = Arc::new(AtomicUsize::new(0));
        let images = counting_store(Arc::clone(&calls));
        let cache = Arc::new(LayerUsageCache::default());
        let first = cache.usages(&images, &ids(&["a", "b"])).await;
        assert_eq!(first, vec![Some((1, 1)), Some((1, 1))]);
        let again = cache.usages(&images, &ids(&["a", "b"])).await;
        assert_eq!(again, first, "fresh figures are served from the cache");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_figures_are_served_then_refreshed_in_the_background() {
        let calls = Arc::new(AtomicUsize::new(0));
        let images = counting_store(Arc::clone(&calls));
        let cache = Arc::new(LayerUsageCache::default());
        cache.usages(&images, &ids(&["a"])).await;
        // Age the figure past MAX_AGE.
        let old = Instant::now() - MAX_AGE - Duration::from_secs(1);
        cache.lock().get_mut("a").unwrap().1 = old;
        let served = cache.usages(&images, &ids(&["a"])).await;
        assert_eq!(served, vec![Some((1, 1))], "the stale figure is served");
        for _ in 0..100 {
            if cache.usages(&images, &ids(&["a"])).await == vec![Some((2, 1))] {
                assert!(!cache.refreshing.load(Ordering::Acquire));
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the background refresh never landed");
    }

    #[tokio::test]
    async fn a_failed_measurement_is_unknown_and_forget_drops_a_figure() {
        let mut images = MockContainerImages::new();
        images
            .expect_writable_layer_usages()
            .returning(|_| Err(image_store::Error::Task("test")));
        let images: Arc<dyn ContainerImages> = Arc::new(images);
        let cache = Arc::new(LayerUsageCache::default());
        assert_eq!(cache.usages(&images, &ids(&["a"])).await, vec![None]);
        cache.forget("a");
        assert!(cache.lock().is_empty());
    }
}
