//! The few raw kernel calls the monitor needs, each checked once here.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid two-element array.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned these descriptors, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, no pointers involved.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// A signal set holding `signals`.
pub fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks SIGCHLD and returns a signalfd that reports it.
pub fn sigchld_fd() -> io::Result<OwnedFd> {
    let set = signal_set(&[libc::SIGCHLD]);
    // SAFETY: valid sigset pointer; single-threaded process.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: signalfd returned a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Undoes [`sigchld_fd`]'s mask in a child before exec.
pub fn unblock_signals() -> io::Result<()> {
    // SAFETY: valid empty sigset; called between fork and exec.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        check(libc::sigprocmask(
            libc::SIG_SETMASK,
            &set,
            std::ptr::null_mut(),
        ))?;
    }
    Ok(())
}

/// Empties a signalfd's queue.
pub fn drain_signalfd(fd: RawFd) {
    let mut buf = [0u8; 128];
    // SAFETY: reading into a local buffer of the stated size.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// How a reaped child ended, as (exit code, signal).
pub fn decode_wait_status(status: libc::c_int) -> (i32, i32) {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (128 + sig, sig)
    } else {
        (libc::WEXITSTATUS(status), 0)
    }
}

/// Reaps one exited child without blocking: `Some((pid, status))`, or `None`
/// when no child has exited (or there are no children).
pub fn reap_any() -> Option<(libc::pid_t, libc::c_int)> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// Reaps one exited child without blocking: `Ok(None)` when children
/// remain but none has exited, the error ECHILD when none is left.
pub fn wait_any_nohang() -> io::Result<Option<(libc::pid_t, libc::c_int)>> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let pid = check(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) })?;
    Ok((pid > 0).then_some((pid, status)))
}

/// Points stdin, stdout and stderr at /dev/null (best effort: on failure
/// they stay as they were).
pub fn stdio_to_null() {
    use std::os::fd::AsRawFd;
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto our own standard descriptors.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}

/// poll(2) over `fds` for at most `timeout_ms` (-1: forever); EINTR counts as no event.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: fds is a valid slice of pollfd.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(r as usize)
}

/// A descriptor that becomes readable when process `pid` exits
/// (`pidfd_open`, Linux 5.3+); `None` where the kernel lacks it.
pub fn pidfd_open(pid: libc::pid_t) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: on success the kernel returned a new descriptor we now own.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether `pid` is pid 1 of a PID namespace of its own (the last `NSpid`
/// of `/proc/<pid>/status` is 1, below at least one outer namespace).
pub fn is_pid_namespace_init(pid: libc::pid_t) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    oci_shim::monitor::is_namespace_init(&status)
}

/// Sets a terminal's window size.
pub fn resize_terminal(fd: RawFd, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

/// SIGKILLs our child `pid` and reaps it.
pub fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: plain syscalls on our own child; a valid out pointer.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_no_namespace_init() {
        // This test runs in the host's (or its runner's) namespace.
        assert!(!is_pid_namespace_init(std::process::id() as libc::pid_t));
    }
}
