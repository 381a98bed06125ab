//! Deleting a removed container's or pod's state directory off the
//! request path.
//!
//! RemoveContainer and RemovePodSandbox answer once the directory has left
//! its place: [`discard`] renames it into [`Layout::removed`] (one syscall;
//! nothing looks for it there) and deletes it on a blocking thread nobody
//! waits for. The directory walk and unlinks were most of a RemoveContainer
//! under load (about 1 ms per container here, with the root filesystem's
//! own). A daemon killed first leaves the directory in `removed/`, which
//! [`sweep`] empties at the next start. Mounts are never in it: a removal
//! detaches them before it discards (see `container::userns_root`).
//!
//! The deletions ([`delete_in_turn`], the image store's removed root
//! filesystems too) take turns with the pod calls ([`crate::quiet`]):
//! during a node's teardown at 110 pods they were a fifth of the daemon's
//! CPU while the stops ran (unlinks, directory reads, and the discard of
//! every freed block this disk asks for), on the same two CPUs as the
//! stops' kill-to-exit chains.

use crate::layout::Layout;
use crate::quiet::{Lane, Quiet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Moves `dir` out of the way and deletes it in the background, in the
/// turns `quiet` gives; nothing to do if it is gone already.
///
/// # Errors
///
/// The rename's error: the directory is then still where it was.
pub async fn discard(layout: &Layout, quiet: &Arc<Quiet>, dir: &Path) -> std::io::Result<()> {
    let removed = layout.removed();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = removed.join(format!(
        "{name}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // On the blocking pool, awaited: a rename waits for the journal when
    // the disk is busy, and handing the worker off (`block_in_place`)
    // left the stops and exits queued on it waiting for a new thread to
    // get a CPU (up to 8 ms at 110 pods).
    let (from, to) = (dir.to_path_buf(), doomed.clone());
    let moved = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&removed)?;
        std::fs::rename(&from, &to)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match moved {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => return Ok(()),
        Err(e) => return Err(e),
    }
    delete_in_turn(quiet, doomed);
    Ok(())
}

/// Deletes `doomed`, a directory already out of every reader's way, on a
/// blocking thread once the deletion lane of `quiet` gives it a turn: at
/// once when no pod call is in flight, one deletion at a time while they
/// are. Nobody waits for it; what a crash leaves is in a directory the
/// next start empties (`removed/` here, the image store's `tmp/`).
pub fn delete_in_turn(quiet: &Arc<Quiet>, doomed: PathBuf) {
    quiet.run_in_turn(Lane::Deletion, move || {
        if let Err(e) = std::fs::remove_dir_all(&doomed) {
            tracing::warn!(path = %doomed.display(), error = %e, "deleting a removed directory; the next start retries");
        }
    });
}

/// Deletes what a killed daemon left in `removed/`.
pub fn sweep(layout: &Layout) {
    let removed = layout.removed();
    match std::fs::remove_dir_all(&removed) {
        Ok(()) => tracing::info!(path = %removed.display(), "deleted directories a removal left"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %removed.display(), error = %e, "deleting directories a removal left")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_discarded_directory_leaves_at_once_and_is_deleted_after() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path().join("root"), root.path().join("state"));
        let quiet = Arc::new(Quiet::new(std::time::Duration::ZERO));
        let dir = layout.container_dir("c1");
        std::fs::create_dir_all(dir.join("bundle")).unwrap();
        std::fs::write(dir.join("bundle/config.json"), "{}").unwrap();

        discard(&layout, &quiet, &dir).await.unwrap();
        assert!(!dir.exists());
        for _ in 0..500 {
            if std::fs::read_dir(layout.removed()).unwrap().count() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(std::fs::read_dir(layout.removed()).unwrap().count(), 0);
        // Gone already: nothing to do.
        discard(&layout, &quiet, &dir).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_deletion_waits_for_its_turn_while_a_pod_call_runs() {
        let root = tempfile::tempdir().unwrap();
        let quiet = Arc::new(Quiet::new(std::time::Duration::ZERO));
        let (first, second) = (root.path().join("first"), root.path().join("second"));
        std::fs::create_dir_all(first.join("a")).unwrap();
        std::fs::create_dir_all(second.join("b")).unwrap();
        let call = quiet.enter();
        // The busy turn is taken: the deletion has to wait for it.
        let held = quiet.turn(Lane::Deletion).await;
        assert!(held.is_busy());
        delete_in_turn(&quiet, first.clone());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            first.exists(),
            "deleted while another deletion held the turn"
        );
        drop(held);
        delete_in_turn(&quiet, second.clone());
        drop(call);
        for _ in 0..500 {
            if !first.exists() && !second.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!first.exists() && !second.exists());
    }

    #[test]
    fn the_sweep_deletes_what_a_killed_daemon_left() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path().join("root"), root.path().join("state"));
        std::fs::create_dir_all(layout.removed().join("c1-0/bundle")).unwrap();
        sweep(&layout);
        assert!(!layout.removed().exists());
        sweep(&layout);
    }
}
