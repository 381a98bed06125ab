//! End-to-end tests against the real daemon.
//!
//! The tests in `tests/tests/` start the real `cri-server` binary as root with
//! real runc, runsc, CNI plugins and the local registry, and speak CRI over
//! gRPC with the `cri-api` client types. This library holds what they share:
//! starting and stopping a daemon on a private socket and state directories,
//! and connecting a CRI client to it.
//!
//! The binaries are found beside the test executable (`target/<profile>/`);
//! `cargo xtask ci` builds them before running the tests.

#![warn(missing_docs)]

pub mod client;
pub mod containerd;
pub mod daemon;
pub mod fixtures;
pub mod http;
pub mod leaks;
pub mod registry_front;
pub mod spdy_client;
pub mod ws_client;

pub use daemon::Daemon;

/// Waits (at most 10 s) until `check` holds, else panics with `what`: for
/// what the daemon finishes after its calls return (network releases,
/// cgroup removals, monitors' exits).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{what}");
}
