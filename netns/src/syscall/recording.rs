//! A test double for [`Syscall`]: records every call and models just enough
//! of a filesystem (files, directories, symlinks, stacked mount counts) for
//! the removal and rollback logic to meet realistic errno values.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use super::{FileId, Syscall};

/// Which [`Syscall`] method was called; used to inject errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // one variant per trait method, named alike
pub enum CallKind {
    Unshare,
    Setns,
    Mount,
    Umount2,
    Unlink,
    Open,
    CreateDirAll,
    Canonicalize,
    ReadLink,
    ReadDir,
    Mountinfo,
    FsType,
    NsType,
    FileId,
    InterfaceUp,
    SetHostname,
    SpawnNsHolder,
    WriteProc,
    EndNsHolder,
}

/// One call with its interesting arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // fields mirror the trait method's arguments
pub enum Call {
    Unshare(CloneFlags),
    Setns(CloneFlags),
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        flags: MsFlags,
    },
    Umount2 {
        target: PathBuf,
        flags: MntFlags,
    },
    Unlink(PathBuf),
    Open {
        path: PathBuf,
        flags: OFlag,
    },
    CreateDirAll(PathBuf),
    Canonicalize(PathBuf),
    ReadLink(PathBuf),
    ReadDir(PathBuf),
    Mountinfo,
    FsType,
    NsType,
    FileId,
    InterfaceUp(String),
    SetHostname(String),
    SpawnNsHolder {
        flags: CloneFlags,
        hostname: Option<String>,
    },
    WriteProc {
        pid: i32,
        file: String,
        text: String,
    },
    EndNsHolder(i32),
}

impl Call {
    /// The method this call was made to.
    pub fn kind(&self) -> CallKind {
        match self {
            Call::Unshare(_) => CallKind::Unshare,
            Call::Setns(_) => CallKind::Setns,
            Call::Mount { .. } => CallKind::Mount,
            Call::Umount2 { .. } => CallKind::Umount2,
            Call::Unlink(_) => CallKind::Unlink,
            Call::Open { .. } => CallKind::Open,
            Call::CreateDirAll(_) => CallKind::CreateDirAll,
            Call::Canonicalize(_) => CallKind::Canonicalize,
            Call::ReadLink(_) => CallKind::ReadLink,
            Call::ReadDir(_) => CallKind::ReadDir,
            Call::Mountinfo => CallKind::Mountinfo,
            Call::FsType => CallKind::FsType,
            Call::NsType => CallKind::NsType,
            Call::FileId => CallKind::FileId,
            Call::InterfaceUp(_) => CallKind::InterfaceUp,
            Call::SetHostname(_) => CallKind::SetHostname,
            Call::SpawnNsHolder { .. } => CallKind::SpawnNsHolder,
            Call::WriteProc { .. } => CallKind::WriteProc,
            Call::EndNsHolder(_) => CallKind::EndNsHolder,
        }
    }
}

/// A call plus the thread that made it, so tests can prove namespace
/// switches never happen on the caller's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The call.
    pub call: Call,
    /// The thread it was made on.
    pub thread: ThreadId,
}

#[derive(Debug)]
struct State {
    calls: Vec<RecordedCall>,
    failures: HashMap<CallKind, VecDeque<Errno>>,
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
    symlinks: BTreeMap<PathBuf, PathBuf>,
    mounts: BTreeMap<PathBuf, u32>,
    mountinfo: String,
    fs_type: i64,
    ns_type: i32,
    /// Set by [`RecordingSyscall::set_ns_type`]: then every file has it.
    ns_type_forced: bool,
    /// The kind of namespace bound onto each pin, from the bind's
    /// `/proc/thread-self/ns/<kind>` source.
    pinned_types: BTreeMap<PathBuf, i32>,
    /// The file each descriptor `open` returned was opened from: what
    /// `ns_type` answers for. Keyed by descriptor, not "the last file
    /// opened", so that pins made on several threads at once are told
    /// apart.
    opened: BTreeMap<RawFd, PathBuf>,
    file_id: FileId,
}

/// Recording [`Syscall`] double with error injection.
///
/// Defaults: `/` exists as a directory, opened files look like a network
/// namespace (`NSFS_MAGIC`, `CLONE_NEWNET`, inode 4026532000) and
/// `mountinfo` is empty. Bind mounts stack on a target; `umount2` peels one
/// and answers `EINVAL` once nothing is left, `unlink` answers `EBUSY` while
/// anything is mounted — as the kernel does within one mount namespace.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use netns::syscall::{CallKind, RecordingSyscall, Syscall};
/// use nix::errno::Errno;
///
/// let sys = RecordingSyscall::new();
/// sys.add_file("/pins/a");
/// sys.fail_next(CallKind::Unlink, Errno::EBUSY);
/// assert_eq!(sys.unlink(Path::new("/pins/a")), Err(Errno::EBUSY));
/// assert_eq!(sys.unlink(Path::new("/pins/a")), Ok(()));
/// assert_eq!(sys.kinds(), [CallKind::Unlink, CallKind::Unlink]);
/// ```
#[derive(Debug)]
pub struct RecordingSyscall {
    state: Mutex<State>,
}

impl Default for RecordingSyscall {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingSyscall {
    /// The pid of every holder [`Syscall::spawn_ns_holder`] "starts".
    pub const HOLDER_PID: i32 = 4242;

    /// A double with an empty filesystem (only `/`).
    pub fn new() -> Self {
        RecordingSyscall {
            state: Mutex::new(State {
                calls: Vec::new(),
                failures: HashMap::new(),
                files: BTreeSet::new(),
                dirs: BTreeSet::from([PathBuf::from("/")]),
                symlinks: BTreeMap::new(),
                mounts: BTreeMap::new(),
                mountinfo: String::new(),
                fs_type: crate::syscall::NSFS_MAGIC,
                ns_type: libc::CLONE_NEWNET,
                ns_type_forced: false,
                pinned_types: BTreeMap::new(),
                opened: BTreeMap::new(),
                file_id: FileId {
                    dev: 4,
                    ino: 4026532000,
                },
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the calls it recorded.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next call of `kind` fail with `errno`; queued per kind.
    pub fn fail_next(&self, kind: CallKind, errno: Errno) {
        self.state()
            .failures
            .entry(kind)
            .or_default()
            .push_back(errno);
    }

    /// Adds a regular file (and its parent directories).
    pub fn add_file(&self, path: impl Into<PathBuf>) {
        let path = path.into();
        let mut st = self.state();
        add_ancestors(&mut st.dirs, &path);
        st.files.insert(path);
    }

    /// Adds a directory (and its parents).
    pub fn add_dir(&self, path: impl Into<PathBuf>) {
        let path = path.into();
        let mut st = self.state();
        add_ancestors(&mut st.dirs, &path);
        st.dirs.insert(path);
    }

    /// Adds a symlink `link` pointing at the absolute path `target`.
    pub fn add_symlink(&self, link: impl Into<PathBuf>, target: impl Into<PathBuf>) {
        let link = link.into();
        let mut st = self.state();
        add_ancestors(&mut st.dirs, &link);
        st.symlinks.insert(link, target.into());
    }

    /// Stacks `count` more mounts on `path`.
    pub fn add_mounts(&self, path: impl Into<PathBuf>, count: u32) {
        *self.state().mounts.entry(path.into()).or_default() += count;
    }

    /// How many mounts are stacked on `path`.
    pub fn mount_count(&self, path: impl AsRef<Path>) -> u32 {
        self.state().mounts.get(path.as_ref()).copied().unwrap_or(0)
    }

    /// Whether `path` exists as a file, directory or symlink.
    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        let st = self.state();
        exists(&st, path.as_ref())
    }

    /// Sets what [`Syscall::mountinfo`] returns.
    pub fn set_mountinfo(&self, text: impl Into<String>) {
        self.state().mountinfo = text.into();
    }

    /// Sets what [`Syscall::fs_type`] returns.
    pub fn set_fs_type(&self, fs_type: i64) {
        self.state().fs_type = fs_type;
    }

    /// Sets what [`Syscall::ns_type`] returns.
    pub fn set_ns_type(&self, ns_type: i32) {
        let mut st = self.state();
        st.ns_type = ns_type;
        st.ns_type_forced = true;
    }

    /// Sets what [`Syscall::file_id`] returns.
    pub fn set_file_id(&self, id: FileId) {
        self.state().file_id = id;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.state().calls.clone()
    }

    /// The kinds of every call so far, in order.
    pub fn kinds(&self) -> Vec<CallKind> {
        self.state().calls.iter().map(|c| c.call.kind()).collect()
    }

    /// Forgets the recorded calls (not the filesystem model).
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// Records `call` and returns the lock plus any injected failure.
    fn record(&self, call: Call) -> nix::Result<MutexGuard<'_, State>> {
        let mut st = self.state();
        let kind = call.kind();
        st.calls.push(RecordedCall {
            call,
            thread: std::thread::current().id(),
        });
        match st.failures.get_mut(&kind).and_then(VecDeque::pop_front) {
            Some(errno) => Err(errno),
            None => Ok(st),
        }
    }
}

fn add_ancestors(dirs: &mut BTreeSet<PathBuf>, path: &Path) {
    for dir in path.ancestors().skip(1) {
        if !dir.as_os_str().is_empty() {
            dirs.insert(dir.to_path_buf());
        }
    }
}

fn exists(st: &State, path: &Path) -> bool {
    st.files.contains(path) || st.dirs.contains(path) || st.symlinks.contains_key(path)
}

fn follow(st: &State, path: &Path) -> PathBuf {
    st.symlinks
        .get(path)
        .cloned()
        .unwrap_or_else(|| path.to_path_buf())
}

fn dev_null() -> nix::Result<OwnedFd> {
    std::fs::File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))
}

impl Syscall for RecordingSyscall {
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.record(Call::Unshare(flags)).map(drop)
    }

    fn setns(&self, _fd: BorrowedFd<'_>, nstype: CloneFlags) -> nix::Result<()> {
        self.record(Call::Setns(nstype)).map(drop)
    }

    fn mount(&self, source: Option<&Path>, target: &Path, flags: MsFlags) -> nix::Result<()> {
        let mut st = self.record(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            flags,
        })?;
        if !flags.contains(MsFlags::MS_BIND) {
            return Ok(()); // propagation change: nothing to model
        }
        if !exists(&st, target) {
            return Err(Errno::ENOENT);
        }
        *st.mounts.entry(target.to_path_buf()).or_default() += 1;
        let holder_ns = format!("/proc/{}/ns", Self::HOLDER_PID);
        let kind = source
            .and_then(|s| {
                s.strip_prefix("/proc/thread-self/ns")
                    .or_else(|_| s.strip_prefix(&holder_ns))
                    .ok()
            })
            .and_then(|k| k.to_str())
            .and_then(|k| match k {
                "ipc" => Some(libc::CLONE_NEWIPC),
                "uts" => Some(libc::CLONE_NEWUTS),
                "net" => Some(libc::CLONE_NEWNET),
                "user" => Some(libc::CLONE_NEWUSER),
                _ => None,
            });
        if let Some(kind) = kind {
            st.pinned_types.insert(target.to_path_buf(), kind);
        }
        Ok(())
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        let mut st = self.record(Call::Umount2 {
            target: target.to_path_buf(),
            flags,
        })?;
        if let Some(n) = st.mounts.get_mut(target).filter(|n| **n > 0) {
            *n -= 1;
            Ok(())
        } else if exists(&st, target) {
            Err(Errno::EINVAL)
        } else {
            Err(Errno::ENOENT)
        }
    }

    fn unlink(&self, path: &Path) -> nix::Result<()> {
        let mut st = self.record(Call::Unlink(path.to_path_buf()))?;
        if st.mounts.get(path).is_some_and(|n| *n > 0) {
            return Err(Errno::EBUSY);
        }
        if st.dirs.contains(path) {
            return Err(Errno::EISDIR);
        }
        if st.files.remove(path) || st.symlinks.remove(path).is_some() {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }

    fn open(&self, path: &Path, flags: OFlag, _mode: Mode) -> nix::Result<OwnedFd> {
        let mut st = self.record(Call::Open {
            path: path.to_path_buf(),
            flags,
        })?;
        let target = follow(&st, path);
        if flags.contains(OFlag::O_CREAT) {
            if exists(&st, &target) {
                if flags.contains(OFlag::O_EXCL) {
                    return Err(Errno::EEXIST);
                }
            } else {
                let parent_ok = target.parent().is_some_and(|p| st.dirs.contains(p));
                if !parent_ok {
                    return Err(Errno::ENOENT);
                }
                st.files.insert(target.clone());
            }
        } else if !exists(&st, &target) {
            return Err(Errno::ENOENT);
        }
        // The descriptor is open while the caller holds it, so its number
        // names this file until it is closed and handed out again.
        let fd = dev_null()?;
        st.opened.insert(fd.as_raw_fd(), target);
        Ok(fd)
    }

    fn create_dir_all(&self, path: &Path) -> nix::Result<()> {
        let mut st = self.record(Call::CreateDirAll(path.to_path_buf()))?;
        if st.files.contains(path) {
            return Err(Errno::EEXIST);
        }
        add_ancestors(&mut st.dirs, path);
        st.dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn canonicalize(&self, path: &Path) -> nix::Result<PathBuf> {
        let st = self.record(Call::Canonicalize(path.to_path_buf()))?;
        let target = follow(&st, path);
        if exists(&st, &target) {
            Ok(target)
        } else {
            Err(Errno::ENOENT)
        }
    }

    fn read_link(&self, path: &Path) -> nix::Result<PathBuf> {
        let st = self.record(Call::ReadLink(path.to_path_buf()))?;
        match st.symlinks.get(path) {
            Some(target) => Ok(target.clone()),
            None if exists(&st, path) => Err(Errno::EINVAL),
            None => Err(Errno::ENOENT),
        }
    }

    fn read_dir(&self, path: &Path) -> nix::Result<Vec<OsString>> {
        let st = self.record(Call::ReadDir(path.to_path_buf()))?;
        if !st.dirs.contains(path) {
            return Err(if st.files.contains(path) {
                Errno::ENOTDIR
            } else {
                Errno::ENOENT
            });
        }
        let children = st
            .files
            .iter()
            .chain(st.dirs.iter())
            .chain(st.symlinks.keys())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(OsString::from))
            .collect();
        Ok(children)
    }

    fn mountinfo(&self) -> nix::Result<String> {
        let st = self.record(Call::Mountinfo)?;
        Ok(st.mountinfo.clone())
    }

    fn fs_type(&self, _fd: BorrowedFd<'_>) -> nix::Result<i64> {
        self.record(Call::FsType).map(|st| st.fs_type)
    }

    fn ns_type(&self, fd: BorrowedFd<'_>) -> nix::Result<i32> {
        self.record(Call::NsType).map(|st| {
            let opened = st.opened.get(&fd.as_raw_fd());
            let pinned = opened.and_then(|p| st.pinned_types.get(p));
            match pinned {
                Some(kind) if !st.ns_type_forced => *kind,
                _ => st.ns_type,
            }
        })
    }

    fn file_id(&self, _fd: BorrowedFd<'_>) -> nix::Result<FileId> {
        self.record(Call::FileId).map(|st| st.file_id)
    }

    fn interface_up(&self, name: &str) -> nix::Result<()> {
        self.record(Call::InterfaceUp(name.to_owned())).map(drop)
    }

    fn set_hostname(&self, name: &str) -> nix::Result<()> {
        self.record(Call::SetHostname(name.to_owned())).map(drop)
    }

    /// A holder with pid [`RecordingSyscall::HOLDER_PID`]; its release
    /// descriptor is `/dev/null`.
    fn spawn_ns_holder(
        &self,
        flags: CloneFlags,
        hostname: Option<&str>,
    ) -> nix::Result<super::NsHolder> {
        drop(self.record(Call::SpawnNsHolder {
            flags,
            hostname: hostname.map(str::to_owned),
        })?);
        let release = std::fs::File::open("/dev/null").map_err(|_| nix::errno::Errno::EIO)?;
        Ok(super::NsHolder {
            pid: Self::HOLDER_PID,
            release: release.into(),
        })
    }

    fn write_proc(&self, pid: i32, file: &str, text: &str) -> nix::Result<()> {
        self.record(Call::WriteProc {
            pid,
            file: file.to_owned(),
            text: text.to_owned(),
        })
        .map(drop)
    }

    fn end_ns_holder(&self, holder: super::NsHolder) {
        drop(self.record(Call::EndNsHolder(holder.pid)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_mounts_peel_one_at_a_time_then_einval() {
        let sys = RecordingSyscall::new();
        sys.add_file("/d/pin");
        let pin = Path::new("/d/pin");
        sys.mount(Some(Path::new("/src")), pin, MsFlags::MS_BIND)
            .unwrap();
        sys.add_mounts(pin, 1);
        assert_eq!(sys.unlink(pin), Err(Errno::EBUSY));
        assert_eq!(sys.umount2(pin, MntFlags::MNT_DETACH), Ok(()));
        assert_eq!(sys.umount2(pin, MntFlags::MNT_DETACH), Ok(()));
        assert_eq!(sys.umount2(pin, MntFlags::MNT_DETACH), Err(Errno::EINVAL));
        assert_eq!(sys.unlink(pin), Ok(()));
        assert_eq!(sys.umount2(pin, MntFlags::MNT_DETACH), Err(Errno::ENOENT));
        assert_eq!(sys.unlink(pin), Err(Errno::ENOENT));
    }

    #[test]
    fn exclusive_create_refuses_existing_and_needs_parent() {
        let sys = RecordingSyscall::new();
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDONLY;
        assert_eq!(
            sys.open(Path::new("/nodir/x"), flags, Mode::empty()).err(),
            Some(Errno::ENOENT)
        );
        sys.add_dir("/d");
        assert!(sys.open(Path::new("/d/x"), flags, Mode::empty()).is_ok());
        assert_eq!(
            sys.open(Path::new("/d/x"), flags, Mode::empty()).err(),
            Some(Errno::EEXIST)
        );
        assert_eq!(
            sys.read_dir(Path::new("/d")).unwrap(),
            vec![OsString::from("x")]
        );
    }

    #[test]
    fn injected_failures_are_consumed_in_order_per_kind() {
        let sys = RecordingSyscall::new();
        sys.fail_next(CallKind::Unshare, Errno::EPERM);
        sys.fail_next(CallKind::Unshare, Errno::ENOMEM);
        assert_eq!(sys.unshare(CloneFlags::CLONE_NEWNET), Err(Errno::EPERM));
        assert_eq!(sys.unshare(CloneFlags::CLONE_NEWNET), Err(Errno::ENOMEM));
        assert_eq!(sys.unshare(CloneFlags::CLONE_NEWNET), Ok(()));
        assert_eq!(sys.calls().len(), 3);
    }
}
