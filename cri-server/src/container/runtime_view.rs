//! Which of the daemon's mounts a container's `runc create` runs without
//! (`oci_shim::monitor::RuntimeView`): every pod's namespace pins and
//! every container's root filesystem but this container's own.

use crate::daemon::Daemon;
use cri_api::v1 as cri;
use oci_shim::monitor::RuntimeView;
use oci_shim::runtime::RuntimeKind;
use sandbox_core::Sandbox;
use std::path::PathBuf;

/// The view for container `id` of `sandbox` created from `config` on a
/// runtime of `kind`. The host's whole table (the default) where the
/// container needs it: gVisor, whose sandbox and gofer live on in the
/// namespace `create` runs in, and any Bidirectional volume, whose mounts
/// must reach the host's own peers.
pub fn for_container(
    daemon: &Daemon,
    sandbox: &Sandbox,
    config: &cri::ContainerConfig,
    kind: RuntimeKind,
    id: &str,
) -> RuntimeView {
    let bidirectional = cri::MountPropagation::PropagationBidirectional as i32;
    if kind != RuntimeKind::Runc || config.mounts.iter().any(|m| m.propagation == bidirectional) {
        return RuntimeView::default();
    }
    let mut hide = vec![daemon.pins.path().to_path_buf()];
    let pins = [
        &sandbox.netns_path,
        &sandbox.ipc_path,
        &sandbox.uts_path,
        &sandbox.userns_path,
    ];
    let mut keep: Vec<PathBuf> = pins.into_iter().flatten().cloned().collect();
    if let Some(tree) = &daemon.rootfs_tree {
        hide.push(tree.dir().to_path_buf());
        keep.push(tree.mount_point(id));
    }
    // A volume named below a hidden tree (odd, but a pod may ask) is put
    // back too. Compared as written, not resolved: CreateContainer
    // resolves volumes once, beside the monitor's start. One that reaches
    // a hidden tree only through a symlink finds the empty entry beneath
    // it in the view: less than the host has, never more.
    let volumes = config.mounts.iter().map(|m| PathBuf::from(&m.host_path));
    keep.extend(volumes.filter(|v| hide.iter().any(|h| v.starts_with(h))));
    keep.retain(|k| hide.iter().any(|h| k.starts_with(h)));
    RuntimeView { hide, keep }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Doubles;
    use std::path::Path;

    fn pod(pins: &Path) -> Sandbox {
        Sandbox {
            id: "p1".into(),
            netns_path: Some(pins.join("p1")),
            ipc_path: Some(pins.join("p1.ipc")),
            uts_path: Some(pins.join("p1.uts")),
            ..Default::default()
        }
    }

    fn volume(host: &str, propagation: cri::MountPropagation) -> cri::Mount {
        cri::Mount {
            host_path: host.into(),
            container_path: "/v".into(),
            propagation: propagation as i32,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn pins_and_root_filesystems_are_hidden_but_the_containers_own() {
        let t = Doubles::new().build().await;
        let daemon = &t.daemon;
        let pins = daemon.pins.path().to_path_buf();
        let sandbox = pod(&pins);
        let config = cri::ContainerConfig {
            mounts: vec![volume(
                "/etc",
                cri::MountPropagation::PropagationHostToContainer,
            )],
            ..Default::default()
        };
        let view = for_container(daemon, &sandbox, &config, RuntimeKind::Runc, "c1");
        assert_eq!(
            view.hide,
            std::slice::from_ref(&pins),
            "no root filesystem tree in the doubles"
        );
        assert_eq!(
            view.keep,
            [pins.join("p1"), pins.join("p1.ipc"), pins.join("p1.uts")]
        );
    }

    #[tokio::test]
    async fn a_volume_from_a_hidden_tree_is_kept() {
        let t = Doubles::new().build().await;
        let daemon = &t.daemon;
        let pins = daemon.pins.path().to_path_buf();
        let mut sandbox = pod(&pins);
        sandbox.ipc_path = None;
        sandbox.uts_path = None;
        let other = pins.join("p2");
        let config = cri::ContainerConfig {
            mounts: vec![volume(
                other.to_str().unwrap(),
                cri::MountPropagation::PropagationPrivate,
            )],
            ..Default::default()
        };
        let view = for_container(daemon, &sandbox, &config, RuntimeKind::Runc, "c1");
        assert_eq!(view.keep, [pins.join("p1"), other]);
    }

    #[tokio::test]
    async fn gvisor_and_bidirectional_volumes_see_the_whole_table() {
        let t = Doubles::new().build().await;
        let daemon = &t.daemon;
        let sandbox = pod(daemon.pins.path());
        let plain = cri::ContainerConfig::default();
        let runsc = for_container(daemon, &sandbox, &plain, RuntimeKind::Runsc, "c1");
        assert!(runsc.is_full());
        let shared = cri::ContainerConfig {
            mounts: vec![volume(
                "/mnt",
                cri::MountPropagation::PropagationBidirectional,
            )],
            ..Default::default()
        };
        let bidirectional = for_container(daemon, &sandbox, &shared, RuntimeKind::Runc, "c1");
        assert!(bidirectional.is_full());
    }
}
