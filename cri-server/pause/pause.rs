//! `cri-pause`: the infra container's process, which holds a pod's
//! namespaces open and does nothing else.
//!
//! It must run inside an empty root filesystem on runc and on gVisor, so it is
//! a static executable with no C library: `no_std`, its own `_start`, and raw
//! system calls (x86_64 Linux). The crate's `build.rs` compiles it with
//! `panic=abort` and links it with `-nostartfiles -nostdlib -static`; the
//! daemon embeds the result and installs it into the infra containers' root
//! filesystem, so there is nothing to pull and nothing to install.
//!
//! As PID 1 of a pod-shared PID namespace it would inherit orphans: SIGCHLD is
//! set to SIG_IGN, so the kernel reaps them and no zombie accumulates. It
//! exits 0 on SIGTERM or SIGINT. Signals to a namespace's init that have no
//! handler are dropped by the kernel, so they are blocked and waited for
//! synchronously instead (no handler, hence no signal trampoline needed).

#![no_std]
#![no_main]

use core::arch::asm;

const SYS_RT_SIGACTION: usize = 13;
const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_EXIT_GROUP: usize = 231;
const SYS_RT_SIGTIMEDWAIT: usize = 128;
const SIGINT: usize = 2;
const SIGTERM: usize = 15;
const SIGCHLD: usize = 17;
const SIG_BLOCK: usize = 0;
const SIG_IGN: usize = 1;
const SIGSET_BYTES: usize = 8;

/// The kernel's `struct sigaction` for x86_64.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: usize,
    restorer: usize,
    mask: u64,
}

/// # Safety
/// The caller passes arguments valid for system call `n`.
unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    asm!(
        "syscall",
        inlateout("rax") n as isize => ret,
        in("rdi") a,
        in("rsi") b,
        in("rdx") c,
        in("r10") d,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack)
    );
    ret
}

fn exit(code: usize) -> ! {
    loop {
        // SAFETY: exit_group takes one integer and does not return.
        unsafe { syscall4(SYS_EXIT_GROUP, code, 0, 0, 0) };
    }
}

fn bit(signal: usize) -> u64 {
    1 << (signal - 1)
}

/// The entry point the kernel jumps to.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let ignore = KernelSigaction {
        handler: SIG_IGN,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    let wait_for: u64 = bit(SIGINT) | bit(SIGTERM);
    // SAFETY: pointers reference live locals of the sizes the kernel expects.
    unsafe {
        syscall4(
            SYS_RT_SIGACTION,
            SIGCHLD,
            &ignore as *const _ as usize,
            0,
            SIGSET_BYTES,
        );
        syscall4(
            SYS_RT_SIGPROCMASK,
            SIG_BLOCK,
            &wait_for as *const u64 as usize,
            0,
            SIGSET_BYTES,
        );
    }
    loop {
        // SAFETY: the set is a live local; no siginfo or timeout is asked for.
        let got = unsafe {
            syscall4(
                SYS_RT_SIGTIMEDWAIT,
                &wait_for as *const u64 as usize,
                0,
                0,
                SIGSET_BYTES,
            )
        };
        if got == SIGINT as isize || got == SIGTERM as isize {
            exit(0);
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(2)
}
