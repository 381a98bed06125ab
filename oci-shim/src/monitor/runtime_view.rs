//! What of the host's mount table a container's runtime `create` sees.
//!
//! runc pays for every mount of the namespace it runs in: it reads the
//! mount table four times per `create` and copies it into the container's
//! new mount namespace, only to detach it again at `pivot_root`. On a busy
//! node most of those mounts are the daemon's own (one root filesystem per
//! container, the pods' namespace pins), and no container needs another
//! one's. The monitor therefore runs `create` in a mount namespace of its
//! own where the daemon's mount trees are detached and only this
//! container's paths are put back; the container's own namespace is then
//! made from that smaller table. It is a slave copy of the host's, so
//! mounts made on the host later still reach the container (HostToContainer
//! propagation), and nothing done in it reaches the host. A container whose
//! mounts must propagate back to the host (Bidirectional) needs the
//! host's own peers, so it gets no view.

use std::path::PathBuf;

/// The mount trees a runtime's `create` runs without (see the module docs).
/// The default hides nothing: `create` sees the host's mount table.
///
/// # Examples
///
/// ```
/// use oci_shim::monitor::RuntimeView;
///
/// let view = RuntimeView {
///     hide: vec!["/run/cri-server/netns".into()],
///     keep: vec!["/run/cri-server/netns/p1".into()],
/// };
/// assert_eq!(
///     view.monitor_args(),
///     ["--hide-mounts", "/run/cri-server/netns", "--keep-mount", "/run/cri-server/netns/p1"]
/// );
/// assert!(RuntimeView::default().monitor_args().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeView {
    /// Mount points taken out of the view with everything mounted below
    /// them; each must be a mount of its own (a private bind of itself).
    pub hide: Vec<PathBuf>,
    /// Paths below a hidden mount point that the container uses (its root
    /// filesystem, its pod's namespace pins): put back where they were.
    pub keep: Vec<PathBuf>,
}

impl RuntimeView {
    /// Whether `create` sees the host's whole mount table.
    pub fn is_full(&self) -> bool {
        self.hide.is_empty()
    }

    /// The view as `oci-monitor` arguments.
    pub fn monitor_args(&self) -> Vec<String> {
        let pairs = self
            .hide
            .iter()
            .map(|p| ("--hide-mounts", p))
            .chain(self.keep.iter().map(|p| ("--keep-mount", p)));
        pairs
            .flat_map(|(flag, path)| [flag.to_string(), path.to_string_lossy().into_owned()])
            .collect()
    }
}
