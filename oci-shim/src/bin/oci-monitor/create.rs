//! Running the runtime's `create` with the container's stdio.

use crate::args::Args;
use crate::sys;
use oci_shim::monitor::protocol::{CONSOLE_SOCKET_NAME, PID_FILE_NAME};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The container's stdio as the monitor holds it once create succeeded.
pub struct ContainerIo {
    /// Container stdout, or the terminal master.
    pub stdout: Option<OwnedFd>,
    /// Container stderr (also the runtime's own stderr in terminal mode).
    pub stderr: Option<OwnedFd>,
    /// Writing end of the container's stdin, or the terminal master again.
    pub stdin: Option<OwnedFd>,
    /// The terminal master, for resizing.
    pub terminal: Option<OwnedFd>,
    /// The container's ends of the stdio pipes (stdin, stdout, stderr), kept
    /// only for runtimes that take a joining container's stdio at `start`
    /// (runsc) rather than at `create`.
    pub held: Option<[OwnedFd; 3]>,
}

/// Runs `<runtime> <args> create ...` and returns the container's init pid
/// and stdio, or a one-line reason for the daemon.
pub fn create(args: &Args) -> Result<(libc::pid_t, ContainerIo), String> {
    let pid_file = args.state_dir.join(PID_FILE_NAME);
    let (out_r, out_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (in_r, in_w) = if args.stdin && !args.terminal {
        let (r, w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup: {e}"));
    let null = || {
        std::fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| format!("/dev/null: {e}"))
    };
    let held = [
        match &in_r {
            Some(r) => dup(r)?,
            None => null()?,
        },
        dup(&out_w)?,
        dup(&err_w)?,
    ];
    let in_r = in_r.map_or_else(Stdio::null, Stdio::from);

    let mut cmd = Command::new(&args.runtime);
    cmd.args(&args.runtime_args)
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file);
    let console = if args.terminal {
        let path = args.state_dir.join(CONSOLE_SOCKET_NAME);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| format!("console socket: {e}"))?;
        cmd.arg("--console-socket").arg(&path);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        Some((listener, path))
    } else {
        cmd.stdin(in_r).stdout(Stdio::from(out_w));
        None
    };
    cmd.arg(&args.id).stderr(Stdio::from(err_w));
    // SAFETY: only async-signal-safe calls (sigprocmask) between fork and exec.
    unsafe {
        cmd.pre_exec(sys::unblock_signals);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args.runtime.display()))?;
    // Drop our copies of the child's ends (the Command held them) so EOF
    // arrives when the container closes them.
    drop(cmd);
    // The runtime's cgroup move would otherwise wait out a grace period on
    // the container's start-up path; we have nothing else to do meanwhile.
    oci_shim::cgroup_warmup::warm_up();

    let runtime_pid = child.id() as libc::pid_t;
    let mut master = None;
    let mut err_text = Vec::new();
    sys::set_nonblocking(err_r.as_raw_fd()).map_err(|e| format!("pipe: {e}"))?;
    // The runtime connects to the console socket before it exits, so accept
    // while waiting; its stderr is drained so it can never block on a full pipe.
    // Woken the moment the runtime exits (a pidfd), rather than on the next
    // poll tick: create sits on every container's start-up path.
    let exited = sys::pidfd_open(runtime_pid);
    let status = loop {
        if let Some((listener, _)) = &console {
            if master.is_none() {
                listener.set_nonblocking(true).ok();
                if let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(false).ok();
                    master = Some(
                        crate::console::receive_master(&stream)
                            .map_err(|e| format!("console socket: {e}"))?,
                    );
                }
            }
        }
        drain(&err_r, &mut err_text);
        let mut status = 0;
        // SAFETY: valid out pointer; runtime_pid is our child.
        let r = unsafe { libc::waitpid(runtime_pid, &mut status, libc::WNOHANG) };
        if r == runtime_pid {
            break status;
        }
        if r < 0 {
            return Err(format!("waitpid: {}", io::Error::last_os_error()));
        }
        let mut fds = [
            libc::pollfd {
                fd: err_r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: exited.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Without a pidfd, or while a console socket must be accepted, poll
        // in short ticks.
        let tick = if exited.is_some() && console.is_none() {
            1000
        } else {
            5
        };
        let _ = sys::poll(&mut fds, tick);
    };
    drain(&err_r, &mut err_text);
    if let Some((_, path)) = &console {
        let _ = std::fs::remove_file(path);
    }
    let (code, sig) = sys::decode_wait_status(status);
    if code != 0 {
        let text = String::from_utf8_lossy(&err_text);
        let how = if sig != 0 {
            format!("killed by signal {sig}")
        } else {
            format!("exit status {code}")
        };
        return Err(format!("create failed ({how}): {}", text.trim()));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .map_err(|e| format!("pid file {}: {e}", pid_file.display()))?
        .trim()
        .parse::<libc::pid_t>()
        .map_err(|e| format!("pid file {}: {e}", pid_file.display()))?;

    let io = match master {
        Some(m) => ContainerIo {
            stdout: Some(dup(&m)?),
            stderr: Some(err_r),
            stdin: if args.stdin { Some(dup(&m)?) } else { None },
            terminal: Some(m),
            held: None,
        },
        None if args.terminal => return Err("runtime never sent the terminal".into()),
        None => ContainerIo {
            stdout: Some(out_r),
            stderr: Some(err_r),
            stdin: in_w,
            terminal: None,
            held: Some(held),
        },
    };
    Ok((pid, io))
}

fn drain(fd: &OwnedFd, into: &mut Vec<u8>) {
    let mut buf = [0u8; 1024];
    let mut file = std::fs::File::from(match fd.try_clone() {
        Ok(f) => f,
        Err(_) => return,
    });
    while let Ok(n @ 1..) = file.read(&mut buf) {
        // Keep the start of the message; the reason is there, not in page 40.
        if into.len() < 16 * 1024 {
            into.extend_from_slice(&buf[..n]);
        }
    }
}
