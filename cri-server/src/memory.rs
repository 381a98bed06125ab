//! Handing memory the allocator keeps back to the kernel.
//!
//! glibc's malloc keeps freed memory in per-thread arenas for reuse. An image
//! pull (registry client, decompression windows, blocking-pool threads)
//! leaves several MiB behind in arenas that an idle daemon never touches
//! again, and they count against the daemon's resident memory for good. After
//! such one-off bursts the daemon asks malloc to return free pages.

/// Returns the allocator's free memory to the kernel, off the async workers
/// (trimming walks every arena).
///
/// # Examples
///
/// ```
/// # async fn demo() {
/// cri_server::memory::release_free().await;
/// # }
/// ```
pub async fn release_free() {
    let _ = tokio::task::spawn_blocking(trim).await;
}

/// CRI calls answered so far, for [`spawn_idle_trimmer`].
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one answered CRI call.
pub fn note_call() {
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// After a burst of calls (kubelet starting or tearing down a node's pods),
/// trims once the daemon has been quiet for a whole `period`: the burst's
/// blocking threads, responses and per-pod work leave several MiB in
/// malloc's arenas (a 110-pod build and teardown: 14 → 21 MiB PSS, kept
/// for good). Never trims twice without calls in between.
pub fn spawn_idle_trimmer(period: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = CALLS.load(std::sync::atomic::Ordering::Relaxed);
        let mut dirty = false;
        loop {
            tokio::time::sleep(period).await;
            let now = CALLS.load(std::sync::atomic::Ordering::Relaxed);
            if now != seen {
                (seen, dirty) = (now, true);
            } else if dirty {
                dirty = false;
                release_free().await;
            }
        }
    })
}

#[cfg(target_env = "gnu")]
fn trim() {
    // SAFETY: malloc_trim only inspects and madvises the allocator's own
    // free lists; it takes the arena locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}
