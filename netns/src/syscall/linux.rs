//! The real kernel.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode;

use super::{FileId, NsHolder, Syscall};

/// [`Syscall`] backed by the running kernel.
///
/// # Examples
///
/// ```
/// use netns::syscall::{LinuxSyscall, Syscall};
///
/// let dir = std::env::temp_dir();
/// assert!(LinuxSyscall.canonicalize(&dir).unwrap().is_absolute());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSyscall;

/// Turns a std I/O error into the errno it carries; errors without one (which
/// std only produces for invalid input) become `EINVAL`.
fn errno_of(err: io::Error) -> Errno {
    err.raw_os_error().map_or(Errno::EINVAL, Errno::from_raw)
}

impl Syscall for LinuxSyscall {
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> nix::Result<()> {
        nix::sched::setns(fd, nstype)
    }

    fn mount(&self, source: Option<&Path>, target: &Path, flags: MsFlags) -> nix::Result<()> {
        nix::mount::mount(source, target, None::<&str>, flags, None::<&str>)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn unlink(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::unlink(path)
    }

    fn open(&self, path: &Path, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
        let fd = nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, mode)?;
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn create_dir_all(&self, path: &Path) -> nix::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(errno_of)
    }

    fn canonicalize(&self, path: &Path) -> nix::Result<PathBuf> {
        std::fs::canonicalize(path).map_err(errno_of)
    }

    fn read_link(&self, path: &Path) -> nix::Result<PathBuf> {
        std::fs::read_link(path).map_err(errno_of)
    }

    fn read_dir(&self, path: &Path) -> nix::Result<Vec<OsString>> {
        std::fs::read_dir(path)
            .map_err(errno_of)?
            .map(|entry| entry.map(|e| e.file_name()).map_err(errno_of))
            .collect()
    }

    fn mountinfo(&self) -> nix::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo").map_err(errno_of)
    }

    fn fs_type(&self, fd: BorrowedFd<'_>) -> nix::Result<i64> {
        let stat = nix::sys::statfs::fstatfs(fd)?;
        #[allow(clippy::useless_conversion)] // f_type is i64 on x86_64 but not everywhere
        Ok(i64::from(stat.filesystem_type().0))
    }

    fn ns_type(&self, fd: BorrowedFd<'_>) -> nix::Result<i32> {
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor.
        let res = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
        Errno::result(res)
    }

    fn file_id(&self, fd: BorrowedFd<'_>) -> nix::Result<FileId> {
        let stat = nix::sys::stat::fstat(fd.as_raw_fd())?;
        Ok(FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        })
    }

    fn interface_up(&self, name: &str) -> nix::Result<()> {
        // The interface name must fit ifr_name with its terminating NUL.
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(Errno::EINVAL);
        }
        let sock = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifru_flags of `req`,
        // which lives for the whole call.
        Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
        // SAFETY: the kernel just initialised ifru_flags.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
        Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
        Ok(())
    }

    fn set_hostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn spawn_ns_holder(&self, flags: CloneFlags, hostname: Option<&str>) -> nix::Result<NsHolder> {
        crate::holder::spawn(flags, hostname)
    }

    fn write_proc(&self, pid: i32, file: &str, text: &str) -> nix::Result<()> {
        std::fs::write(format!("/proc/{pid}/{file}"), text).map_err(errno_of)
    }

    fn end_ns_holder(&self, holder: NsHolder) {
        crate::holder::end(holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_up_rejects_names_the_kernel_would_truncate() {
        assert_eq!(LinuxSyscall.interface_up(""), Err(Errno::EINVAL));
        assert_eq!(
            LinuxSyscall.interface_up("a-name-longer-than-ifnamsiz"),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn own_network_namespace_is_nsfs_and_newnet() {
        let fd = LinuxSyscall
            .open(
                Path::new("/proc/self/ns/net"),
                OFlag::O_RDONLY,
                Mode::empty(),
            )
            .unwrap();
        use std::os::fd::AsFd;
        assert_eq!(
            LinuxSyscall.fs_type(fd.as_fd()).unwrap(),
            crate::syscall::NSFS_MAGIC
        );
        assert_eq!(
            LinuxSyscall.ns_type(fd.as_fd()).unwrap(),
            libc::CLONE_NEWNET
        );
    }

    #[test]
    fn errors_keep_their_errno() {
        assert_eq!(
            LinuxSyscall.canonicalize(Path::new("/definitely/not/here")),
            Err(Errno::ENOENT)
        );
        assert_eq!(LinuxSyscall.read_link(Path::new("/")), Err(Errno::EINVAL));
    }
}
