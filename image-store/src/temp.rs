//! Unique names in the store's `tmp/` directory, which
//! [`crate::ImageStore::open`] empties: anything half-written by a pull that
//! died lives only there.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh path in `tmp` for `purpose` (unique within this process, and the
/// pid keeps two processes sharing a store apart).
pub(crate) fn path(tmp: &Path, purpose: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    tmp.join(format!("{purpose}-{}-{n}", std::process::id()))
}
