//! Telling systemd how the daemon is doing (`sd_notify(3)`), for a unit of
//! `Type=notify`: `READY=1` once state is restored and the socket serves,
//! `STOPPING=1` on the way out, and `WATCHDOG=1` keep-alives when the unit
//! sets `WatchdogSec=`.
//!
//! Without `NOTIFY_SOCKET` in the environment (not started by systemd) every
//! call does nothing. Failures are logged, never fatal: a daemon that serves
//! pods must not stop because its supervisor's socket went away.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where systemd listens for notifications, if it does.
#[derive(Debug, Clone)]
pub struct Notifier {
    address: Option<SocketAddr>,
}

impl Notifier {
    /// The notifier for the socket named by `NOTIFY_SOCKET` (a path, or an
    /// abstract name written with a leading `@`), if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use cri_server::systemd::Notifier;
    ///
    /// // Not under systemd: notifying is a no-op.
    /// let notifier = Notifier::new(None);
    /// notifier.ready();
    /// assert_eq!(notifier.watchdog_interval(None), None);
    /// ```
    pub fn from_env() -> Notifier {
        Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// The notifier for `socket`, the value of `NOTIFY_SOCKET`.
    pub fn new(socket: Option<&std::ffi::OsStr>) -> Notifier {
        use std::os::unix::ffi::OsStrExt;
        let address = socket.and_then(|s| {
            let bytes = s.as_bytes();
            let parsed = match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name),
                None => SocketAddr::from_pathname(s),
            };
            parsed
                .inspect_err(|e| tracing::warn!(socket = ?s, error = %e, "unusable NOTIFY_SOCKET"))
                .ok()
        });
        Notifier { address }
    }

    /// `READY=1`: state is restored and the CRI socket serves.
    pub fn ready(&self) {
        self.send(&format!("READY=1\nMAINPID={}\n", std::process::id()));
    }

    /// `STOPPING=1`: shutting down.
    pub fn stopping(&self) {
        self.send("STOPPING=1\n");
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (as
    /// `sd_watchdog_enabled(3)` advises), when systemd asked for keep-alives
    /// of this process (`WATCHDOG_PID` unset or ours). `usec` is the value of
    /// `WATCHDOG_USEC`; `None` reads the environment.
    pub fn watchdog_interval(&self, usec: Option<&str>) -> Option<Duration> {
        self.address.as_ref()?;
        let from_env = std::env::var("WATCHDOG_USEC").ok();
        let usec: u64 = usec.or(from_env.as_deref())?.parse().ok()?;
        let ours = std::env::var("WATCHDOG_PID")
            .map(|pid| pid == std::process::id().to_string())
            .unwrap_or(true);
        (ours && usec > 0).then(|| Duration::from_micros(usec / 2))
    }

    /// Sends `WATCHDOG=1` every `interval` for as long as the runtime runs.
    pub fn spawn_watchdog(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let notifier = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                notifier.send("WATCHDOG=1\n");
            }
        })
    }

    fn send(&self, message: &str) {
        let Some(address) = &self.address else {
            return;
        };
        // One datagram, no reply: cheap enough for the caller's thread.
        let sent = UnixDatagram::unbound()
            .and_then(|socket| socket.send_to_addr(message.as_bytes(), address));
        if let Err(e) = sent {
            tracing::warn!(error = %e, message = message.trim(), "sd_notify failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_and_stopping_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(Some(path.as_os_str()));
        notifier.ready();
        notifier.stopping();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let ready = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(ready.starts_with("READY=1\n"), "{ready}");
        assert!(ready.contains(&format!("MAINPID={}", std::process::id())));
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn an_abstract_socket_is_written_with_an_at_sign() {
        let name = format!("cri-server-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        Notifier::new(Some(format!("@{name}").as_ref())).ready();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"READY=1"));
    }

    #[test]
    fn the_watchdog_runs_at_half_the_interval_and_only_under_systemd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let notifier = Notifier::new(Some(path.as_os_str()));
        assert_eq!(
            notifier.watchdog_interval(Some("20000000")),
            Some(Duration::from_secs(10))
        );
        assert_eq!(notifier.watchdog_interval(Some("0")), None);
        assert_eq!(notifier.watchdog_interval(Some("soon")), None);
        assert_eq!(
            Notifier::new(None).watchdog_interval(Some("20000000")),
            None
        );
    }

    #[test]
    fn a_missing_socket_is_not_an_error() {
        Notifier::new(Some("/nonexistent/notify".as_ref())).ready();
    }
}
