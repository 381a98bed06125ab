//! `oci-monitor`: the small per-container process that outlives the daemon.
//!
//! It detaches from the daemon, runs the OCI runtime's `create` with pipes (or
//! a terminal) as the container's stdio, writes the CRI log, serves the
//! control socket and records the exit. The protocol is documented in
//! `oci_shim::monitor::protocol`. Deliberately std + libc only, one thread,
//! one poll loop: there is one of these per running container.
//!
//! `oci-monitor reap PROGRAM [ARG]...` is a second, unrelated mode: the
//! reaper every exec runs under (see `reap.rs`).

mod args;
mod console;
mod create;
mod cri_log;
mod failure;
mod mount_view;
mod reap;
mod runtime_wait;
mod serve;
mod sys;
mod timestamp;

use failure::Failure;
use oci_shim::monitor::protocol::{ExitRecord, EXIT_FILE_NAME, MONITOR_PID_FILE_NAME, SOCKET_NAME};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("reap") {
        // Not a monitor: no fork, no detaching; the caller waits for us.
        std::process::exit(reap::main(&argv[1..]));
    }
    let args = match args::Args::parse(argv.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oci-monitor: {e}\n{}\n   or: {}", args::USAGE, reap::USAGE);
            std::process::exit(2);
        }
    };
    // SAFETY: still single-threaded; the parent only exits.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("oci-monitor: fork: {}", std::io::Error::last_os_error());
            std::process::exit(1);
        }
        0 => {}
        // The daemon waits for this process; the grandchild is re-parented to
        // init (or the nearest subreaper) and survives the daemon.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: plain syscalls without pointers.
    unsafe {
        libc::setsid();
        // Container processes orphaned by the runtime re-parent to us, so we
        // can reap init and learn its exit status.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    // Do not pin whatever directory (or mount) the daemon ran in.
    let _ = std::env::set_current_dir("/");
    // Mostly asleep, and the container's exit waits on its wake-up; what
    // it starts (the runtime, the container) does not inherit the slice.
    let _ = oci_shim::latency::request_slice(oci_shim::latency::WAKE_UP_SLICE);
    let code = match run(&args) {
        Ok(()) => 0,
        Err(reason) => {
            report(
                &format!("error {}", reason.to_string().replace('\n', " ")),
                false,
            );
            1
        }
    };
    std::process::exit(code);
}

/// Writes the one start-up line to the daemon's pipe (our stdout), then (if
/// we keep running) points stdio away from the daemon so its death cannot hurt
/// us. On failure the pipe stays open until we exit, so the daemon's EOF means
/// we are gone.
fn report(line: &str, detach: bool) {
    let mut out = std::io::stdout();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
    if !detach {
        return;
    }
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        // SAFETY: dup2 onto our own standard descriptors.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

fn run(args: &args::Args) -> Result<(), Failure> {
    // Our own diagnostics go to a file in the state dir, not the daemon's stderr.
    let diag = args.state_dir.join("monitor.log");
    if let Ok(f) = OpenOptions::new().create(true).append(true).open(&diag) {
        // SAFETY: dup2 onto our own stderr.
        unsafe { libc::dup2(f.as_raw_fd(), 2) };
    }
    let sigchld = sys::sigchld_fd().map_err(Failure::sys("signalfd"))?;
    let sock_path = args.state_dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path).map_err(|e| Failure::File {
        what: "socket",
        path: sock_path.clone(),
        reason: e.to_string(),
    })?;
    let max = args.log_size_max.map(oci_shim::monitor::LogSizeMax::bytes);
    let log = cri_log::CriLog::open(args.log_path.clone(), max).map_err(|e| Failure::File {
        what: "log",
        path: e.path,
        reason: format!("{}: {}", e.op, e.source),
    })?;

    // The daemon starts us while it still writes the bundle; it says `go`
    // once `config.json` is in place.
    if let Err(e) = await_go() {
        let _ = std::fs::remove_file(&sock_path);
        return Err(e);
    }
    let (pid, io) = match create::create(args) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&sock_path);
            return Err(e);
        }
    };
    let mount_namespace = hold_mount_namespace(&args.id, pid);
    let me = std::process::id();
    if let Err(e) = write_atomically(
        &args.state_dir.join(MONITOR_PID_FILE_NAME),
        format!("{me}\n").as_bytes(),
    ) {
        eprintln!("oci-monitor {}: monitor.pid: {e}", args.id);
    }
    report(&format!("ready {pid} {me}"), true);

    let mut io = io;
    let foreign = !runtime_wait::is_our_child(pid);
    if !foreign {
        // Our child got its stdio at create: drop our copies so EOF comes.
        io.held = None;
    }
    let start = serve::StartCommand {
        runtime: args.runtime.clone(),
        args: args.runtime_args.clone(),
        id: args.id.clone(),
        timeout: args.runtime_timeout,
        runc_root: (!foreign)
            .then(|| serve::StartCommand::root_in(&args.runtime_args))
            .flatten(),
    };
    let mut monitor = serve::Monitor::new(pid, log, io, listener, sigchld, args.stdin_once, start);
    if foreign {
        monitor.wait_with_runtime(runtime_wait::RuntimeWait {
            runtime: args.runtime.clone(),
            args: args.runtime_args.clone(),
            id: args.id.clone(),
            out: args.state_dir.join("runtime-wait.json"),
        });
    }
    let record = match monitor.run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oci-monitor {}: poll loop: {e}", args.id);
            let _ = std::fs::remove_file(&sock_path);
            return Ok(());
        }
    };
    if let Err(e) = write_exit(&args.state_dir, &record) {
        eprintln!("oci-monitor {}: {e}", args.id);
    }
    // Remove the socket first: from now on a reconnecting daemon reads exit.json.
    let _ = std::fs::remove_file(&sock_path);
    monitor.notify_exit(record);
    // Only now, the exit reported, is the container's mount table torn down.
    drop(mount_namespace);
    Ok(())
}

/// A reference to the mount namespace of the container's init `pid`,
/// taken while the init is still the runtime's code (it waits to exec the
/// container's process), so that the namespace outlives the init.
///
/// The last process of a mount namespace tears its mount table down in
/// its own exit, before its parent hears of it: every mount unmounted (17
/// for a CRI container here: the root, `/proc` and the read-only and
/// masked paths over it, `/dev` and its `pts`, `/sys`), an RCU grace
/// period waited for, the superblocks of its own `/proc` and `/dev`
/// freed, all of it before a StopPodSandbox waiting for that reap can go
/// on. Held here, the namespace goes when this reference is dropped,
/// after the exit has been reported: at 110
/// pods torn down by four clients, kill to reap went from p50 1.0–2.5,
/// p90 3.5–11 ms to p50 0.6–0.8, p90 2.3–3.5 ms. `None` (nothing held,
/// nothing changed) when the namespace cannot be opened: the init is
/// already gone, or `/proc` is not the host's.
fn hold_mount_namespace(id: &str, pid: libc::pid_t) -> Option<std::fs::File> {
    match std::fs::File::open(format!("/proc/{pid}/ns/mnt")) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("oci-monitor {id}: holding the mount namespace of {pid}: {e}");
            None
        }
    }
}

/// Reads the daemon's go-ahead from stdin. Anything but `go` (EOF included:
/// the daemon gave up on the container, or died) means the bundle will never
/// be ready, and nothing has been created.
fn await_go() -> Result<(), Failure> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) if line.trim_end() == "go" => Ok(()),
        Ok(0) => Err(Failure::Aborted(
            "the daemon closed the pipe before the bundle was ready".into(),
        )),
        Ok(_) => Err(Failure::Aborted(format!(
            "expected `go`, got {:?}",
            line.trim_end()
        ))),
        Err(e) => Err(Failure::Aborted(format!("reading the go-ahead: {e}"))),
    }
}

/// Writes `exit.json` so that readers see either nothing or the whole record.
fn write_exit(state_dir: &Path, record: &ExitRecord) -> std::io::Result<()> {
    write_atomically(&state_dir.join(EXIT_FILE_NAME), record.to_json().as_bytes())
}

/// Temp file, rename: readers never see a partial file. No fsync: the state
/// directory holds runtime state that a reboot makes void (it is meant to be
/// on tmpfs), and the rename alone survives a crash of any process, the
/// daemon's included. `monitor.pid` is written on every container's start-up
/// path, where an fsync on a disk-backed `/run` costs a journal commit.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}
