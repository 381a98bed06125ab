//! Where the daemon keeps things on disk. One place, so that restore, cleanup
//! and tests agree on every path.
//!
//! Under `root` (persistent): `sandboxes/<id>.json`, `containers/<id>.json`
//! (the records), `images/` (the image store) and `cni/` (CNI results).
//! Under `state` (gone after a reboot): `netns/` (the private pin directory),
//! `pause/rootfs/` (the infra containers' root), `runtimes/<handler>/` (each
//! runtime's `--root`), `p/<id>/` and `c/<id>/` (the monitor state of each
//! infra and workload container, with its bundle in `bundle/`).
//!
//! The per-container directories have one-letter parents because the
//! monitor's socket lives in them and a unix socket path must fit in 108
//! bytes, while ids alone take 64.

use std::path::{Path, PathBuf};

/// The daemon's directory layout, derived from `root` and `state`.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    state: PathBuf,
}

impl Layout {
    /// The layout under the configured `root` and `state` directories.
    pub fn new(root: impl Into<PathBuf>, state: impl Into<PathBuf>) -> Layout {
        Layout {
            root: root.into(),
            state: state.into(),
        }
    }

    /// Pod records.
    pub fn sandbox_records(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    /// Container records.
    pub fn container_records(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// The image store's root.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The CNI result cache (persistent: DEL after a reboot still releases
    /// IPAM reservations).
    pub fn cni_cache(&self) -> PathBuf {
        self.root.join("cni")
    }

    /// The network namespace pin directory.
    pub fn netns(&self) -> PathBuf {
        self.state.join("netns")
    }

    /// The infra containers' shared, read-only root filesystem.
    pub fn pause_rootfs(&self) -> PathBuf {
        self.state.join("pause").join("rootfs")
    }

    /// The `--root` of runtime handler `name`.
    pub fn runtime_root(&self, handler: &str) -> PathBuf {
        self.state.join("runtimes").join(handler)
    }

    /// Where handler `name`'s deleted runc containers keep their state
    /// until their cgroups are removed (`oci_shim::runtime::Retirement`);
    /// what a killed daemon leaves there is finished at the next start.
    pub fn retired_runtime_state(&self, handler: &str) -> PathBuf {
        self.retired_runtime_states().join(handler)
    }

    /// The parent of every handler's [`Layout::retired_runtime_state`].
    pub fn retired_runtime_states(&self) -> PathBuf {
        self.state.join("retired")
    }

    /// The directory of pod `id`'s infra container.
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.state.join("p").join(id)
    }

    /// The directory of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state.join("c").join(id)
    }

    /// Where container `id`'s staged volumes (idmapped or locked read-only,
    /// see `container::userns_volumes`) are mounted until runc has
    /// bound them into the container: apart from the container directory,
    /// which is removed recursively, so no removal can walk into a volume.
    pub fn staged_volumes(&self, id: &str) -> PathBuf {
        self.staged_volumes_root().join(id)
    }

    /// The parent of every container's staged volume mounts.
    pub fn staged_volumes_root(&self) -> PathBuf {
        self.state.join("staged-volumes")
    }

    /// Where removed container and pod directories wait to be deleted in
    /// the background (`crate::discard`); emptied at start-up.
    pub fn removed(&self) -> PathBuf {
        self.state.join("removed")
    }

    /// The bundle inside a container or infra directory.
    pub fn bundle(dir: &Path) -> PathBuf {
        dir.join("bundle")
    }

    /// The monitor's state directory of a container or infra directory: the
    /// directory itself, to keep the socket path short.
    pub fn monitor(dir: &Path) -> PathBuf {
        dir.to_path_buf()
    }
}
