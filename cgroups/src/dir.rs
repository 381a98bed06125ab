//! A cgroup directory opened once and its files read relative to it.
//!
//! Stats read several files of each of hundreds of cgroups on every
//! kubelet poll. Opening each by its full path walks the whole path through
//! cgroupfs again (`kernfs_dop_revalidate` on every component, a third of
//! the time in a node-wide ListContainerStats); `openat` from the opened
//! directory walks one name.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The directory, or nothing when it cannot be opened (every read is then
/// unknown, as for a missing file).
pub(crate) struct CgroupDir(Option<OwnedFd>);

impl CgroupDir {
    /// Opens `path` as a directory handle (`O_PATH`: no permission needed
    /// beyond the walk).
    pub(crate) fn open(path: &Path) -> CgroupDir {
        let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
            return CgroupDir(None);
        };
        // SAFETY: a NUL-terminated path and plain flags; the descriptor is
        // owned below only when the call succeeded.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: a new descriptor nothing else owns.
        CgroupDir((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The text of file `name` in the directory, if it can be read.
    pub(crate) fn read(&self, name: &str) -> Option<String> {
        let dir = self.0.as_ref()?;
        let name = CString::new(name).ok()?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name;
        // the descriptor is owned below only when the call succeeded.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a new descriptor nothing else owns.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut text = String::new();
        file.read_to_string(&mut text).ok()?;
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_of_the_directory_and_nothing_of_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "42\n").unwrap();
        let opened = CgroupDir::open(dir.path());
        assert_eq!(opened.read("memory.current").as_deref(), Some("42\n"));
        assert_eq!(opened.read("memory.stat"), None);
        let missing = CgroupDir::open(&dir.path().join("gone"));
        assert_eq!(missing.read("memory.current"), None);
    }
}
