//! `oci-monitor reap PROGRAM [ARG]...`: runs one command (the runtime's
//! `exec`) as a child subreaper, and exits only once it has reaped every
//! child it had, adopted ones included.
//!
//! runc's nsexec clones the exec'd process with `CLONE_PARENT`, so that
//! process is `runc exec`'s own child. When `runc exec` dies before reaping
//! it (killed, or crashed), it is re-parented to the nearest subreaper (this
//! process) instead of the host's init, which on some nodes (a minimal init
//! in a VM or a container) never reaps. The daemon cannot be that subreaper:
//! the monitors, which detach from it, would be re-parented to it.
//!
//! The exit status is the program's (`128 + signal` when a signal killed
//! it). SIGWINCH is passed on to the program (the daemon resizes an exec's
//! terminal through it). SIGTERM makes the reaper SIGKILL the program (the
//! daemon giving up on a runtime that does not end) and carry on reaping.

use crate::sys;
use std::process::Command;

/// The command line of this mode, for the usage message.
pub const USAGE: &str = "oci-monitor reap PROGRAM [ARG]...";

/// The signals the reaper waits for; blocked, so they queue until asked for.
const HANDLED: [libc::c_int; 3] = [libc::SIGCHLD, libc::SIGWINCH, libc::SIGTERM];

/// Exit status when the reaper itself could not do its job.
const REAPER_FAILED: i32 = 125;
/// Exit status when the program could not be started (as a shell says).
const CANNOT_RUN: i32 = 127;

/// Runs `argv` (program first) under the reaper; returns the exit status.
pub fn main(argv: &[String]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("usage: {USAGE}");
        return 2;
    };
    let set = sys::signal_set(&HANDLED);
    if let Err(e) = become_subreaper(&set) {
        eprintln!("oci-monitor reap: {e}");
        return REAPER_FAILED;
    }
    let runtime = match spawn(program, args) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("oci-monitor reap: cannot run {program}: {e}");
            return CANNOT_RUN;
        }
    };
    // The program has its own copies: ours would only hold the caller's
    // pipes (or terminal) open after the program is done with them.
    sys::stdio_to_null();
    match reap_all(&mut HostKernel { set }, runtime) {
        Some(status) => sys::decode_wait_status(status).0,
        None => REAPER_FAILED,
    }
}

/// Blocks the handled signals (before any child exists, so that no SIGCHLD
/// is missed) and makes this process a child subreaper.
fn become_subreaper(set: &libc::sigset_t) -> std::io::Result<()> {
    // SAFETY: a valid sigset; this process has one thread.
    sys::check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, set, std::ptr::null_mut()) })?;
    // SAFETY: prctl with integer arguments only.
    sys::check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })?;
    Ok(())
}

/// Starts the program with our stdio and an empty signal mask.
fn spawn(program: &str, args: &[String]) -> std::io::Result<libc::pid_t> {
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: only sigprocmask between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, sys::unblock_signals);
    }
    // Dropping the handle neither waits nor kills: the reaping is ours.
    Ok(command.spawn()?.id() as libc::pid_t)
}

/// One non-blocking look for an exited child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// This child was reaped, with this wait status.
    Child(libc::pid_t, libc::c_int),
    /// Children remain, none has exited.
    NoneExited,
    /// No child is left (ECHILD).
    NoChildren,
}

/// The kernel calls the reaping loop makes, behind a trait so that the loop
/// can be checked against a scripted double.
pub trait Kernel {
    /// Reaps one exited child, if any, without blocking.
    fn reap(&mut self) -> Reaped;
    /// Waits for the next handled signal and returns its number.
    fn next_signal(&mut self) -> libc::c_int;
    /// kill(2); an error (the process already gone) changes nothing here.
    fn kill(&mut self, pid: libc::pid_t, signal: libc::c_int);
}

/// Reaps every child until none is left and returns the wait status of
/// `runtime` (`None` if it was never seen to exit, which cannot happen while
/// it is our child). Signals are acted on only while the runtime lives: once
/// reaped, its pid may be reused.
pub fn reap_all(kernel: &mut dyn Kernel, runtime: libc::pid_t) -> Option<libc::c_int> {
    let mut status = None;
    loop {
        match kernel.reap() {
            Reaped::Child(pid, st) => {
                if pid == runtime {
                    status = Some(st);
                }
                continue;
            }
            Reaped::NoChildren => return status,
            Reaped::NoneExited => {}
        }
        match kernel.next_signal() {
            libc::SIGWINCH if status.is_none() => kernel.kill(runtime, libc::SIGWINCH),
            libc::SIGTERM if status.is_none() => kernel.kill(runtime, libc::SIGKILL),
            _ => {}
        }
    }
}

/// The real kernel.
struct HostKernel {
    set: libc::sigset_t,
}

impl Kernel for HostKernel {
    fn reap(&mut self) -> Reaped {
        match sys::wait_any_nohang() {
            Ok(Some((pid, status))) => Reaped::Child(pid, status),
            Ok(None) => Reaped::NoneExited,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Reaped::NoChildren,
            // EINTR: look again after the next signal; SIGCHLD stays queued.
            Err(_) => Reaped::NoneExited,
        }
    }

    fn next_signal(&mut self) -> libc::c_int {
        loop {
            // SAFETY: a valid sigset; a null siginfo pointer is allowed.
            let signal = unsafe { libc::sigwaitinfo(&self.set, std::ptr::null_mut()) };
            if signal > 0 {
                return signal;
            }
        }
    }

    fn kill(&mut self, pid: libc::pid_t, signal: libc::c_int) {
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(pid, signal) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    const RUNTIME: libc::pid_t = 100;

    /// Answers `reap` and `next_signal` from scripts, records kills.
    #[derive(Default)]
    struct Script {
        reaps: VecDeque<Reaped>,
        signals: VecDeque<libc::c_int>,
        kills: Vec<(libc::pid_t, libc::c_int)>,
    }

    impl Kernel for Script {
        fn reap(&mut self) -> Reaped {
            self.reaps
                .pop_front()
                .expect("the loop reaped past the script")
        }
        fn next_signal(&mut self) -> libc::c_int {
            self.signals
                .pop_front()
                .expect("the loop waited past the script")
        }
        fn kill(&mut self, pid: libc::pid_t, signal: libc::c_int) {
            self.kills.push((pid, signal));
        }
    }

    fn script(reaps: &[Reaped], signals: &[libc::c_int]) -> Script {
        Script {
            reaps: reaps.iter().copied().collect(),
            signals: signals.iter().copied().collect(),
            kills: Vec::new(),
        }
    }

    #[test]
    fn waits_for_adopted_children_and_keeps_the_runtimes_status() {
        use Reaped::*;
        // The runtime exits 3; an adopted child (the exec'd process left by
        // a runtime that died first) is reaped later, with its own status.
        let mut k = script(
            &[
                NoneExited,
                Child(RUNTIME, 3 << 8),
                NoneExited,
                Child(200, libc::SIGKILL),
                NoChildren,
            ],
            &[libc::SIGCHLD, libc::SIGCHLD],
        );
        assert_eq!(reap_all(&mut k, RUNTIME), Some(3 << 8));
        assert!(k.reaps.is_empty() && k.signals.is_empty(), "stopped early");
    }

    #[test]
    fn signals_reach_the_runtime_only_while_it_lives() {
        use Reaped::*;
        let mut k = script(
            &[
                NoneExited,
                NoneExited,
                Child(RUNTIME, libc::SIGKILL),
                NoneExited,
                NoneExited,
                NoChildren,
            ],
            &[libc::SIGWINCH, libc::SIGTERM, libc::SIGWINCH, libc::SIGTERM],
        );
        assert_eq!(reap_all(&mut k, RUNTIME), Some(libc::SIGKILL));
        assert_eq!(
            k.kills,
            [(RUNTIME, libc::SIGWINCH), (RUNTIME, libc::SIGKILL)],
            "after the runtime was reaped its pid is not ours to signal"
        );
    }

    #[test]
    fn no_program_is_a_usage_error() {
        assert_eq!(main(&[]), 2);
    }
}
