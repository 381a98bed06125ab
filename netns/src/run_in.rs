//! `NetNs::run_in`: run a closure inside the namespace.

use nix::sched::CloneFlags;

use crate::error::{Error, Op, Result};
use crate::netns::NetNs;
use crate::thread::on_dedicated_thread;

impl NetNs {
    /// Runs `f` on a dedicated OS thread that has entered this namespace and
    /// returns its result. The thread ends with `f`, so the namespace never
    /// leaks into other work; `f` may borrow from the caller.
    ///
    /// Blocks until `f` returns; async callers should use `spawn_blocking`.
    /// A panic in `f` is resumed on the caller's thread.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> netns::Result<()> {
    /// use std::net::UdpSocket;
    ///
    /// let ns = netns::NetNs::open("/var/run/netns/blue")?;
    /// let bound = ns.run_in(|| UdpSocket::bind("127.0.0.1:0").is_ok())?;
    /// assert!(bound, "loopback is up inside");
    /// # Ok(()) }
    /// ```
    pub fn run_in<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let fd = self.fd()?;
        on_dedicated_thread("netns-run-in", &self.path, || {
            self.sys
                .setns(fd, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::sys(&self.path, Op::Setns, e))?;
            Ok(f())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nix::errno::Errno;

    use crate::syscall::{Call, CallKind, RecordingSyscall};
    use crate::{Error, NetNs};

    fn ns() -> (Arc<RecordingSyscall>, NetNs) {
        let sys = Arc::new(RecordingSyscall::new());
        sys.add_file("/pins/a");
        let ns = NetNs::open_with(sys.clone(), "/pins/a").unwrap();
        sys.clear_calls();
        (sys, ns)
    }

    #[test]
    fn enters_on_another_thread_then_runs() {
        let (sys, ns) = ns();
        let local = String::from("borrowed");
        let (len, thread) = ns
            .run_in(|| (local.len(), std::thread::current().id()))
            .unwrap();
        assert_eq!(len, 8);
        let calls = sys.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].call,
            Call::Setns(nix::sched::CloneFlags::CLONE_NEWNET)
        );
        assert_eq!(calls[0].thread, thread);
        assert_ne!(thread, std::thread::current().id());
    }

    #[test]
    fn setns_failure_skips_the_closure() {
        let (sys, ns) = ns();
        sys.fail_next(CallKind::Setns, Errno::EPERM);
        let mut ran = false;
        let err = ns.run_in(|| ran = true).unwrap_err();
        assert!(!ran);
        assert_eq!(
            err.to_string(),
            "network namespace pin /pins/a: enter namespace: EPERM: Operation not permitted"
        );
    }

    #[test]
    fn removed_namespace_cannot_be_entered() {
        let (_sys, mut ns) = ns();
        ns.remove().unwrap();
        assert!(matches!(ns.run_in(|| ()), Err(Error::Removed { .. })));
        assert!(ns.fd().is_err());
    }
}
