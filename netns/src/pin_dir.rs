//! [`PinDir`]: the directory that holds pins, and its private-mount invariant.
//!
//! A pin is a bind mount. If the directory holding it is a *shared* mount,
//! every mount namespace created afterwards (a container, `unshare -m`, a
//! systemd service with `PrivateTmp`) gets a copy of each pin, and copies made
//! there can propagate back on top of ours. Then unmount and unlink no longer
//! undo what we did, and unlink fails with `EBUSY`. Making the directory a
//! private mount of its own cuts propagation in both directions, so pins
//! stay ours. [`PinDir::prepare`] establishes that; [`PinDir::unmanaged`]
//! leaves mounts alone for directories whose propagation belongs to someone
//! else (iproute2 makes `/var/run/netns` shared on purpose).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::mount::MsFlags;
use tracing::{info, warn};

use crate::error::{Error, Op, Result};
use crate::mountinfo;
use crate::netns::NetNs;
use crate::park;
use crate::remove::{remove_pin, Removal};
use crate::syscall::{LinuxSyscall, Syscall};

/// Where iproute2's `ip netns` keeps its pins; usable as a configured
/// alternative to the daemon's own directory.
pub const IPROUTE2_PIN_DIR: &str = "/var/run/netns";

/// A directory of network namespace pins.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> netns::Result<()> {
/// use netns::PinDir;
///
/// let dir = PinDir::prepare(PinDir::default_path("/var/lib/my-runtime"))?;
/// let ns = dir.create("pod-1")?;
/// let live = ["pod-1"];
/// let report = dir.cleanup_stale(|name| live.contains(&name))?;
/// assert!(!report.removed.contains(&"pod-1".to_string()));
/// # drop(ns);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PinDir {
    sys: Arc<dyn Syscall>,
    path: PathBuf,
}

/// What a sweep over a pin directory did, by pin name.
#[derive(Debug, Default)]
pub struct Cleanup {
    /// Pins that are gone now.
    pub removed: Vec<String>,
    /// Pins released but still refusing to be unlinked; retried next time.
    pub parked: Vec<String>,
    /// Pins that could not be handled, with why. A sweep never stops early.
    pub failed: Vec<(String, Error)>,
}

impl PinDir {
    /// The daemon's default pin directory under its state directory.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(
    ///     netns::PinDir::default_path("/var/lib/rt"),
    ///     std::path::Path::new("/var/lib/rt/netns")
    /// );
    /// ```
    pub fn default_path(state_dir: impl AsRef<Path>) -> PathBuf {
        state_dir.as_ref().join("netns")
    }

    /// Creates `path` if needed, bind-mounts it onto itself unless it already
    /// is a mount point, and makes that mount (recursively) private.
    /// Idempotent: an already private mount point is left untouched.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> netns::Result<()> {
    /// let dir = netns::PinDir::prepare("/var/lib/my-runtime/netns")?;
    /// println!("pins live in {}", dir.path().display());
    /// # Ok(()) }
    /// ```
    pub fn prepare(path: impl AsRef<Path>) -> Result<Self> {
        Self::prepare_with(Arc::new(LinuxSyscall), path)
    }

    /// [`PinDir::prepare`] through a given [`Syscall`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir};
    ///
    /// let sys = Arc::new(RecordingSyscall::new());
    /// let dir = PinDir::prepare_with(sys.clone(), "/pins").unwrap();
    /// assert_eq!(sys.mount_count("/pins"), 1);
    /// ```
    pub fn prepare_with(sys: Arc<dyn Syscall>, path: impl AsRef<Path>) -> Result<Self> {
        let dir = Self::unmanaged_with(sys, path)?;
        dir.make_private_mount()?;
        Ok(dir)
    }

    /// Uses `path` (creating it if needed) without touching mounts. Removal
    /// still works on a propagating directory, but pins may be copied into
    /// other mount namespaces; prefer [`PinDir::prepare`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> netns::Result<()> {
    /// let dir = netns::PinDir::unmanaged(netns::IPROUTE2_PIN_DIR)?;
    /// # Ok(()) }
    /// ```
    pub fn unmanaged(path: impl AsRef<Path>) -> Result<Self> {
        Self::unmanaged_with(Arc::new(LinuxSyscall), path)
    }

    /// [`PinDir::unmanaged`] through a given [`Syscall`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir};
    ///
    /// let dir = PinDir::unmanaged_with(Arc::new(RecordingSyscall::new()), "/pins").unwrap();
    /// assert_eq!(dir.path().to_str(), Some("/pins"));
    /// ```
    pub fn unmanaged_with(sys: Arc<dyn Syscall>, path: impl AsRef<Path>) -> Result<Self> {
        let given = path.as_ref();
        sys.create_dir_all(given)
            .map_err(|e| Error::dir(given, Op::CreateDir, e))?;
        // Canonical, because mountinfo and symlinked paths (/var/run -> /run)
        // must compare equal.
        let path = sys
            .canonicalize(given)
            .map_err(|e| Error::dir(given, Op::Resolve, e))?;
        Ok(PinDir { sys, path })
    }

    fn make_private_mount(&self) -> Result<()> {
        let text = self
            .sys
            .mountinfo()
            .map_err(|e| Error::dir(&self.path, Op::ReadMountinfo, e))?;
        let entries = mountinfo::parse(&text);
        match mountinfo::top_mount_at(&entries, &self.path) {
            Some(top) if !top.propagates => return Ok(()),
            Some(_) => {}
            None => {
                // MS_REC so pins already mounted inside (from before a
                // restart) stay visible through the new mount.
                self.sys
                    .mount(
                        Some(&self.path),
                        &self.path,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                    )
                    .map_err(|e| Error::dir(&self.path, Op::BindMount, e))?;
            }
        }
        self.sys
            .mount(None, &self.path, MsFlags::MS_PRIVATE | MsFlags::MS_REC)
            .map_err(|e| Error::dir(&self.path, Op::MakePrivate, e))?;
        info!(dir = %self.path.display(), "pin directory is a private mount");
        Ok(())
    }

    /// The directory, canonicalised.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn syscall(&self) -> &Arc<dyn Syscall> {
        &self.sys
    }

    /// Where the pin called `name` lives; refuses names that would not be a
    /// single entry of this directory.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir};
    ///
    /// let dir = PinDir::unmanaged_with(Arc::new(RecordingSyscall::new()), "/pins").unwrap();
    /// assert_eq!(dir.pin_path("a").unwrap().to_str(), Some("/pins/a"));
    /// assert!(dir.pin_path("../a").is_err());
    /// ```
    pub fn pin_path(&self, name: &str) -> Result<PathBuf> {
        crate::name::validate(name)?;
        Ok(self.path.join(name))
    }

    /// Shorthand for [`NetNs::create`] in this directory.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> netns::Result<()> {
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir};
    ///
    /// // The recording double stands in for the kernel; with
    /// // `PinDir::prepare` the same calls work for real (as root).
    /// let dir = PinDir::unmanaged_with(Arc::new(RecordingSyscall::new()), "/pins")?;
    /// let ns = dir.create("pod-1")?;
    /// assert_eq!(ns.path().to_str(), Some("/pins/pod-1"));
    /// # Ok(()) }
    /// ```
    pub fn create(&self, name: &str) -> Result<NetNs> {
        NetNs::create(self, name)
    }

    /// Restores the pin called `name`; see [`NetNs::open`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> netns::Result<()> {
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir};
    ///
    /// // The recording double stands in for the kernel; with
    /// // `PinDir::prepare` the same calls work for real (as root).
    /// let dir = PinDir::unmanaged_with(Arc::new(RecordingSyscall::new()), "/pins")?;
    /// let inode = dir.create("pod-1")?.inode();
    /// let ns = dir.open("pod-1")?;
    /// assert!(ns.is_restored());
    /// assert_eq!(ns.inode(), inode);
    /// # Ok(()) }
    /// ```
    pub fn open(&self, name: &str) -> Result<NetNs> {
        NetNs::open_with(Arc::clone(&self.sys), self.pin_path(name)?)
    }

    /// Removes the pin called `name`, whether or not a handle is open;
    /// idempotent, with the same `EBUSY` handling as [`NetNs::remove`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> netns::Result<()> {
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir};
    ///
    /// // The recording double stands in for the kernel; with
    /// // `PinDir::prepare` the same calls work for real (as root).
    /// let dir = PinDir::unmanaged_with(Arc::new(RecordingSyscall::new()), "/pins")?;
    /// use netns::Removal;
    ///
    /// dir.create("pod-1")?;
    /// assert_eq!(dir.remove("pod-1")?, Removal::Removed);
    /// assert_eq!(dir.remove("pod-1")?, Removal::AlreadyRemoved);
    /// # Ok(()) }
    /// ```
    pub fn remove(&self, name: &str) -> Result<Removal> {
        remove_pin(&*self.sys, &self.pin_path(name)?)
    }

    /// Names of the pins in this directory, sorted, without parked ones and
    /// without entries that could not be pin names (dot files, non-UTF-8).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> netns::Result<()> {
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir};
    ///
    /// // The recording double stands in for the kernel; with
    /// // `PinDir::prepare` the same calls work for real (as root).
    /// let dir = PinDir::unmanaged_with(Arc::new(RecordingSyscall::new()), "/pins")?;
    /// dir.create("b")?;
    /// dir.create("a")?;
    /// assert_eq!(dir.list()?, ["a", "b"]);
    /// # Ok(()) }
    /// ```
    pub fn list(&self) -> Result<Vec<String>> {
        let parked: BTreeSet<String> = self.parked()?.into_iter().collect();
        let entries = self
            .sys
            .read_dir(&self.path)
            .map_err(|e| Error::dir(&self.path, Op::ReadDir, e))?;
        let mut names: Vec<String> = entries
            .into_iter()
            .filter_map(|entry| match entry.into_string() {
                Ok(name) => Some(name),
                Err(raw) => {
                    warn!(dir = %self.path.display(), entry = ?raw, "ignoring non-UTF-8 entry");
                    None
                }
            })
            .filter(|name| crate::name::validate(name).is_ok() && !parked.contains(name))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Names of parked pins: removal was requested but is not finished.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> netns::Result<()> {
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir};
    ///
    /// // The recording double stands in for the kernel; with
    /// // `PinDir::prepare` the same calls work for real (as root).
    /// use netns::syscall::CallKind;
    /// use nix::errno::Errno;
    ///
    /// let sys = Arc::new(RecordingSyscall::new());
    /// let dir = PinDir::unmanaged_with(sys.clone(), "/pins")?;
    /// dir.create("pod-1")?;
    /// sys.fail_next(CallKind::Unlink, Errno::EBUSY);
    /// dir.remove("pod-1")?;
    /// assert_eq!(dir.parked()?, ["pod-1"]);
    /// assert!(dir.list()?.is_empty());
    /// assert_eq!(dir.retry_parked()?.removed, ["pod-1"]);
    /// assert!(dir.parked()?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn parked(&self) -> Result<Vec<String>> {
        park::parked_names(&*self.sys, &self.path)
    }

    /// Tries again to remove every parked pin; see [`PinDir::parked`] for an
    /// example. Call it periodically: each call makes progress.
    pub fn retry_parked(&self) -> Result<Cleanup> {
        let mut report = Cleanup::default();
        for name in self.parked()? {
            self.sweep_one(name, &mut report);
        }
        Ok(report)
    }

    /// Removes every pin for which `keep` says `false`, and retries parked
    /// pins; meant for daemon start-up, with `keep` answering "is this pod
    /// still known?". Errors on single pins are collected, not returned, so
    /// one bad pin does not stop the sweep.
    ///
    /// On a directory shared with other tools (such as
    /// [`IPROUTE2_PIN_DIR`]) `keep` must also keep their pins. Pins being
    /// created meanwhile are only safe if `keep` covers them, so run it
    /// before serving requests.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> netns::Result<()> {
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, PinDir};
    ///
    /// // The recording double stands in for the kernel; with
    /// // `PinDir::prepare` the same calls work for real (as root).
    /// let dir = PinDir::unmanaged_with(Arc::new(RecordingSyscall::new()), "/pins")?;
    /// for name in ["gone-1", "live", "gone-2"] {
    ///     dir.create(name)?;
    /// }
    /// let report = dir.cleanup_stale(|name| name == "live")?;
    /// assert_eq!(report.removed, ["gone-1", "gone-2"]);
    /// assert_eq!(dir.list()?, ["live"]);
    /// # Ok(()) }
    /// ```
    pub fn cleanup_stale(&self, keep: impl Fn(&str) -> bool) -> Result<Cleanup> {
        let mut report = self.retry_parked()?;
        for name in self.list()? {
            if !keep(&name) {
                self.sweep_one(name, &mut report);
            }
        }
        Ok(report)
    }

    fn sweep_one(&self, name: String, report: &mut Cleanup) {
        match remove_pin(&*self.sys, &self.path.join(&name)) {
            Ok(Removal::Removed | Removal::AlreadyRemoved) => report.removed.push(name),
            Ok(Removal::Parked) => report.parked.push(name),
            Err(err) => report.failed.push((name, err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, CallKind, RecordingSyscall};
    use nix::errno::Errno;

    const ROOT: &str = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";

    fn mount_calls(sys: &RecordingSyscall) -> Vec<(Option<PathBuf>, MsFlags)> {
        sys.calls()
            .into_iter()
            .filter_map(|c| match c.call {
                Call::Mount { source, flags, .. } => Some((source, flags)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn plain_directory_is_bound_onto_itself_then_made_private() {
        let sys = Arc::new(RecordingSyscall::new());
        sys.set_mountinfo(ROOT);
        PinDir::prepare_with(sys.clone(), "/pins").unwrap();
        assert_eq!(
            mount_calls(&sys),
            [
                (Some("/pins".into()), MsFlags::MS_BIND | MsFlags::MS_REC),
                (None, MsFlags::MS_PRIVATE | MsFlags::MS_REC)
            ]
        );
    }

    #[test]
    fn shared_mount_point_is_only_made_private() {
        let sys = Arc::new(RecordingSyscall::new());
        sys.set_mountinfo(format!(
            "{ROOT}50 27 0:40 / /pins rw shared:9 - tmpfs tmpfs rw\n"
        ));
        PinDir::prepare_with(sys.clone(), "/pins").unwrap();
        assert_eq!(
            mount_calls(&sys),
            [(None, MsFlags::MS_PRIVATE | MsFlags::MS_REC)]
        );
    }

    #[test]
    fn private_mount_point_is_left_alone() {
        let sys = Arc::new(RecordingSyscall::new());
        sys.set_mountinfo(format!(
            "{ROOT}50 27 254:0 /pins /pins rw - ext4 /dev/vda rw\n"
        ));
        PinDir::prepare_with(sys.clone(), "/pins").unwrap();
        assert!(mount_calls(&sys).is_empty());
    }

    #[test]
    fn prepare_errors_name_the_directory() {
        let sys = Arc::new(RecordingSyscall::new());
        sys.fail_next(CallKind::Mount, Errno::EPERM);
        let err = PinDir::prepare_with(sys, "/pins").unwrap_err();
        assert_eq!(
            err.to_string(),
            "network namespace pin directory /pins: bind mount: EPERM: Operation not permitted"
        );
    }

    fn populated() -> (Arc<RecordingSyscall>, PinDir) {
        let sys = Arc::new(RecordingSyscall::new());
        let dir = PinDir::unmanaged_with(sys.clone(), "/pins").unwrap();
        for name in ["a", "b", "c"] {
            NetNs::create(&dir, name).unwrap();
        }
        sys.add_file("/pins/.hidden");
        (sys, dir)
    }

    #[test]
    fn list_skips_bookkeeping_and_parked() {
        let (sys, dir) = populated();
        assert_eq!(dir.list().unwrap(), ["a", "b", "c"]);
        sys.fail_next(CallKind::Unlink, Errno::EBUSY);
        assert_eq!(dir.remove("b").unwrap(), Removal::Parked);
        assert_eq!(dir.list().unwrap(), ["a", "c"]);
        assert_eq!(dir.parked().unwrap(), ["b"]);
    }

    #[test]
    fn cleanup_keeps_live_pins_and_finishes_parked_ones() {
        let (sys, dir) = populated();
        sys.fail_next(CallKind::Unlink, Errno::EBUSY);
        assert_eq!(dir.remove("a").unwrap(), Removal::Parked);

        let report = dir.cleanup_stale(|name| name == "c").unwrap();
        assert_eq!(report.removed, ["a", "b"]);
        assert!(report.parked.is_empty() && report.failed.is_empty());
        assert_eq!(dir.list().unwrap(), ["c"]);
        assert!(dir.parked().unwrap().is_empty());
        assert_eq!(sys.mount_count("/pins/c"), 1);
    }

    #[test]
    fn one_failing_pin_does_not_stop_the_sweep() {
        let (sys, dir) = populated();
        sys.fail_next(CallKind::Umount2, Errno::EPERM);
        let report = dir.cleanup_stale(|_| false).unwrap();
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, "a");
        assert_eq!(report.removed, ["b", "c"]);
        // Still listed, so the next sweep tries again.
        assert_eq!(dir.list().unwrap(), ["a"]);
    }

    #[test]
    fn remove_by_name_is_idempotent() {
        let (_sys, dir) = populated();
        assert_eq!(dir.remove("a").unwrap(), Removal::Removed);
        assert_eq!(dir.remove("a").unwrap(), Removal::AlreadyRemoved);
        assert!(dir.remove("../a").is_err());
    }
}
