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
