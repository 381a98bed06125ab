//! The one way this crate changes namespace: on a fresh OS thread that ends
//! with the work.
//!
//! A thread that has entered another namespace must never run anything else:
//! if it were a tokio worker or the caller's thread, unrelated work would
//! silently run in the pod's network. Scoped threads let the work borrow
//! from the caller, and joining before returning guarantees the thread is
//! gone when we report the result.

use std::path::Path;

use crate::error::{Error, Result};

/// Runs `work` on a new OS thread named `name` and returns its result; a
/// panic in `work` is resumed on the caller's thread.
pub(crate) fn on_dedicated_thread<T, F>(name: &str, pin: &Path, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send,
    T: Send,
{
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn_scoped(scope, work)
            .map_err(|source| Error::Thread {
                path: pin.to_path_buf(),
                source,
            })?;
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_elsewhere_and_may_borrow() {
        let me = std::thread::current().id();
        let data = [1, 2, 3];
        let (sum, other) = on_dedicated_thread("t", Path::new("/p"), || {
            Ok((data.iter().sum::<i32>(), std::thread::current().id()))
        })
        .unwrap();
        assert_eq!(sum, 6);
        assert_ne!(other, me);
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn panics_reach_the_caller() {
        let _ = on_dedicated_thread::<(), _>("t", Path::new("/p"), || panic!("boom"));
    }
}
