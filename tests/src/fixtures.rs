//! CRI request builders and the fixture images `cargo xtask fixtures` pushes
//! to the local registry (reached through the daemon's default mirror
//! configuration: `registry.k8s.io` → `127.0.0.1:5000`).

use cri_api::v1 as cri;
use std::collections::HashMap;

/// The busybox test image.
pub const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

/// Both runtime handlers, for behaviours that must hold on each: runc (the
/// trusted handler) and runsc (gVisor, the untrusted one). Conformance-style
/// tests loop over these, so a feature is checked on gVisor as well as runc.
pub const HANDLERS: [&str; 2] = ["runc", "runsc"];

/// The image kubelet's conformance suite uses for NoNewPrivs: a setuid-root
/// program, run as uid 1000, that prints `Effective uid: N`.
pub const NONEWPRIVS: &str = "registry.k8s.io/e2e-test-images/nonewprivs:1.3";

/// A pod config named `name` in namespace `e2e`, with a unique uid.
pub fn pod_config(name: &str) -> cri::PodSandboxConfig {
    let uid = format!("{name}-{}", std::process::id());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid,
            namespace: "e2e".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        labels: HashMap::from([("test".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// `config` with the namespaces kubelet asks for a pod without
/// `shareProcessNamespace`: a PID namespace per container, the pod's IPC,
/// and the pod's network (the host's with `host_network`). CRI's zero
/// value, which [`pod_config`], crictl and critest send, is instead a PID
/// namespace shared by the pod, which kubelet only asks for on request.
pub fn with_kubelet_namespaces(
    mut config: cri::PodSandboxConfig,
    host_network: bool,
) -> cri::PodSandboxConfig {
    let network = if host_network {
        cri::NamespaceMode::Node
    } else {
        cri::NamespaceMode::Pod
    };
    config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: network as i32,
                pid: cri::NamespaceMode::Container as i32,
                ipc: cri::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

/// `config` with a user namespace of its own (Kubernetes `hostUsers:
/// false`): 65536 ids from `host_id`, as kubelet allocates them.
pub fn with_user_namespace(
    mut config: cri::PodSandboxConfig,
    host_id: u32,
) -> cri::PodSandboxConfig {
    let mapping = vec![cri::IdMapping {
        host_id,
        container_id: 0,
        length: 65536,
    }];
    let linux = config.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    let options = security
        .namespace_options
        .get_or_insert_with(Default::default);
    options.userns_options = Some(cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: mapping.clone(),
        gids: mapping,
    });
    config
}

/// A container config running `argv` in `image`.
pub fn container_config(name: &str, image: &str, argv: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: argv.iter().map(|s| s.to_string()).collect(),
        labels: HashMap::from([("container".to_string(), name.to_string())]),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// An image spec for `image`.
pub fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

/// A block device of the host (`/dev/vda`, `/dev/loop0`…), to tell whether
/// a container sees the host's devices.
pub fn host_block_device() -> String {
    use std::os::unix::fs::FileTypeExt;
    std::fs::read_dir("/dev")
        .expect("read /dev")
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_block_device()))
        .expect("a block device on the host")
        .to_string_lossy()
        .into_owned()
}
