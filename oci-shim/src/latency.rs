//! Prompt wake-ups for threads that mostly wait: a short scheduler slice.
//!
//! A container's stop is a chain of wake-ups: the monitor learns of the
//! init's death and reports it, the daemon's watcher takes the report, the
//! stop goes on. During a node-wide teardown both CPUs are busy with
//! `runc delete`, CNI plugins and `iptables`, and each wake-up queued
//! behind them for milliseconds: at 110 pods the stop's p99 was three times
//! its p50, nearly all of it spent runnable, not running.
//!
//! Since Linux 6.12 the fair scheduler (EEVDF) takes a per-thread slice
//! (`sched_attr.sched_runtime`, 0.1–100 ms). A thread asking for a short
//! slice gets an earlier virtual deadline, and a waking thread with a
//! shorter slice than the running one preempts it at once (the
//! `PREEMPT_SHORT` feature) instead of waiting for the running thread to
//! use up its own slice. Its share of the CPU (its weight, the nice value)
//! does not change: this is a request for latency, not for more time.
//! Changing weights did not help here (ARCHITECTURE.md, issue #20): the
//! daemon and the monitors at nice -5 left the stop's tail as it was, and
//! background CNI DELs at nice 10 made it worse, a reniced `iptables`
//! holding a lock the others wait on.
//!
//! `SCHED_FLAG_RESET_ON_FORK` comes with it, so that nothing the thread
//! starts (runtimes, plugins, containers, other threads) inherits the
//! slice. The flag also resets a negative nice value in what the thread
//! starts: under a daemon an operator runs at, say, nice -5, a monitor
//! starts `runc create`, and so its container, at nice 0. Kernels older
//! than 6.12 ignore the slice; the call then changes nothing.

use std::io;
use std::time::Duration;

/// The slice a waiting thread asks for: the shortest the kernel accepts
/// (100 µs). Such a thread runs for microseconds per wake-up.
pub const WAKE_UP_SLICE: Duration = Duration::from_micros(100);

const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;

/// `struct sched_attr` (`include/uapi/linux/sched/types.h`, version 1).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

/// Gives the calling thread `slice` as its scheduler slice, keeping its
/// policy and nice value, and marks it reset-on-fork. A thread under a
/// real-time or deadline policy is left alone (`Ok(false)`): an operator
/// chose that. `Ok(true)` means the request was made; a kernel older
/// than 6.12 accepts it and ignores the slice.
///
/// # Examples
///
/// ```
/// use oci_shim::latency::{request_slice, WAKE_UP_SLICE};
/// // A thread that only relays short messages.
/// let _ = request_slice(WAKE_UP_SLICE);
/// ```
pub fn request_slice(slice: Duration) -> io::Result<bool> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a valid, writable sched_attr of `size` bytes.
    let got = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    let fair = [libc::SCHED_OTHER, libc::SCHED_BATCH, libc::SCHED_IDLE];
    if !fair.contains(&(attr.sched_policy as i32)) {
        return Ok(false);
    }
    attr.size = size;
    attr.sched_flags |= SCHED_FLAG_RESET_ON_FORK;
    attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: `attr` is a valid sched_attr of `size` bytes, read only.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice `/proc/thread-self/sched` reports, in nanoseconds.
    fn slice_of(path: &str) -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        let line = text.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    #[test]
    fn the_thread_gets_the_slice_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: plain syscalls on the calling thread.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 3) };
            assert!(request_slice(Duration::from_micros(300)).unwrap());
            // SAFETY: a plain syscall on the calling thread.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(nice, 3, "the nice value is kept");
            if let Some(slice) = slice_of("/proc/thread-self/sched") {
                assert_eq!(slice, 300_000);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn threads_it_starts_do_not_inherit_the_slice() {
        std::thread::spawn(|| {
            let before = slice_of("/proc/thread-self/sched");
            request_slice(WAKE_UP_SLICE).unwrap();
            let inherited = std::thread::spawn(|| slice_of("/proc/thread-self/sched"))
                .join()
                .unwrap();
            assert_eq!(inherited, before, "reset on fork");
        })
        .join()
        .unwrap();
    }
}
