//! What a runc container deleted in-process still owes: its cgroups.
//!
//! Removing a stopped container's cgroups is an `rmdir` in every hierarchy
//! the host mounts (nine here), and each makes the kernel offline and free
//! that cgroup in its workers and RCU callbacks. While a node tore down 110
//! pods this was about a quarter of all CPU, on RemovePodSandbox's path
//! and on the same CPUs as the stops beside it (issue #20), though nobody
//! waits for an empty cgroup to go.
//!
//! With a [`Retirement`], the in-process delete (`stopped_runc.rs`) ends by moving
//! the container's state directory out of runc's root into the retirement
//! directory: one rename, after which runc no longer knows the container,
//! and the moved `state.json` records which cgroups are still owed. The
//! removal ([`finish`]) then runs whenever the retirement's owner lets
//! background work run. Nothing is skipped: a daemon killed before the
//! removal leaves the directory, and [`Retirement::sweep`] hands it over
//! again at the next start. A state directory on another file system than
//! the retirement directory (the rename fails) is deleted in place, as
//! without one.

use super::runc_state::State;
use super::stopped_runc::{is_own_cgroup, CGROUP_ROOT};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Blocking work a [`Retirement`] hands to its owner.
pub type BlockingJob = Box<dyn FnOnce() + Send + 'static>;

/// Runs [`BlockingJob`]s off the caller's path, on threads that may block,
/// when its owner sees fit (a daemon: when its pod calls allow).
pub type Background = Arc<dyn Fn(BlockingJob) + Send + Sync>;

/// How often a cgroup the kernel still calls busy is tried again, the
/// first wait, and how each wait grows (runc's own removal waits the
/// same way).
const BUSY_RETRIES: u32 = 5;
const FIRST_BUSY_WAIT: Duration = Duration::from_millis(10);

/// Where deleted runc containers' state waits for the removal of their
/// cgroups, and what runs those removals.
///
/// # Examples
///
/// ```
/// use oci_shim::runtime::{CliRuntime, Retirement, RuntimeHandlerConfig};
/// use std::sync::Arc;
///
/// // Every removal on a thread of its own, at once.
/// let retirement = Retirement::new(
///     "/run/oci-shim/runc.retired",
///     Arc::new(|job| drop(std::thread::spawn(job))),
/// );
/// let runc = CliRuntime::new(RuntimeHandlerConfig::runc("/run/oci-shim/runc"))
///     .with_retirement(retirement);
/// ```
#[derive(Clone)]
pub struct Retirement {
    dir: PathBuf,
    background: Background,
    cgroup_root: PathBuf,
}

impl std::fmt::Debug for Retirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retirement")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Why a retired container's cgroups or state were not all removed.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    /// The retired state directory has no `state.json` of runc's shape, so
    /// which cgroups are owed is unknown; the directory was deleted.
    #[error("retired container state {}: no state.json of runc's shape; deleted without its cgroups", .0.display())]
    Unreadable(PathBuf),
    /// The state names cgroups that are not the container's own; they
    /// were left alone and the directory deleted.
    #[error("retired container state {}: names cgroups not its own, left alone: {cgroups:?}", state.display())]
    Foreign {
        /// The state directory.
        state: PathBuf,
        /// The cgroups it named that were not the container's.
        cgroups: Vec<String>,
    },
    /// A cgroup would not go; the state directory stays for the next
    /// start's sweep.
    #[error("cgroup {}: {source}", path.display())]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The error of its last removal.
        source: io::Error,
    },
    /// The state directory itself would not go.
    #[error("retired container state {}: {source}", path.display())]
    State {
        /// The state directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl Retirement {
    /// Retires deleted containers' state into `dir` (created when first
    /// needed) and runs their cgroups' removals through `background`.
    pub fn new(dir: impl Into<PathBuf>, background: Background) -> Retirement {
        Retirement {
            dir: dir.into(),
            background,
            cgroup_root: PathBuf::from(CGROUP_ROOT),
        }
    }

    /// The same, with the cgroup hierarchies under `cgroup_root` instead of
    /// `/sys/fs/cgroup` (tests).
    pub fn with_cgroup_root(mut self, cgroup_root: impl Into<PathBuf>) -> Retirement {
        self.cgroup_root = cgroup_root.into();
        self
    }

    /// The retirement directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup hierarchies' root.
    pub(super) fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }

    /// Hands every container retired here and not yet finished (a daemon
    /// killed first) to the background again; returns how many.
    pub fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut handed = 0;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.hand_over(entry.path());
                handed += 1;
            }
        }
        handed
    }

    /// Moves container `id`'s state directory out of runc's `root` into
    /// this retirement directory; its new place, or `None` when it did not
    /// move (nothing changed then).
    pub(super) fn take(&self, root: &Path, id: &str) -> Option<PathBuf> {
        let to = self.dir.join(id);
        std::fs::create_dir_all(&self.dir).ok()?;
        std::fs::rename(root.join(id), &to).ok()?;
        Some(to)
    }

    /// Has the background remove what the state directory `retired` owes.
    pub(super) fn hand_over(&self, retired: PathBuf) {
        let cgroup_root = self.cgroup_root.clone();
        (self.background)(Box::new(move || {
            if let Err(e) = finish(&retired, &cgroup_root) {
                tracing::warn!(error = %e, "removing a deleted container's cgroups");
            }
        }));
    }
}

/// Removes the cgroups (under `cgroup_root`) that the retired runc state
/// directory `dir` records, then the directory. Blocking.
///
/// # Errors
///
/// [`RetireError`]: which cgroup or state was not removed, and why.
pub fn finish(dir: &Path, cgroup_root: &Path) -> Result<(), RetireError> {
    let state = match (dir.parent(), dir.file_name().and_then(|n| n.to_str())) {
        (Some(parent), Some(id)) => State::load(parent, id).map(|s| (s, id)),
        _ => None,
    };
    let Some((state, id)) = state else {
        remove_state(dir)?;
        return Err(RetireError::Unreadable(dir.to_path_buf()));
    };
    let mut foreign = Vec::new();
    for path in state.cgroup_paths.values() {
        if !is_own_cgroup(Path::new(path), id, cgroup_root) {
            foreign.push(path.clone());
            continue;
        }
        remove_cgroup(Path::new(path)).map_err(|source| RetireError::Cgroup {
            path: PathBuf::from(path),
            source,
        })?;
    }
    remove_state(dir)?;
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(RetireError::Foreign {
            state: dir.to_path_buf(),
            cgroups: foreign,
        })
    }
}

fn remove_state(dir: &Path) -> Result<(), RetireError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(RetireError::State {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Removes cgroup `path` and any child cgroups, trying again while the
/// kernel calls it busy (processes whose exit it has not finished).
fn remove_cgroup(path: &Path) -> io::Result<()> {
    let mut wait = FIRST_BUSY_WAIT;
    let mut tries = 0;
    loop {
        match remove_tree(path) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < BUSY_RETRIES => {
                std::thread::sleep(wait);
                wait *= 2;
                tries += 1;
            }
            done => return done,
        }
    }
}

/// Removes `path`, its child cgroups first when it has any; gone already
/// is done.
fn remove_tree(path: &Path) -> io::Result<()> {
    let first = match std::fs::remove_dir(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => e,
        Ok(()) => return Ok(()),
    };
    // A cgroup's own files cannot be unlinked and need not be: only child
    // directories keep it.
    let mut children = false;
    for entry in std::fs::read_dir(path)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            children = true;
            remove_tree(&entry.path())?;
        }
    }
    if !children {
        return Err(first);
    }
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        done => done,
    }
}

#[cfg(test)]
mod tests {
    use super::super::stopped_runc::tests::{Fixture, ID};
    use super::super::stopped_runc::{delete, Outcome};
    use super::*;
    use std::sync::Mutex;

    /// A retirement into a temporary directory whose background keeps the
    /// jobs until [`Held::run`].
    struct Held {
        dir: tempfile::TempDir,
        jobs: Arc<Mutex<Vec<BlockingJob>>>,
    }

    impl Held {
        fn new() -> Held {
            Held {
                dir: tempfile::tempdir().unwrap(),
                jobs: Arc::default(),
            }
        }

        fn retirement(&self, f: &Fixture) -> Retirement {
            let jobs = Arc::clone(&self.jobs);
            let background: Background = Arc::new(move |job| jobs.lock().unwrap().push(job));
            Retirement::new(self.dir.path().join("runc"), background)
                .with_cgroup_root(f.cgroups.path())
        }

        /// Runs the jobs handed over so far; how many.
        fn run(&self) -> usize {
            let jobs: Vec<_> = self.jobs.lock().unwrap().drain(..).collect();
            let n = jobs.len();
            jobs.into_iter().for_each(|job| job());
            n
        }
    }

    fn retire(f: &Fixture, r: &Retirement) -> Outcome {
        delete(f.root.path(), ID, f.cgroups.path(), Some(r))
    }

    #[test]
    fn runc_forgets_the_container_at_once_and_its_cgroups_go_after() {
        let (f, held) = (Fixture::new(|_, _| {}), Held::new());
        let r = held.retirement(&f);
        let Outcome::Retired(retired) = retire(&f, &r) else {
            panic!("not retired");
        };
        assert!(!f.root.path().join(ID).exists(), "runc still knows it");
        assert!(retired.join("state.json").is_file());
        assert!(f.cgroup("memory").is_dir() && f.cgroup("pids").is_dir());
        r.hand_over(retired.clone());
        assert_eq!(held.run(), 1);
        assert!(!f.cgroup("memory").exists() && !f.cgroup("pids").exists());
        assert!(!retired.exists());
    }

    #[test]
    fn what_a_killed_daemon_left_retired_the_next_sweep_finishes() {
        let (f, held) = (Fixture::new(|_, _| {}), Held::new());
        let Outcome::Retired(_) = retire(&f, &held.retirement(&f)) else {
            panic!("not retired");
        };
        // The daemon died before handing it over; a new one sweeps.
        let again = held.retirement(&f);
        assert_eq!(again.sweep(), 1);
        assert_eq!(held.run(), 1);
        assert!(!f.cgroup("memory").exists());
        assert_eq!(std::fs::read_dir(again.dir()).unwrap().count(), 0);
        assert_eq!(again.sweep(), 0);
    }

    #[test]
    fn a_declined_delete_retires_nothing() {
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        let start = super::super::runc_state::start_time(&me).unwrap();
        let f = Fixture::new(|s, _| {
            s["init_process_pid"] = serde_json::json!(std::process::id());
            s["init_process_start"] = serde_json::json!(start);
        });
        let held = Held::new();
        let r = held.retirement(&f);
        assert!(matches!(retire(&f, &r), Outcome::Declined(_)));
        assert!(f.untouched());
        assert_eq!(r.sweep(), 0);
    }

    #[test]
    fn a_retirement_that_cannot_take_the_state_deletes_in_place() {
        let f = Fixture::new(|_, _| {});
        let file = tempfile::NamedTempFile::new().unwrap();
        let background: Background = Arc::new(|_| panic!("nothing to hand over"));
        let r = Retirement::new(file.path(), background).with_cgroup_root(f.cgroups.path());
        assert_eq!(retire(&f, &r), Outcome::Deleted);
        assert!(!f.root.path().join(ID).exists() && !f.cgroup("pids").exists());
    }

    #[test]
    fn child_cgroups_go_with_their_parent() {
        let (f, held) = (Fixture::new(|_, _| {}), Held::new());
        std::fs::create_dir_all(f.cgroup("pids").join("a/b")).unwrap();
        let Outcome::Retired(retired) = retire(&f, &held.retirement(&f)) else {
            panic!("not retired");
        };
        finish(&retired, f.cgroups.path()).unwrap();
        assert!(!f.cgroup("pids").exists());
        assert!(
            f.cgroups.path().join("pids/pods").is_dir(),
            "the parent stays"
        );
    }

    #[test]
    fn a_retired_state_naming_another_cgroup_removes_only_its_own() {
        let (f, held) = (Fixture::new(|_, _| {}), Held::new());
        let Outcome::Retired(retired) = retire(&f, &held.retirement(&f)) else {
            panic!("not retired");
        };
        // Changed on disk after it was checked.
        let victim = f.cgroups.path().join("memory/pods/other");
        std::fs::create_dir(&victim).unwrap();
        let state_file = retired.join("state.json");
        let mut state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
        state["cgroup_paths"]["cpu"] = serde_json::json!(victim);
        std::fs::write(&state_file, state.to_string()).unwrap();
        let err = finish(&retired, f.cgroups.path()).unwrap_err();
        assert!(matches!(err, RetireError::Foreign { .. }), "{err}");
        assert!(victim.is_dir());
        assert!(!f.cgroup("memory").exists() && !retired.exists());
    }

    #[test]
    fn an_unreadable_retired_state_is_deleted_and_said() {
        let held = Held::new();
        let retired = held.dir.path().join(ID);
        std::fs::create_dir(&retired).unwrap();
        std::fs::write(retired.join("state.json"), "{not json").unwrap();
        let err = finish(&retired, Path::new(CGROUP_ROOT)).unwrap_err();
        assert!(matches!(err, RetireError::Unreadable(_)), "{err}");
        assert!(!retired.exists());
    }

    #[test]
    fn a_cgroup_that_will_not_go_keeps_the_state_for_the_next_sweep() {
        let (f, held) = (Fixture::new(|_, _| {}), Held::new());
        // A plain file in the directory: rmdir fails, and it is no cgroup
        // child to remove first.
        std::fs::write(f.cgroup("pids").join("pids.max"), "max").unwrap();
        let Outcome::Retired(retired) = retire(&f, &held.retirement(&f)) else {
            panic!("not retired");
        };
        let err = finish(&retired, f.cgroups.path()).unwrap_err();
        assert!(matches!(err, RetireError::Cgroup { .. }), "{err}");
        assert!(retired.join("state.json").is_file());
    }
}
