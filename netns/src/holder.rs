//! A short-lived process that holds a pod's new user namespace and the
//! namespaces it owns until they are pinned.
//!
//! A user namespace cannot be made by `unshare` in a multi-threaded process
//! (the kernel refuses), and the network, IPC and UTS namespaces of a pod
//! with one must be *owned* by it: otherwise the container's root may not
//! mount sysfs or mqueue for them. `clone(2)` with `CLONE_NEWUSER` and the
//! other flags makes all of them at once, the user namespace first, so it
//! owns the rest. The child only makes async-signal-safe system calls: it
//! is a copy of a multi-threaded process.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;

use crate::syscall::NsHolder;

/// Stack for the child; it calls a handful of system calls only.
const STACK_SIZE: usize = 64 * 1024;

/// What the child needs, prepared before `clone` (it must not allocate).
struct ChildArgs {
    hostname: Option<Vec<u8>>,
    loopback: bool,
    /// The child writes one status byte here: 0, or the errno that failed.
    ready: RawFd,
    /// The child blocks reading this until released.
    release: RawFd,
    /// The parent's ends, closed in the child so EOF can reach it.
    parent_ends: [RawFd; 2],
}

fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    Errno::result(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded; both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts the holder (see [`crate::syscall::Syscall::spawn_ns_holder`])
/// and waits until it has set its host name and loopback interface.
pub(crate) fn spawn(flags: CloneFlags, hostname: Option<&str>) -> nix::Result<NsHolder> {
    if !flags.contains(CloneFlags::CLONE_NEWUSER) {
        return Err(Errno::EINVAL);
    }
    let (ready_read, ready_write) = pipe()?;
    let (release_read, release_write) = pipe()?;
    let args = ChildArgs {
        hostname: hostname.map(|h| h.as_bytes().to_vec()),
        loopback: flags.contains(CloneFlags::CLONE_NEWNET),
        ready: ready_write.as_raw_fd(),
        release: release_read.as_raw_fd(),
        parent_ends: [ready_read.as_raw_fd(), release_write.as_raw_fd()],
    };
    let mut stack = vec![0u8; STACK_SIZE];
    // SAFETY: the child runs `child` on its own stack in a copy of this
    // address space (no CLONE_VM), where `args` stays valid; it makes only
    // async-signal-safe system calls and exits through the return value.
    let pid = unsafe {
        nix::sched::clone(
            Box::new(|| child(&args)),
            &mut stack,
            flags,
            Some(libc::SIGCHLD),
        )
    }?;
    drop(ready_write);
    drop(release_read);
    let holder = NsHolder {
        pid: pid.as_raw(),
        release: release_write,
    };
    let mut status = [0u8; 1];
    let read = nix::unistd::read(ready_read.as_raw_fd(), &mut status);
    match read {
        Ok(1) if status[0] == 0 => Ok(holder),
        Ok(1) => {
            end(holder);
            Err(Errno::from_raw(i32::from(status[0])))
        }
        Ok(_) => {
            end(holder);
            Err(Errno::ECHILD)
        }
        Err(e) => {
            end(holder);
            Err(e)
        }
    }
}

/// Releases the holder and reaps it.
pub(crate) fn end(holder: NsHolder) {
    let _ = nix::unistd::write(&holder.release, &[1]);
    drop(holder.release);
    let pid = nix::unistd::Pid::from_raw(holder.pid);
    while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
}

/// The child: async-signal-safe system calls only.
fn child(args: &ChildArgs) -> isize {
    // SAFETY (whole function): plain system calls on descriptors and
    // buffers prepared by the parent before clone.
    unsafe {
        for fd in args.parent_ends {
            libc::close(fd);
        }
        // The holder must not outlive the thread that pins its namespaces.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut status: u8 = 0;
        if let Some(name) = &args.hostname {
            if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
                status = errno_byte();
            }
        }
        if status == 0 && args.loopback {
            status = loopback_up();
        }
        libc::write(args.ready, (&status as *const u8).cast(), 1);
        let mut byte = 0u8;
        libc::read(args.release, (&mut byte as *mut u8).cast(), 1);
        0
    }
}

/// The calling thread's errno as a status byte (never 0).
fn errno_byte() -> u8 {
    u8::try_from(Errno::last_raw()).unwrap_or(u8::MAX).max(1)
}

/// Sets `IFF_UP` on `lo`; 0 or the errno byte.
///
/// # Safety
///
/// Plain system calls on a local socket and a zeroed request.
unsafe fn loopback_up() -> u8 {
    let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if sock < 0 {
        return errno_byte();
    }
    let mut req: libc::ifreq = std::mem::zeroed();
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    let mut status = 0;
    if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) != 0 {
        status = errno_byte();
    } else {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) != 0 {
            status = errno_byte();
        }
    }
    libc::close(sock);
    status
}
