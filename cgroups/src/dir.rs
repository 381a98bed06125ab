//! A cgroup directory opened once and its files read relative to it.
//!
//! Stats read several files of each of hundreds of cgroups on every
//! kubelet poll. Opening each by its full path walks the whole path through
//! cgroupfs again (`kernfs_dop_revalidate` on every component, a third of
//! the time in a node-wide ListContainerStats); `openat` from the opened
//! directory walks one name.

use std::ffi::CString;
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
        CgroupDir(open_path(libc::AT_FDCWD, path.as_os_str().as_bytes()))
    }

    /// The text of file `name` (a path relative to the directory), if it
    /// can be read.
    pub(crate) fn read(&self, name: &str) -> Option<String> {
        read_from_start(&self.open_file(name)?)
    }

    /// Opens file `name` (a path relative to the directory) for reading.
    pub(crate) fn open_file(&self, name: &str) -> Option<std::fs::File> {
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
        // SAFETY: a new descriptor nothing else owns.
        (fd >= 0).then(|| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// `openat(dir, path, O_PATH | O_DIRECTORY)`, owned; `None` on any error.
fn open_path(dir: libc::c_int, path: &[u8]) -> Option<OwnedFd> {
    let path = CString::new(path).ok()?;
    // SAFETY: `dir` is AT_FDCWD or a descriptor the caller keeps open, the
    // path is NUL-terminated; the result is owned only when it succeeded.
    let fd = unsafe {
        libc::openat(
            dir,
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a new descriptor nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The whole text of `file`, read from offset 0: see [`with_text`].
pub(crate) fn read_from_start(file: &std::fs::File) -> Option<String> {
    with_text(file, str::to_owned)
}

/// Reads the whole text of `file` from offset 0 (`pread`) into this
/// thread's buffer and hands it to `use_text`; `None` if it cannot be read
/// or is not UTF-8.
///
/// From offset 0 because the kernel generates a cgroupfs file's text afresh
/// when a read starts there, so a file kept open reads current values. Not
/// `read_to_string`: its size hint costs a `statx` per file, useless on
/// cgroupfs (every file claims 0 or 4096 bytes), and its final read, the
/// one that returns 0, is a system call more per file. A node-wide stats
/// call reads over a thousand files, so the buffer is one per thread, not
/// one allocated and zeroed per file, and a read that returns less than it
/// asked for ends the text: cgroupfs files are the kernel's `seq_file`s,
/// which fill every read up to the size asked until their text ends (as
/// does a regular file).
pub(crate) fn with_text<R>(file: &std::fs::File, use_text: impl FnOnce(&str) -> R) -> Option<R> {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut buffer) => text_in(file, &mut buffer, use_text),
        // Only a `use_text` that reads another file gets here.
        Err(_) => text_in(file, &mut Vec::new(), use_text),
    })
}

/// The first read's size, and the buffer's to begin with: a page, which
/// every file stats read fits.
const FIRST_READ: usize = 4096;

fn text_in<R>(
    file: &std::fs::File,
    buffer: &mut Vec<u8>,
    use_text: impl FnOnce(&str) -> R,
) -> Option<R> {
    use std::os::unix::fs::FileExt;
    if buffer.len() < FIRST_READ {
        buffer.resize(FIRST_READ, 0);
    }
    let mut len = 0;
    loop {
        match file.read_at(&mut buffer[len..], len as u64) {
            Ok(n) => {
                len += n;
                if len < buffer.len() {
                    break;
                }
                buffer.resize(len * 2, 0);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    std::str::from_utf8(&buffer[..len]).ok().map(use_text)
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

    #[test]
    fn files_below_the_directory_read_whole_however_long() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pod/c1")).unwrap();
        let long = "x".repeat(10_000);
        std::fs::write(dir.path().join("pod/c1/memory.stat"), &long).unwrap();
        let root = CgroupDir::open(dir.path());
        assert_eq!(
            root.read("pod/c1/memory.stat").as_deref(),
            Some(long.as_str())
        );
        assert_eq!(root.read("pod/gone/memory.stat"), None);
    }

    #[test]
    fn a_text_of_exactly_the_buffers_size_reads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let page = "y".repeat(FIRST_READ);
        std::fs::write(dir.path().join("memory.stat"), &page).unwrap();
        let root = CgroupDir::open(dir.path());
        assert_eq!(root.read("memory.stat").as_deref(), Some(page.as_str()));
        let file = root.open_file("memory.stat").unwrap();
        let nested = with_text(&file, |outer| {
            // A reader inside a reader gets a buffer of its own.
            (outer.len(), read_from_start(&file).map(|inner| inner.len()))
        });
        assert_eq!(nested, Some((FIRST_READ, Some(FIRST_READ))));
    }
}
