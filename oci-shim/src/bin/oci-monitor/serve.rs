//! The monitor's single-threaded poll(2) loop: container output to the log
//! and to attached clients, control requests, and reaping.

use crate::create::ContainerIo;
use crate::cri_log::{CriLog, Stream};
use crate::failure::Failure;
use crate::runtime_wait::{RuntimeWait, WaitResult};
use crate::sys;
use crate::timestamp::now_nanos;
use oci_shim::monitor::protocol::{
    ExitRecord, Request, FRAME_EXIT, FRAME_STDERR, FRAME_STDOUT, VERSION,
};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Requests longer than this are not from our daemon; the client is dropped.
const MAX_REQUEST: usize = 512;
/// How long output may keep flowing after init exited (processes outside its
/// PID namespace can hold the pipes forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Pause between attempts to run `runtime wait`.
const WAITER_RETRY: Duration = Duration::from_millis(200);
/// Longest pause between attempts (a container created and never started).
const WAITER_RETRY_MAX: Duration = Duration::from_secs(5);
/// Exit code recorded for a container the runtime forgot before we saw it end.
const EXIT_CODE_UNKNOWN: i32 = 255;

/// The `runtime wait` helper of a container that is not our child.
struct Waiter {
    command: RuntimeWait,
    pid: Option<libc::pid_t>,
    /// When to (re)start it; `None` while it runs.
    due: Option<Instant>,
    backoff: Duration,
}
/// A client that cannot take a reply within this is dropped, never waited for.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    greeted: bool,
    attached: bool,
    waiting: bool,
    /// An attached client shut down its writing half: output only from now on.
    input_closed: bool,
}

/// How to run the runtime's `start` for this container.
pub struct StartCommand {
    pub runtime: std::path::PathBuf,
    pub args: Vec<String>,
    pub id: String,
    /// How long `start` may take before it is killed.
    pub timeout: std::time::Duration,
    /// The runc root (`--root`) of a container whose init is our child:
    /// then the start is tried without runc first
    /// (`oci_shim::runtime::created_runc`).
    pub runc_root: Option<std::path::PathBuf>,
}

impl StartCommand {
    /// The runtime's `--root` among `args`: the last one, in either form,
    /// as runc's flag parsing takes it.
    pub fn root_in(args: &[String]) -> Option<std::path::PathBuf> {
        let mut root = None;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "--root" {
                root = args.next().map(std::path::PathBuf::from);
            } else if let Some(value) = arg.strip_prefix("--root=") {
                root = Some(value.into());
            }
        }
        root
    }

    /// Starts the container: in-process when runc's start would do no
    /// more, else through the runtime's `start`, handing the container the
    /// held stdio if there is any.
    fn run(&self, held: Option<[OwnedFd; 3]>) -> Result<(), Failure> {
        use oci_shim::runtime::created_runc::{start, Outcome};
        if let (None, Some(root)) = (&held, &self.runc_root) {
            match start(root, &self.id, self.timeout) {
                Ok(Outcome::Started) => return Ok(()),
                Ok(Outcome::Declined(why)) => {
                    eprintln!(
                        "oci-monitor {}: starting through the runtime: {why}",
                        self.id
                    )
                }
                Err(e) => {
                    return Err(Failure::Runtime {
                        verb: "start",
                        how: e.to_string(),
                        stderr: String::new(),
                    })
                }
            }
        }
        self.run_runtime(held)
    }

    /// Runs the runtime's `start`, handing the container the held stdio if
    /// there is any.
    fn run_runtime(&self, held: Option<[OwnedFd; 3]>) -> Result<(), Failure> {
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(&self.runtime);
        cmd.args(&self.args).arg("start").arg(&self.id);
        let capture = held.is_none();
        match held {
            Some([i, o, e]) => {
                cmd.stdin(Stdio::from(i))
                    .stdout(Stdio::from(o))
                    .stderr(Stdio::from(e));
            }
            None => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
            }
        }
        // SAFETY: only sigprocmask between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, sys::unblock_signals);
        }
        let child = cmd.spawn().map_err(|source| Failure::Spawn {
            runtime: self.runtime.clone(),
            source,
        })?;
        let pid = child.id() as libc::pid_t;
        let stderr = child.stderr.filter(|_| capture).map(OwnedFd::from);
        let (status, err) = self.wait(pid, stderr)?;
        match sys::decode_wait_status(status) {
            (0, _) => Ok(()),
            (code, _) => Err(Failure::Runtime {
                verb: "start",
                how: format!("exit status {code}"),
                stderr: err.trim().to_string(),
            }),
        }
    }

    /// Waits for the runtime's `start` (our child `pid`) while draining its
    /// stderr; one still running after the timeout is killed. Reaped here,
    /// not by the loop: SIGCHLD is blocked and this is the only waitpid for
    /// this pid.
    fn wait(&self, pid: libc::pid_t, stderr: Option<OwnedFd>) -> Result<(i32, String), Failure> {
        let deadline = Instant::now() + self.timeout;
        let mut err = Vec::new();
        if let Some(fd) = &stderr {
            sys::set_nonblocking(fd.as_raw_fd()).map_err(Failure::sys("pipe"))?;
        }
        loop {
            if let Some(fd) = &stderr {
                crate::create::drain(fd, &mut err);
            }
            let mut status = 0;
            // SAFETY: valid out pointer; pid is our child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                return Ok((status, String::from_utf8_lossy(&err).into_owned()));
            }
            if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(Failure::sys("waitpid on start")(io::Error::last_os_error()));
            }
            if Instant::now() >= deadline {
                sys::kill_and_reap(pid);
                return Err(Failure::Runtime {
                    verb: "start",
                    how: format!("no answer within {}s; killed", self.timeout.as_secs()),
                    stderr: String::from_utf8_lossy(&err).trim().to_string(),
                });
            }
            let mut fds = [libc::pollfd {
                fd: stderr.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            }];
            let _ = sys::poll(&mut fds, 20);
        }
    }
}

pub struct Monitor {
    start: StartCommand,
    pub container_pid: libc::pid_t,
    pub log: CriLog,
    pub io: ContainerIo,
    pub listener: UnixListener,
    pub sigchld: OwnedFd,
    pub stdin_once: bool,
    clients: Vec<Client>,
    exit: Option<ExitRecord>,
    /// For a container that is not our child: the `runtime wait` helper,
    /// its pid, and when to restart it after it failed.
    waiter: Option<Waiter>,
    buf: Box<[u8]>,
}

impl Monitor {
    pub fn new(
        container_pid: libc::pid_t,
        log: CriLog,
        io: ContainerIo,
        listener: UnixListener,
        sigchld: OwnedFd,
        stdin_once: bool,
        start: StartCommand,
    ) -> Monitor {
        Monitor {
            start,
            container_pid,
            log,
            io,
            listener,
            sigchld,
            stdin_once,
            clients: Vec::new(),
            exit: None,
            waiter: None,
            buf: vec![0u8; 8192].into_boxed_slice(),
        }
    }

    /// Learns the exit through `runtime wait` instead of waitpid.
    pub fn wait_with_runtime(&mut self, waiter: RuntimeWait) {
        // Normally started right after `start`; this is the fallback for a
        // daemon that started the container some other way.
        self.waiter = Some(Waiter {
            command: waiter,
            pid: None,
            due: Some(Instant::now() + Duration::from_secs(1)),
            backoff: WAITER_RETRY,
        });
    }

    /// Starts the runtime waiter when it is due.
    fn tend_waiter(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if let Some(w) = &mut self.waiter {
            if w.pid.is_none() && w.due.is_some_and(|d| Instant::now() >= d) {
                match w.command.spawn() {
                    Ok(p) => (w.pid, w.due) = (Some(p), None),
                    Err(e) => {
                        eprintln!("oci-monitor: runtime wait: {e}");
                        w.due = Some(Instant::now() + w.backoff);
                        w.backoff = (w.backoff * 2).min(WAITER_RETRY_MAX);
                    }
                }
            }
        }
    }

    /// Runs until the container exited and its output is drained; returns how it ended.
    pub fn run(&mut self) -> io::Result<ExitRecord> {
        let _ = self.listener.set_nonblocking(true);
        for fd in [&self.io.stdout, &self.io.stderr].into_iter().flatten() {
            sys::set_nonblocking(fd.as_raw_fd())?;
        }
        if let Some(fd) = &self.io.stdin {
            sys::set_nonblocking(fd.as_raw_fd())?;
        }
        self.reap();
        let mut drain_deadline = None;
        loop {
            if let Some(record) = self.exit {
                let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_GRACE);
                // A terminal master never reports EOF once the slave is gone
                // (EIO instead), handled in read_output.
                if (self.io.stdout.is_none() && self.io.stderr.is_none())
                    || Instant::now() >= deadline
                {
                    return Ok(record);
                }
            }
            let mut fds = Vec::with_capacity(4 + self.clients.len());
            let mut push = |fd: i32| {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
            };
            push(self.sigchld.as_raw_fd());
            push(self.listener.as_raw_fd());
            push(self.io.stdout.as_ref().map_or(-1, |f| f.as_raw_fd()));
            push(self.io.stderr.as_ref().map_or(-1, |f| f.as_raw_fd()));
            for c in &self.clients {
                push(if c.input_closed {
                    -1
                } else {
                    c.stream.as_raw_fd()
                });
            }
            self.tend_waiter();
            let waiter_due = self.waiter.as_ref().is_some_and(|w| w.due.is_some());
            let timeout = if self.exit.is_some() || waiter_due {
                100
            } else {
                -1
            };
            sys::poll(&mut fds, timeout)?;
            let ready = |i: usize| fds[i].revents != 0;
            if ready(0) {
                sys::drain_signalfd(self.sigchld.as_raw_fd());
                self.reap();
            }
            if ready(2) {
                self.read_output(Stream::Stdout);
            }
            if ready(3) {
                self.read_output(Stream::Stderr);
            }
            // Clients are served after output so a `wait` never overtakes log lines.
            let client_ready: Vec<bool> = (0..self.clients.len()).map(|i| ready(4 + i)).collect();
            for i in (0..client_ready.len()).rev() {
                if client_ready[i] && !self.serve_client(i) {
                    self.drop_client(i);
                }
            }
            if ready(1) {
                self.accept();
            }
        }
    }

    /// Tells waiting and attached clients how the container ended.
    pub fn notify_exit(&mut self, record: ExitRecord) {
        let line = record.to_line();
        for c in &mut self.clients {
            if c.attached {
                let _ = send_frame(&mut c.stream, FRAME_EXIT, line.as_bytes());
            } else if c.waiting {
                let _ = send(&mut c.stream, &format!("{line}\n"));
            }
        }
        self.clients.clear();
    }

    fn reap(&mut self) {
        while let Some((pid, status)) = sys::reap_any() {
            if let Some(w) = self.waiter.as_mut().filter(|w| w.pid == Some(pid)) {
                w.pid = None;
                let code = match w.command.result() {
                    WaitResult::Exited(code) => code,
                    WaitResult::Gone => EXIT_CODE_UNKNOWN,
                    WaitResult::Retry => {
                        w.due = Some(Instant::now() + w.backoff);
                        w.backoff = (w.backoff * 2).min(WAITER_RETRY_MAX);
                        continue;
                    }
                };
                // runsc reports 128+signal for killed processes.
                let signal = if (129..=128 + 64).contains(&code) {
                    code - 128
                } else {
                    0
                };
                self.exit = Some(ExitRecord {
                    exit_code: code,
                    signal,
                    finished_at_unix_nanos: now_nanos(),
                });
                continue;
            }
            if pid == self.container_pid && self.waiter.is_none() {
                let (exit_code, signal) = sys::decode_wait_status(status);
                self.exit = Some(ExitRecord {
                    exit_code,
                    signal,
                    finished_at_unix_nanos: now_nanos(),
                });
            }
        }
    }

    fn read_output(&mut self, stream: Stream) {
        let slot = match stream {
            Stream::Stdout => &mut self.io.stdout,
            Stream::Stderr => &mut self.io.stderr,
        };
        let Some(fd) = slot.as_ref() else { return };
        // SAFETY: reading into our own buffer of the stated length.
        let n = unsafe { libc::read(fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
            return;
        }
        if n <= 0 {
            // EOF, or EIO from a terminal master whose slave side closed.
            *slot = None;
            if let Err(e) = self.log.finish(stream, now_nanos()) {
                eprintln!("oci-monitor: {e}");
            }
            return;
        }
        let data = &self.buf[..n as usize];
        if let Err(e) = self.log.write_chunk(stream, data, now_nanos()) {
            eprintln!("oci-monitor: {e}");
        }
        let tag = match stream {
            Stream::Stdout => FRAME_STDOUT,
            Stream::Stderr => FRAME_STDERR,
        };
        self.clients
            .retain_mut(|c| !c.attached || send_frame(&mut c.stream, tag, data).is_ok());
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    stream,
                    input: Vec::new(),
                    greeted: false,
                    attached: false,
                    waiting: false,
                    input_closed: false,
                });
            }
        }
    }

    fn drop_client(&mut self, i: usize) {
        let c = self.clients.swap_remove(i);
        if c.attached && self.stdin_once {
            self.io.stdin = None;
        }
    }

    /// Handles input from client `i`; false when it must be dropped.
    fn serve_client(&mut self, i: usize) -> bool {
        let n = match self.clients[i].stream.read(&mut self.buf) {
            Ok(0) if self.clients[i].attached => {
                self.clients[i].input_closed = true;
                if self.stdin_once {
                    self.io.stdin = None;
                }
                return true;
            }
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        };
        if self.clients[i].attached {
            if let Some(stdin) = &self.io.stdin {
                // The container may not read; losing input beats stalling every other client.
                let mut f = File::from(match stdin.try_clone() {
                    Ok(f) => f,
                    Err(_) => return true,
                });
                let _ = f.write(&self.buf[..n]);
            }
            return true;
        }
        let client = &mut self.clients[i];
        client.input.extend_from_slice(&self.buf[..n]);
        while let Some(pos) = self.clients[i].input.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.clients[i].input.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            if !self.handle_line(i, &line) {
                return false;
            }
            if self.clients[i].attached {
                // Anything after `attach` is already stdin.
                let rest = std::mem::take(&mut self.clients[i].input);
                if let (Some(stdin), false) = (&self.io.stdin, rest.is_empty()) {
                    if let Ok(fd) = stdin.try_clone() {
                        let _ = File::from(fd).write(&rest);
                    }
                }
                break;
            }
        }
        self.clients[i].input.len() <= MAX_REQUEST
    }

    fn handle_line(&mut self, i: usize, line: &str) -> bool {
        let client = &mut self.clients[i];
        if !client.greeted {
            let ok = line.trim() == format!("hello {VERSION}");
            client.greeted = ok;
            let reply = if ok {
                format!("ok {VERSION}\n")
            } else {
                "error unsupported-version\n".to_owned()
            };
            return send(&mut client.stream, &reply).is_ok() && ok;
        }
        let reply = match Request::parse(line) {
            None => "error unknown-request\n".to_owned(),
            Some(Request::State) => match self.exit {
                Some(r) => format!("{}\n", r.to_line()),
                None => format!("running {}\n", self.container_pid),
            },
            Some(Request::Wait) => {
                // Answered by notify_exit once the log is complete.
                client.waiting = true;
                return true;
            }
            Some(Request::ReopenLog) => match self.log.reopen() {
                Ok(()) => "ok\n".to_owned(),
                Err(e) => format!("error {}\n", one_line(&e.to_string())),
            },
            Some(Request::Resize { width, height }) => match &self.io.terminal {
                Some(t) => match sys::resize_terminal(t.as_raw_fd(), width, height) {
                    Ok(()) => "ok\n".to_owned(),
                    Err(e) => format!("error {}\n", one_line(&e.to_string())),
                },
                None => "error no-terminal\n".to_owned(),
            },
            Some(Request::Start) => {
                let held = self.io.held.take();
                match self.start.run(held) {
                    Ok(()) => {
                        if let Some(w) = self.waiter.as_mut().filter(|w| w.pid.is_none()) {
                            (w.due, w.backoff) = (Some(Instant::now()), WAITER_RETRY);
                        }
                        "ok\n".to_owned()
                    }
                    Err(e) => format!("error {}\n", one_line(&e.to_string())),
                }
            }
            Some(Request::Attach) => {
                client.attached = true;
                "ok\n".to_owned()
            }
            Some(Request::Kill { signal, all }) => match self.exit {
                Some(r) => format!("{}\n", r.to_line()),
                None => signal_init(self.container_pid, self.waiter.is_some(), signal, all),
            },
        };
        send(&mut client.stream, &reply).is_ok()
    }
}

/// Delivers `signal` to the container's init `pid`, which has not been
/// reaped (so the pid is still its), or says why only the runtime can (see
/// the `kill` request in the protocol docs).
fn signal_init(pid: libc::pid_t, exit_from_runtime: bool, signal: i32, all: bool) -> String {
    let whole_namespace = signal == libc::SIGKILL && sys::is_pid_namespace_init(pid);
    if exit_from_runtime || pid <= 0 || (all && !whole_namespace) {
        return "error needs-runtime\n".to_owned();
    }
    // SAFETY: kill(2) takes plain integers.
    match sys::check(unsafe { libc::kill(pid, signal) }) {
        Ok(_) => "ok\n".to_owned(),
        Err(e) => format!("error {}\n", one_line(&e.to_string())),
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

fn send(stream: &mut UnixStream, text: &str) -> io::Result<()> {
    write_all_timeout(stream, text.as_bytes())
}

fn send_frame(stream: &mut UnixStream, tag: u8, data: &[u8]) -> io::Result<()> {
    let mut header = [0u8; 5];
    header[0] = tag;
    header[1..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    write_all_timeout(stream, &header)?;
    write_all_timeout(stream, data)
}

/// Writes to a non-blocking client, giving up after [`CLIENT_WRITE_TIMEOUT`].
fn write_all_timeout(stream: &mut UnixStream, mut data: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + CLIENT_WRITE_TIMEOUT;
    while !data.is_empty() {
        match stream.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let mut fds = [libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                }];
                sys::poll(&mut fds, left.as_millis() as i32 + 1)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::StartCommand;

    #[test]
    fn the_runtime_root_is_the_last_one_given() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let root = |a: &[&str]| StartCommand::root_in(&args(a));
        assert_eq!(root(&["--root", "/a", "--log", "x"]), Some("/a".into()));
        assert_eq!(root(&["--root", "/a", "--root=/b"]), Some("/b".into()));
        assert_eq!(root(&["--log", "x"]), None);
        assert_eq!(root(&["--root"]), None);
    }
}
