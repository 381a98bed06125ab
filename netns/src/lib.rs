//! Persistent Linux network namespaces: create, pin, restore, run in, remove.
//!
//! A pod's network namespace must outlive any single process, so it is
//! *pinned*: bind-mounted onto an empty file in a [`PinDir`]. [`NetNs`] is a
//! handle to one pinned namespace.
//!
//! ```no_run
//! # fn main() -> netns::Result<()> {
//! use netns::{NetNs, PinDir};
//!
//! let dir = PinDir::prepare("/var/lib/my-runtime/netns")?;
//! let mut ns = NetNs::create(&dir, "pod-1")?;          // loopback already up
//! let inode = ns.run_in(|| std::fs::metadata("/proc/thread-self/ns/net"))?;
//! drop(ns);                                            // pin stays
//! let mut ns = NetNs::open(dir.path().join("pod-1"))?; // e.g. after a restart
//! ns.remove()?;                                        // idempotent
//! # let _ = inode;
//! # Ok(()) }
//! ```
//!
//! # Threads
//!
//! Namespace switches (`unshare` in [`NetNs::create`], `setns` in
//! [`NetNs::run_in`]) happen only on a fresh OS thread that ends with the
//! work; no caller thread or tokio worker ever changes namespace. Everything
//! here blocks, so async callers wrap calls in `spawn_blocking`.
//!
//! # Why the pin directory is a private mount, and the `EBUSY` story
//!
//! On many hosts `/run` (and so `/run/netns`) is a *shared* mount. Every
//! mount namespace created later — a container, a systemd unit with
//! `PrivateTmp=`, `unshare -m` — then receives a copy of every pin, and a
//! mount made on top of a pin inside such a peer propagates back onto ours.
//! One unmount then only removes the top layer, and `unlink` fails with
//! `EBUSY` while any layer is left in our mount namespace. containerd 1.6
//! fails pod removal right there (`unlinkat /var/run/netns/cni-…: device or
//! resource busy`) and the pod can never be removed.
//!
//! (A copy merely *held* by another mount namespace does not block `unlink`:
//! since Linux 3.18 the kernel detaches such copies with the file. The root
//! tests of this crate check both facts.)
//!
//! This crate defends twice:
//!
//! 1. [`PinDir::prepare`] makes the pin directory a private mount of its own
//!    (bind-mounted onto itself if needed), so mount events cross in neither
//!    direction and no foreign layer can land on a pin.
//! 2. [`NetNs::remove`] unmounts layer after layer until the kernel says
//!    "not a mount point", then unlinks. If the kernel still says `EBUSY`
//!    (a layer arrived in between), or the stack is deeper than one call
//!    should peel, the pin is *parked* (recorded under `.parked/`) and
//!    [`PinDir::retry_parked`] / [`PinDir::cleanup_stale`] finish later.
//!    Removal reports [`Removal::Parked`], not an error, so the pod's
//!    removal goes on.
//!
//! # Testing without root
//!
//! Every kernel call goes through the [`syscall::Syscall`] trait;
//! [`syscall::RecordingSyscall`] records calls and injects errors.

#![deny(missing_docs)]

mod create;
mod error;
mod holder;
pub mod mountinfo;
mod name;
mod netns;
mod open;
mod park;
mod pin_dir;
mod pod_ns;
mod remove;
mod run_in;
pub mod syscall;
mod thread;
mod user_ns;

pub use error::{Error, Op, Result};
pub use netns::NetNs;
pub use pin_dir::{Cleanup, PinDir, IPROUTE2_PIN_DIR};
pub use pod_ns::PinnedKind;
pub use remove::Removal;
pub use user_ns::{id_map_text, user_pin_name, IdRange, UserPod, UserPodPins};

#[cfg(test)]
mod tests {
    // Later layers hold these across threads and await points.
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = {
        assert_send_sync::<crate::NetNs>();
        assert_send_sync::<crate::PinDir>();
        assert_send_sync::<crate::Error>();
    };
}
