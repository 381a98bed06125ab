//! Starting a created runc container without starting runc.
//!
//! After `runc create`, the container's init waits to open runc's
//! `exec.fifo` for writing. `runc start` opens it for reading, which lets
//! the init write one byte and exec the container's process; it reads
//! until the init's end closes at that exec, then removes the fifo (its
//! absence is what makes runc report the container running). That is the
//! whole of it for our containers, yet each `runc start` costs about 8 ms
//! of CPU, most of it the Go runtime starting: one per container, on the
//! path of every StartContainer and of a node's whole start-up.
//!
//! [`start`] does the same in the caller (the container's monitor), and
//! declines, touching nothing, whenever runc would do more or the state is
//! not what it expects: no `state.json` of runc's shape, the init not
//! alive, no fifo, poststart hooks. Once the fifo is opened the container
//! starts, so from there failures are errors, as runc's would be.
//!
//! # Examples
//!
//! ```no_run
//! use oci_shim::runtime::created_runc::{start, Outcome};
//! use std::{path::Path, time::Duration};
//!
//! match start(Path::new("/run/oci-shim/runc"), "c1", Duration::from_secs(120))? {
//!     Outcome::Started => {}
//!     Outcome::Declined(why) => println!("runc start, because {why}"),
//! }
//! # Ok::<(), oci_shim::runtime::created_runc::StartError>(())
//! ```

use super::runc_state::State;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a start waiting for the init checks that it is still alive
/// (runc's own interval).
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// What [`start`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The init has exec'd the container's process.
    Started,
    /// Nothing was touched: `runc start` must start it, for this reason.
    Declined(&'static str),
}

/// Why a start that had begun failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The init died before it took the go-ahead.
    #[error("container process is already dead")]
    InitDied,
    /// The fifo closed without the init's byte: another start took it.
    #[error("cannot start an already running container")]
    AlreadyStarted,
    /// The init neither took the go-ahead nor died in time.
    #[error("the init did not take the go-ahead within {0:?}")]
    TimedOut(Duration),
    /// A system call on the fifo failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The fifo.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// Starts created container `id` of the runc whose `--root` is `root`, as
/// `runc start` would, waiting at most `timeout` for its init. Blocking.
pub fn start(root: &Path, id: &str, timeout: Duration) -> Result<Outcome, StartError> {
    let Some(state) = State::load(root, id) else {
        return Ok(Outcome::Declined("no state.json of the expected shape"));
    };
    if state.config.has_hooks("poststart") {
        return Ok(Outcome::Declined("it has poststart hooks"));
    }
    if !state.init_alive() {
        return Ok(Outcome::Declined("its init is not running"));
    }
    let fifo = root.join(id).join("exec.fifo");
    let is_fifo = std::fs::symlink_metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo());
    if !is_fifo {
        return Ok(Outcome::Declined("no exec.fifo"));
    }
    let io_error = |op| {
        let path = fifo.display().to_string();
        move |source| StartError::Io { op, path, source }
    };
    // Non-blocking: a blocking open would wait for good on an init that
    // died before opening its end.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(io_error("open"))?;
    let go_ahead = read_until_closed(&mut reader, &state, timeout).map_err(|e| match e {
        Waited::Io(source) => io_error("read")(source),
        Waited::InitDied => StartError::InitDied,
        Waited::TimedOut => StartError::TimedOut(timeout),
    })?;
    if go_ahead.is_empty() {
        return Err(StartError::AlreadyStarted);
    }
    std::fs::remove_file(&fifo).map_err(io_error("remove"))?;
    Ok(Outcome::Started)
}

/// How waiting for the init's end of the fifo ended, short of closing.
enum Waited {
    Io(io::Error),
    InitDied,
    TimedOut,
}

/// Everything the init writes to the fifo, once its end has closed (at its
/// exec). The kernel reports the hang-up only after a writer has come and
/// gone, so an init that has not yet opened its end is waited for.
fn read_until_closed(
    reader: &mut std::fs::File,
    state: &State,
    timeout: Duration,
) -> Result<Vec<u8>, Waited> {
    // A timeout too large to add (from a configuration) is no deadline.
    let deadline = Instant::now().checked_add(timeout);
    let mut data = Vec::new();
    loop {
        let left = deadline.map_or(LIVENESS_CHECK, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let wait = LIVENESS_CHECK.min(left);
        let mut fds = [libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, wait.as_millis() as libc::c_int) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Waited::Io(e));
        }
        if ready > 0 {
            if drain(reader, &mut data)? {
                return Ok(data);
            }
            continue;
        }
        // Nothing yet: what the init wrote before dying is still in the
        // fifo and would have been reported, so a dead init means no start.
        if !state.init_alive() {
            return Err(Waited::InitDied);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Waited::TimedOut);
        }
    }
}

/// Reads what is there; true once the writer has closed its end.
fn drain(reader: &mut std::fs::File, data: &mut Vec<u8>) -> Result<bool, Waited> {
    let mut buf = [0u8; 64];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(true),
            // The init writes one byte; more is not runc's protocol, and
            // is not kept.
            Ok(n) if data.len() < 64 => data.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Waited::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    const ID: &str = "c0ffee";

    /// A runc root holding container `ID`'s directory, with an
    /// `exec.fifo` in it if `fifo`.
    fn root(fifo: bool) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(ID);
        std::fs::create_dir(&dir).unwrap();
        if fifo {
            nix::unistd::mkfifo(&dir.join("exec.fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        }
        root
    }

    /// Writes the state of container `ID`: its init is process `pid`,
    /// started at `start`.
    fn write_state(root: &Path, pid: u32, start: u64, hooks: serde_json::Value) {
        let state = json!({
            "init_process_pid": pid,
            "init_process_start": start,
            "config": {"Hooks": hooks, "namespaces": []},
        });
        std::fs::write(root.join(ID).join("state.json"), state.to_string()).unwrap();
    }

    /// A live init (a child that sleeps) and a root whose state names it.
    fn with_init(fifo: bool, hooks: serde_json::Value) -> (std::process::Child, tempfile::TempDir) {
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let dir = root(fifo);
        write_state(dir.path(), child.id(), start_time_of(child.id()), hooks);
        (child, dir)
    }

    fn reap(mut child: std::process::Child) {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn start_time_of(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        super::super::runc_state::start_time(&stat).unwrap()
    }

    #[test]
    fn the_go_ahead_is_taken_and_the_fifo_removed() {
        // Standing in for runc's init: it opens its end after the start is
        // already waiting, writes the byte and exits.
        let dir = root(true);
        let fifo = dir.path().join(ID).join("exec.fifo");
        let script = format!("sleep 0.2; printf 0 > {}; sleep 0.05", fifo.display());
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        write_state(
            dir.path(),
            child.id(),
            start_time_of(child.id()),
            json!(null),
        );
        let outcome = start(dir.path(), ID, Duration::from_secs(10)).unwrap();
        assert_eq!(outcome, Outcome::Started);
        assert!(!fifo.exists());
        child.wait().unwrap();
    }

    #[test]
    fn an_init_that_dies_without_the_go_ahead_fails_the_start() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let dir = root(true);
        write_state(
            dir.path(),
            child.id(),
            start_time_of(child.id()),
            json!(null),
        );
        // Reaped by the waiter, so its pid stops existing.
        let waiter = std::thread::spawn(move || {
            child.wait().unwrap();
        });
        let started = Instant::now();
        let err = start(dir.path(), ID, Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, StartError::InitDied), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        waiter.join().unwrap();
    }

    #[test]
    fn a_writer_that_closes_without_the_byte_is_already_started() {
        let (child, dir) = with_init(true, json!(null));
        let fifo = dir.path().join(ID).join("exec.fifo");
        let opener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            w.flush().unwrap();
        });
        let err = start(dir.path(), ID, Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, StartError::AlreadyStarted), "{err}");
        opener.join().unwrap();
        reap(child);
    }

    #[test]
    fn a_silent_live_init_times_out() {
        let (child, dir) = with_init(true, json!(null));
        let err = start(dir.path(), ID, Duration::from_millis(250)).unwrap_err();
        assert!(matches!(err, StartError::TimedOut(_)), "{err}");
        reap(child);
    }

    #[test]
    fn what_runc_would_do_otherwise_is_declined_untouched() {
        let hooks = json!({"poststart": [{"path": "/bin/true"}]});
        let (child, dir) = with_init(true, hooks);
        assert_eq!(
            start(dir.path(), ID, Duration::from_secs(1)).unwrap(),
            Outcome::Declined("it has poststart hooks")
        );
        assert!(dir.path().join(ID).join("exec.fifo").exists());
        reap(child);

        let (child, dir) = with_init(false, json!(null));
        assert_eq!(
            start(dir.path(), ID, Duration::from_secs(1)).unwrap(),
            Outcome::Declined("no exec.fifo")
        );
        reap(child);

        let dir = root(true);
        let me = std::process::id();
        write_state(dir.path(), me, start_time_of(me) + 1, json!(null));
        assert_eq!(
            start(dir.path(), ID, Duration::from_secs(1)).unwrap(),
            Outcome::Declined("its init is not running")
        );
        assert!(dir.path().join(ID).join("exec.fifo").exists());

        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            start(empty.path(), ID, Duration::from_secs(1)).unwrap(),
            Outcome::Declined("no state.json of the expected shape")
        );
    }
}
