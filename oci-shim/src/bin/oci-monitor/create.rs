//! Running the runtime's `create` with the container's stdio.

use crate::args::Args;
use crate::failure::Failure;
use crate::mount_view::MountView;
use crate::sys;
use oci_shim::monitor::protocol::{CONSOLE_SOCKET_NAME, PID_FILE_NAME};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
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

/// The container's stdio before create: pipes, and our copies of the
/// container's ends for a runtime that takes them only at `start`.
struct Pipes {
    out: (OwnedFd, OwnedFd),
    err: (OwnedFd, OwnedFd),
    stdin: (Option<OwnedFd>, Option<OwnedFd>),
    held: [OwnedFd; 3],
}

impl Pipes {
    fn new(args: &Args) -> Result<Pipes, Failure> {
        let out = sys::pipe().map_err(Failure::sys("pipe"))?;
        let err = sys::pipe().map_err(Failure::sys("pipe"))?;
        let stdin = if args.stdin && !args.terminal {
            let (r, w) = sys::pipe().map_err(Failure::sys("pipe"))?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let null = || {
            std::fs::File::open("/dev/null")
                .map(OwnedFd::from)
                .map_err(Failure::sys("/dev/null"))
        };
        let held = [
            match &stdin.0 {
                Some(r) => dup(r)?,
                None => null()?,
            },
            dup(&out.1)?,
            dup(&err.1)?,
        ];
        Ok(Pipes {
            out,
            err,
            stdin,
            held,
        })
    }
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, Failure> {
    fd.try_clone().map_err(Failure::sys("dup"))
}

/// Spawns the runtime in the view the daemon asked for, or, if that view
/// cannot be made, in the host's (slower, never wrong).
fn spawn_in_view(cmd: &mut Command, args: &Args) -> Result<std::process::Child, Failure> {
    let view = MountView::new(&args.hide_mounts, &args.keep_mounts);
    let in_view = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(view.is_some()));
    let enter = std::sync::Arc::clone(&in_view);
    // SAFETY: between fork and exec only sigprocmask and the view's system
    // calls (`MountView::enter`); the flag is read, not locked.
    unsafe {
        cmd.pre_exec(move || {
            sys::unblock_signals()?;
            match &view {
                Some(view) if enter.load(std::sync::atomic::Ordering::Relaxed) => view.enter(),
                _ => Ok(()),
            }
        });
    }
    let spawned = cmd.spawn();
    let spawned = match spawned {
        Err(e) if in_view.swap(false, std::sync::atomic::Ordering::Relaxed) => {
            eprintln!(
                "oci-monitor {}: runtime view: {e}; creating with the host's mount table",
                args.id
            );
            cmd.spawn()
        }
        other => other,
    };
    spawned.map_err(|source| Failure::Spawn {
        runtime: args.runtime.clone(),
        source,
    })
}

/// What the runtime left once `create` returned.
struct Created {
    status: libc::c_int,
    master: Option<OwnedFd>,
    stderr: Vec<u8>,
}

/// Runs `<runtime> <args> create ...` and returns the container's init pid
/// and stdio.
pub fn create(args: &Args) -> Result<(libc::pid_t, ContainerIo), Failure> {
    let pid_file = args.state_dir.join(PID_FILE_NAME);
    let pipes = Pipes::new(args)?;
    let (out_r, out_w) = pipes.out;
    let (err_r, err_w) = pipes.err;
    let (in_r, in_w) = pipes.stdin;
    let console = console_socket(args)?;
    let mut cmd = Command::new(&args.runtime);
    cmd.args(&args.runtime_args)
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file);
    match &console {
        Some((_, path)) => {
            cmd.arg("--console-socket").arg(path);
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
        }
        None => {
            cmd.stdin(in_r.map_or_else(Stdio::null, Stdio::from))
                .stdout(Stdio::from(out_w));
        }
    }
    cmd.arg(&args.id).stderr(Stdio::from(err_w));
    let child = spawn_in_view(&mut cmd, args)?;
    // Drop our copies of the child's ends (the Command held them) so EOF
    // arrives when the container closes them.
    drop(cmd);
    // The runtime's cgroup move would otherwise wait out a grace period on
    // the container's start-up path; we have nothing else to do meanwhile.
    oci_shim::cgroup_warmup::warm_up();
    let created = wait_for_runtime(
        child.id() as libc::pid_t,
        &err_r,
        console.as_ref(),
        args.runtime_timeout,
    )?;
    if let Some((_, path)) = &console {
        let _ = std::fs::remove_file(path);
    }
    let (code, sig) = sys::decode_wait_status(created.status);
    if code != 0 {
        return Err(Failure::Runtime {
            verb: "create",
            how: if sig != 0 {
                format!("killed by signal {sig}")
            } else {
                format!("exit status {code}")
            },
            stderr: String::from_utf8_lossy(&created.stderr).trim().to_string(),
        });
    }
    let pid = read_pid(&pid_file)?;
    let io = match created.master {
        Some(m) => ContainerIo {
            stdout: Some(dup(&m)?),
            stderr: Some(err_r),
            stdin: if args.stdin { Some(dup(&m)?) } else { None },
            terminal: Some(m),
            held: None,
        },
        None if args.terminal => return Err(Failure::NoTerminal),
        None => ContainerIo {
            stdout: Some(out_r),
            stderr: Some(err_r),
            stdin: in_w,
            terminal: None,
            held: Some(pipes.held),
        },
    };
    Ok((pid, io))
}

/// With a terminal, the socket the runtime sends the terminal's master to.
fn console_socket(args: &Args) -> Result<Option<(UnixListener, PathBuf)>, Failure> {
    if !args.terminal {
        return Ok(None);
    }
    let path = args.state_dir.join(CONSOLE_SOCKET_NAME);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(Failure::sys("console socket"))?;
    Ok(Some((listener, path)))
}

/// Waits for the runtime's `create` to exit, accepting the terminal on the
/// console socket and draining its stderr meanwhile (so it can never block
/// on a full pipe). A runtime still running after `timeout` is killed.
fn wait_for_runtime(
    runtime_pid: libc::pid_t,
    err_r: &OwnedFd,
    console: Option<&(UnixListener, PathBuf)>,
    timeout: std::time::Duration,
) -> Result<Created, Failure> {
    let deadline = std::time::Instant::now() + timeout;
    let mut master = None;
    let mut stderr = Vec::new();
    sys::set_nonblocking(err_r.as_raw_fd()).map_err(Failure::sys("pipe"))?;
    // Woken the moment the runtime exits (a pidfd), rather than on the next
    // poll tick: create sits on every container's start-up path.
    let exited = sys::pidfd_open(runtime_pid);
    loop {
        if let (Some((listener, _)), None) = (console, &master) {
            master = accept_terminal(listener)?;
        }
        drain(err_r, &mut stderr);
        let mut status = 0;
        // SAFETY: valid out pointer; runtime_pid is our child.
        let r = unsafe { libc::waitpid(runtime_pid, &mut status, libc::WNOHANG) };
        if r == runtime_pid {
            drain(err_r, &mut stderr);
            return Ok(Created {
                status,
                master,
                stderr,
            });
        }
        if r < 0 {
            return Err(Failure::sys("waitpid")(io::Error::last_os_error()));
        }
        if std::time::Instant::now() >= deadline {
            sys::kill_and_reap(runtime_pid);
            drain(err_r, &mut stderr);
            return Err(Failure::Runtime {
                verb: "create",
                how: format!("no answer within {}s; killed", timeout.as_secs()),
                stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            });
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
    }
}

/// The terminal's master, if the runtime has connected to the console
/// socket yet.
fn accept_terminal(listener: &UnixListener) -> Result<Option<OwnedFd>, Failure> {
    listener.set_nonblocking(true).ok();
    let Ok((stream, _)) = listener.accept() else {
        return Ok(None);
    };
    stream.set_nonblocking(false).ok();
    crate::console::receive_master(&stream)
        .map(Some)
        .map_err(Failure::sys("console socket"))
}

/// The init pid the runtime wrote.
fn read_pid(path: &std::path::Path) -> Result<libc::pid_t, Failure> {
    let failure = |reason: String| Failure::File {
        what: "pid file",
        path: path.to_path_buf(),
        reason,
    };
    std::fs::read_to_string(path)
        .map_err(|e| failure(e.to_string()))?
        .trim()
        .parse::<libc::pid_t>()
        .map_err(|e| failure(e.to_string()))
}

/// Reads what `fd` (non-blocking) holds now into `into`, keeping the start.
pub fn drain(fd: &OwnedFd, into: &mut Vec<u8>) {
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
