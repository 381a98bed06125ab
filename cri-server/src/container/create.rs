//! CreateContainer: merge the image's configuration with the request, mount
//! the root filesystem, write the bundle and let the monitor run the
//! runtime's `create` on the pod's handler.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::layout::Layout;
use cri_api::v1 as cri;
use cri_spec::container::{user_to_resolve, ContainerInputs};
use cri_spec::convert;
use cri_spec::image_config::{resolve_user, ImageConfig};
use cri_spec::namespaces::PodNamespaces;
use oci_shim::bundle::Bundle;
use oci_shim::monitor::{launch_alongside, MonitorConfig};
use oci_shim::runtime::RuntimeKind;
use sandbox_core::{Container, ContainerMetadata, ImageTrust, Mount, MountPropagation, Sandbox};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trust_policy::ImageEvidence;

/// Creates a container in pod `request.pod_sandbox_id` and returns its id.
pub async fn create(daemon: &Arc<Daemon>, request: cri::CreateContainerRequest) -> Result<String> {
    let config = request
        .config
        .ok_or_else(|| Error::InvalidArgument("CreateContainer: config is required".into()))?;
    let meta = config
        .metadata
        .clone()
        .filter(|m| !m.name.is_empty())
        .ok_or_else(|| {
            Error::InvalidArgument("CreateContainer: config.metadata.name is required".into())
        })?;
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| {
            Error::InvalidArgument("CreateContainer: config.image.image is required".into())
        })?;
    let sandbox_id = daemon.sandboxes.resolve(&request.pod_sandbox_id)?;
    let _guard = daemon.locks.lock(&sandbox_id).await;
    let sandbox = daemon.sandboxes.get(&sandbox_id)?;
    if sandbox.is_stopped() {
        return Err(Error::FailedPrecondition(format!(
            "pod {sandbox_id} is not ready: cannot create container {} in it",
            meta.name
        )));
    }
    let image = daemon.images.status(&image_name)?.ok_or_else(|| {
        Error::NotFound(format!(
            "image {image_name:?} is not present: pull it first"
        ))
    })?;
    let image_trust = admit_image(daemon, &sandbox, &image_name, &image)?;
    let image_config = ImageConfig::from_json(&image.config_json)
        .map_err(|e| Error::internal(format!("image {} configuration", image.id), e))?;
    let mut container = new_container(daemon, &sandbox, &meta, &config, &image, &image_config)?;
    container.image_trust = Some(image_trust);
    reserve_name(daemon, &container)?;
    match build_and_create(daemon, &sandbox, &mut container, &config, &image_config).await {
        Ok(()) => {
            crate::fault::point("create_container.before_record");
            record(daemon, container)
        }
        Err(e) => {
            tracing::warn!(container = %container.name, error = %e, "CreateContainer failed; undoing");
            if let Ok(runtime) = daemon.runtime(&container.runtime_handler) {
                let _ = runtime.delete(&container.id, true).await;
            }
            super::userns_root::release(&daemon.layout.container_dir(&container.id)).await;
            let _ = daemon.images.remove_rootfs(&container.id).await;
            super::userns_volumes::release(daemon.layout.staged_volumes(&container.id)).await;
            let _ = tokio::fs::remove_dir_all(daemon.layout.container_dir(&container.id)).await;
            daemon
                .container_names
                .release_held(&container.name, &container.id);
            Err(e)
        }
    }
}

/// Whether a container of `image` may run on its pod's handler
/// (`[runtime] trusted_images`), from the evidence its pulls recorded.
fn admit_image(
    daemon: &Daemon,
    sandbox: &Sandbox,
    name: &str,
    image: &image_store::Image,
) -> Result<ImageTrust> {
    let evidence = evidence_of(name, image);
    let pod = trust_policy::Decision {
        handler: sandbox.runtime_handler.clone(),
        trusted: sandbox.trusted,
        reason: sandbox.trust_reason.clone(),
    };
    let admission = daemon.policy().admit_image(&pod, &evidence)?;
    Ok(ImageTrust {
        verified: evidence.verified,
        evidence: evidence.summary,
        reason: admission.reason,
    })
}

/// What the pulls of `image` proved: verified when any pull's signatures
/// vouched for these bytes (the evidence is about the content, whatever
/// name it was pulled under).
fn evidence_of(name: &str, image: &image_store::Image) -> ImageEvidence {
    if let Some(signed) = image.evidence.iter().find(|e| e.verified) {
        return ImageEvidence::verified(
            name,
            format!("{} (pulled as {})", signed.summary, signed.reference),
        );
    }
    let why = match image.evidence.last() {
        Some(last) => format!("{} (pulled as {})", last.summary, last.reference),
        None => "no signature policy checked it when it was pulled".to_owned(),
    };
    ImageEvidence::unverified(name, why)
}

/// The container record the request describes, with a fresh id.
fn new_container(
    daemon: &Daemon,
    sandbox: &Sandbox,
    meta: &cri::ContainerMetadata,
    config: &cri::ContainerConfig,
    image: &image_store::Image,
    image_config: &ImageConfig,
) -> Result<Container> {
    let mut container = Container::new(
        sandbox_core::id::generate()?,
        sandbox,
        ContainerMetadata::new(&meta.name, meta.attempt),
    );
    container.image = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    container.image_ref = image.id.clone();
    container.command = config.command.clone();
    container.args = config.args.clone();
    container.labels = convert::map(&config.labels);
    container.annotations = convert::map(&config.annotations);
    container.tty = config.tty;
    container.stdin = config.stdin;
    container.stdin_once = config.stdin_once;
    container.runtime_handler = sandbox.runtime_handler.clone();
    container.stop_signal =
        cri_spec::stop_signal::resolve(config.stop_signal, image_config.stop_signal.as_deref())
            .map_err(|e| Error::InvalidArgument(format!("container {}: {e}", container.name)))?;
    // kubelet gives a directory per pod and a path relative to it; without
    // them the log stays with the container's own state.
    let log_path = sandbox.log_dir.join(&config.log_path);
    container.log_path = if config.log_path.is_empty() || log_path.is_relative() {
        daemon
            .layout
            .container_dir(&container.id)
            .join("container.log")
    } else {
        log_path
    };
    Ok(container)
}

/// Reserves the container's name; a name already held names its holder.
fn reserve_name(daemon: &Daemon, container: &Container) -> Result<()> {
    match daemon
        .container_names
        .reserve(&container.name, &container.id)
    {
        Ok(()) => Ok(()),
        Err(sandbox_core::Error::NameReserved { holder, .. }) => Err(Error::AlreadyExists(
            format!("container {} already exists as {holder}", container.name),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Saves and stores a created container and says so. Its record names
/// its pod; the pod's record does not list its containers (that list cost
/// the pod's record an fsync'd save at every create and remove).
fn record(daemon: &Daemon, container: Container) -> Result<String> {
    daemon.save_container(&container)?;
    let id = container.id.clone();
    daemon.containers.add(container)?;
    daemon.emit(&id, cri::ContainerEventType::ContainerCreatedEvent);
    Ok(id)
}

async fn build_and_create(
    daemon: &Arc<Daemon>,
    sandbox: &Sandbox,
    container: &mut Container,
    config: &cri::ContainerConfig,
    image: &ImageConfig,
) -> Result<()> {
    let handler = daemon.handler(&sandbox.runtime_handler)?;
    // The monitor opens the log as it starts.
    if let Some(parent) = container.log_path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Error::internal(parent.display(), e))?;
    }
    let dir = daemon.layout.container_dir(&container.id);
    let mut monitor_config = MonitorConfig::new(
        &container.id,
        Layout::bundle(&dir),
        Layout::monitor(&dir),
        &container.log_path,
        handler.clone(),
    );
    monitor_config.monitor_binary = daemon.monitor_binary.clone();
    monitor_config.terminal = config.tty;
    monitor_config.stdin = config.stdin;
    monitor_config.stdin_once = config.stdin_once;
    monitor_config.log_size_max = daemon.config.runtime.log_size_max();
    monitor_config.runtime_view =
        super::runtime_view::for_container(daemon, sandbox, config, handler.kind, &container.id);
    // The monitor starts up (exec, detach, socket) on the other core while
    // the root filesystem is mounted and the bundle written: both sit on
    // every container's start-up path.
    let (monitor, ()) = launch_alongside(
        daemon.monitors.as_ref(),
        &monitor_config,
        write_bundle(daemon, sandbox, container, config, image, &handler),
    )
    .await?;
    container.pid = Some(monitor.container_pid());
    // runc has bound the idmapped volumes into the container.
    super::userns_volumes::release(daemon.layout.staged_volumes(&container.id)).await;
    Ok(())
}

/// Mounts the root filesystem and writes the bundle's `config.json`: the
/// image's configuration merged with the request (`cri_spec::container`),
/// from what this function learns of the machine.
async fn write_bundle(
    daemon: &Arc<Daemon>,
    sandbox: &Sandbox,
    container: &mut Container,
    config: &cri::ContainerConfig,
    image: &ImageConfig,
    handler: &oci_shim::runtime::RuntimeHandlerConfig,
) -> Result<()> {
    let invalid = |e: &dyn std::fmt::Display| {
        Error::InvalidArgument(format!("container {}: {e}", container.name))
    };
    let security = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    // Writable underneath even for a read-only root: runc creates the
    // mount points (/proc, /dev, volumes) first, then remounts the root
    // read-only as `root.readonly` asks.
    let rootfs = match rootfs_idmap(sandbox) {
        Some(idmap) => {
            daemon
                .images
                .create_rootfs_mapped(&container.image_ref, &container.id, false, idmap)
                .await?
        }
        None => {
            daemon
                .images
                .create_rootfs(&container.image_ref, &container.id, false)
                .await?
        }
    };
    crate::fault::point("create_container.rootfs_mounted");
    let user = match user_to_resolve(&security, image.user.as_deref()).map_err(|e| invalid(&e))? {
        Some(user) => Some(user_of(&rootfs.path, user, container).await?),
        None => None,
    };
    let offers = daemon
        .handlers()
        .get(&sandbox.runtime_handler)
        .map(VolumeOffers::of)
        .unwrap_or_default();
    container.mounts = volumes(
        config,
        container,
        offers,
        sandbox.namespace_options.user.as_ref(),
    )
    .await?;
    let container_dir = daemon.layout.container_dir(&container.id);
    let (volumes, runc_root) = match (&sandbox.userns_path, rootfs_idmap(sandbox)) {
        (Some(userns), Some(idmap)) => (
            super::userns_volumes::stage(
                daemon.layout.staged_volumes(&container.id),
                userns.clone(),
                idmap.root,
                container.mounts.clone(),
            )
            .await?,
            super::userns_root::bind(&container_dir, &rootfs.path, idmap.root).await?,
        ),
        _ => (container.mounts.clone(), rootfs.path.clone()),
    };
    let on_gvisor = handler.kind == RuntimeKind::Runsc;
    let pod_dir = daemon.layout.sandbox_dir(&sandbox.id);
    let pod_files: Vec<(PathBuf, &'static str)> = crate::pod::files::MOUNTS
        .iter()
        .map(|(file, destination)| (pod_dir.join(file), *destination))
        .filter(|(source, _)| source.exists())
        .collect();
    let requested = convert::namespace_options(security.namespace_options.as_ref());
    let target_pid = requested
        .target_id
        .as_ref()
        .and_then(|t| daemon.containers.get(t).ok())
        .and_then(|c| c.pid);
    let allowed = daemon.allowed_annotations(&sandbox.runtime_handler);
    let built = cri_spec::container::build(&ContainerInputs {
        request: config,
        image,
        rootfs: &runc_root,
        user,
        volumes: &volumes,
        pod_files: &pod_files,
        pod: PodNamespaces {
            netns: sandbox.netns_path.clone(),
            options: sandbox.namespace_options.clone(),
            infra_pid: sandbox.infra_container.as_ref().and_then(|c| c.pid),
            ipc_pin: sandbox.ipc_path.clone(),
            uts_pin: sandbox.uts_path.clone(),
            userns_pin: sandbox.userns_path.clone(),
            on_gvisor,
        },
        pod_id: &sandbox.id,
        target_pid,
        cgroups_path: daemon.cgroup_path(&sandbox.cgroup_parent, &container.id)?,
        allowed_annotations: &allowed,
        annotations: &container.annotations,
        apparmor_enabled: cri_spec::security::apparmor_enabled(),
        privileged_without_host_devices: daemon
            .handlers()
            .get(&sandbox.runtime_handler)
            .is_some_and(|h| h.settings.privileged_without_host_devices),
    })
    .map_err(|e| invalid(&e))?;
    let mut built = built;
    if on_gvisor {
        built.spec = gvisor_paths(built.spec, &rootfs.path, container).await?;
    }
    container.working_dir = built.spec.process.cwd.clone();
    let user = &built.spec.process.user;
    container.process_user = Some(sandbox_core::ProcessUser {
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids.clone(),
    });
    container.env = built.spec.process.env.clone();
    container.privileged = security.privileged;
    container.resources = built.resources;
    let host = if on_gvisor {
        crate::gvisor::allow_low_ports(sandbox, &built.spec).await?;
        cri_spec::security::gvisor_limits(daemon.host)
    } else {
        daemon.host
    };
    let oci = built.spec.to_oci(&host)?;
    let bundle_dir = Layout::bundle(&daemon.layout.container_dir(&container.id));
    tokio::task::spawn_blocking(move || Bundle::write(bundle_dir, &oci))
        .await
        .map_err(|e| Error::internal(format!("container {}", container.id), e))??;
    Ok(())
}

/// The request's volumes, host paths resolved and their propagation made
/// possible on the host (on a blocking thread: both touch the filesystem).
async fn volumes(
    config: &cri::ContainerConfig,
    container: &Container,
    offers: VolumeOffers,
    pod_user: Option<&sandbox_core::UserNamespace>,
) -> Result<Vec<Mount>> {
    let mut mounts = Vec::new();
    for m in &config.mounts {
        let mount = volume(m, offers, pod_user)
            .map_err(|e| Error::InvalidArgument(format!("container {}: {e}", container.name)))?;
        let (host, propagation) = (mount.host_path.clone(), mount.propagation);
        tokio::task::spawn_blocking(move || {
            super::mount_propagation::prepare(&super::mount_propagation::Kernel, &host, propagation)
        })
        .await
        .map_err(|e| Error::internal(format!("container {}", container.name), e))?
        .map_err(|e| Error::internal(format!("container {}", container.name), e))?;
        mounts.push(mount);
    }
    Ok(mounts)
}

/// `spec`'s masked and read-only paths as mounts gVisor applies (see
/// `cri_spec::gvisor_paths`), looked up in the root filesystem on a
/// blocking thread.
async fn gvisor_paths(
    mut spec: oci_shim::spec::ContainerSpec,
    rootfs: &Path,
    container: &Container,
) -> Result<oci_shim::spec::ContainerSpec> {
    let root = rootfs.to_path_buf();
    tokio::task::spawn_blocking(move || {
        cri_spec::gvisor_paths::as_mounts(&mut spec, &root).map(|()| spec)
    })
    .await
    .map_err(|e| Error::internal(format!("container {}", container.name), e))?
    // The image's own files (a symlink loop, say): the image's fault.
    .map_err(|e| {
        Error::FailedPrecondition(format!(
            "container {}: image {}: masked or read-only path: {e}",
            container.name, container.image
        ))
    })
}

/// How the root filesystem is idmapped for a pod with a user namespace.
fn rootfs_idmap(sandbox: &Sandbox) -> Option<image_store::RootFsIdmap> {
    let userns = sandbox.userns_path.clone()?;
    let root = sandbox.namespace_options.user.as_ref()?.host_root()?;
    Some(image_store::RootFsIdmap { userns, root })
}

/// Resolves `user` in the image's `/etc/passwd` and `/etc/group`, read inside
/// the mounted root filesystem on a blocking thread (the image is hostile
/// input: see [`crate::rootfs_file`]).
async fn user_of(
    rootfs: &Path,
    user: String,
    container: &Container,
) -> Result<cri_spec::image_config::ResolvedUser> {
    let root = rootfs.to_path_buf();
    tokio::task::spawn_blocking(move || resolve_user(&root, &user))
        .await
        .map_err(|e| Error::internal(format!("container {}", container.name), e))?
        .map_err(|source| Error::ContainerUser {
            container: container.name.clone(),
            image: container.image.clone(),
            source,
        })
}

/// Why a CRI volume cannot be mounted.
#[derive(Debug, thiserror::Error)]
enum VolumeError {
    #[error("mount container_path {0:?} is not absolute")]
    RelativeDestination(String),
    #[error("mount host_path {path}: {source}")]
    HostPath {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount {container_path:?}: {why}")]
    Idmap {
        container_path: String,
        why: &'static str,
    },
    #[error("mount {0:?}: recursive_read_only needs readonly and private propagation")]
    RecursiveReadOnlyNeedsReadOnly(String),
    /// A CRI mount feature this runtime does not offer; kubelet checks the
    /// handler features in Status before asking, so only a client that did
    /// not look gets here, and must not get a mount that silently differs.
    #[error("mount {container_path:?}: {feature} is not supported by this runtime")]
    Unsupported {
        container_path: String,
        feature: &'static str,
    },
}

/// What a pod's runtime handler can do with volumes beyond a plain bind.
#[derive(Debug, Clone, Copy, Default)]
struct VolumeOffers {
    /// Recursive read-only mounts: the runtime's features list `rro`.
    recursive_read_only: bool,
    /// Bidirectional propagation. Not on gVisor: its gofer propagates no
    /// mount either way, and runsc refuses the `rshared` root propagation
    /// such a volume needs ("root mount propagation option must specify
    /// private or slave"), which surfaced as an Internal error from
    /// `runsc create`. HostToContainer stays accepted there: runsc takes it,
    /// and the volume shows what was mounted when the container started
    /// (README, "runsc differences").
    bidirectional: bool,
}

impl VolumeOffers {
    fn of(handler: &crate::handlers::Handler) -> Self {
        VolumeOffers {
            recursive_read_only: handler.features.recursive_read_only(),
            bidirectional: handler.runtime_config.kind != oci_shim::runtime::RuntimeKind::Runsc,
        }
    }
}

/// The CRI mount features [`volume`] refuses, and why they are absent:
/// image volumes (KEP-4639) need an image mounted per volume, recursive
/// read-only a runtime whose features list `rro` (Status tells kubelet per
/// handler), bidirectional propagation a runtime that propagates mounts.
/// Id-mapped mounts are checked apart (`userns_volumes::wanted`).
fn unsupported_feature(m: &cri::Mount, offers: VolumeOffers) -> Option<&'static str> {
    let bidirectional = m.propagation == cri::MountPropagation::PropagationBidirectional as i32;
    if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) || !m.image_sub_path.is_empty() {
        Some("an image volume (image, image_sub_path)")
    } else if m.recursive_read_only && !offers.recursive_read_only {
        Some("recursive_read_only")
    } else if bidirectional && !offers.bidirectional {
        Some("Bidirectional mount propagation")
    } else {
        None
    }
}

/// A CRI volume: the host path resolved (a symlink is followed, as kubelet's
/// hostPath volumes may be symlinks) and must exist.
fn volume(
    m: &cri::Mount,
    offers: VolumeOffers,
    pod_user: Option<&sandbox_core::UserNamespace>,
) -> std::result::Result<Mount, VolumeError> {
    if m.container_path.is_empty() || !m.container_path.starts_with('/') {
        return Err(VolumeError::RelativeDestination(m.container_path.clone()));
    }
    let idmapped =
        super::userns_volumes::wanted(m, pod_user).map_err(|why| VolumeError::Idmap {
            container_path: m.container_path.clone(),
            why,
        })?;
    if let Some(feature) = unsupported_feature(m, offers) {
        return Err(VolumeError::Unsupported {
            container_path: m.container_path.clone(),
            feature,
        });
    }
    let host = Path::new(&m.host_path);
    let resolved = std::fs::canonicalize(host).map_err(|source| VolumeError::HostPath {
        path: host.to_path_buf(),
        source,
    })?;
    let propagation = match cri::MountPropagation::try_from(m.propagation) {
        Ok(cri::MountPropagation::PropagationHostToContainer) => MountPropagation::HostToContainer,
        Ok(cri::MountPropagation::PropagationBidirectional) => MountPropagation::Bidirectional,
        _ => MountPropagation::Private,
    };
    Ok(Mount {
        container_path: m.container_path.clone().into(),
        host_path: resolved,
        readonly: m.readonly,
        selinux_relabel: m.selinux_relabel,
        propagation,
        recursive_read_only: recursive_read_only_mount(m)?,
        idmapped,
    })
}

/// Whether `m` asks for a recursive read-only mount, which CRI allows only
/// on a read-only, private mount (a submount propagated in later could not
/// be made read-only).
fn recursive_read_only_mount(m: &cri::Mount) -> std::result::Result<bool, VolumeError> {
    let private = matches!(
        cri::MountPropagation::try_from(m.propagation),
        Ok(cri::MountPropagation::PropagationPrivate) | Err(_)
    );
    if m.recursive_read_only && !(m.readonly && private) {
        return Err(VolumeError::RecursiveReadOnlyNeedsReadOnly(
            m.container_path.clone(),
        ));
    }
    Ok(m.recursive_read_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// runc without `rro` in its features.
    const PLAIN: VolumeOffers = VolumeOffers {
        recursive_read_only: false,
        bidirectional: true,
    };
    /// runc with `rro`.
    const RRO: VolumeOffers = VolumeOffers {
        recursive_read_only: true,
        bidirectional: true,
    };

    #[test]
    fn bidirectional_propagation_is_refused_on_gvisor_only() {
        let shared = cri::Mount {
            container_path: "/data".into(),
            host_path: "/nonexistent/host/path".into(),
            propagation: cri::MountPropagation::PropagationBidirectional as i32,
            ..Default::default()
        };
        let gvisor = VolumeOffers {
            recursive_read_only: false,
            bidirectional: false,
        };
        let err = volume(&shared, gvisor, None).unwrap_err().to_string();
        assert!(
            err.contains("Bidirectional") && err.contains("/data"),
            "{err}"
        );
        // Refused before the host path is looked at; on runc the missing
        // path is what fails.
        let err = volume(&shared, PLAIN, None).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/host/path"), "{err}");
        let slave = cri::Mount {
            host_path: "/etc".into(),
            propagation: cri::MountPropagation::PropagationHostToContainer as i32,
            ..shared
        };
        assert!(volume(&slave, gvisor, None).is_ok());
    }

    #[test]
    fn mount_features_we_lack_are_refused_before_the_host_is_read() {
        let base = cri::Mount {
            container_path: "/data".into(),
            host_path: "/etc".into(),
            ..Default::default()
        };
        let image = cri::Mount {
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            host_path: String::new(),
            ..base.clone()
        };
        let sub_path = cri::Mount {
            image_sub_path: "bin".into(),
            ..base.clone()
        };
        let rro = cri::Mount {
            recursive_read_only: true,
            readonly: true,
            ..base.clone()
        };
        let idmap = cri::Mount {
            uid_mappings: vec![cri::IdMapping {
                host_id: 100000,
                container_id: 0,
                length: 65536,
            }],
            ..base.clone()
        };
        for (m, feature) in [
            (image, "image volume"),
            (sub_path, "image volume"),
            (rro, "recursive_read_only"),
            (idmap, "pod without a user namespace"),
        ] {
            let err = volume(&m, PLAIN, None).unwrap_err().to_string();
            assert!(err.contains(feature) && err.contains("/data"), "{err}");
        }
        assert!(volume(&base, PLAIN, None).is_ok());
        // With a runtime that has rro: only read-only and private.
        let rro = cri::Mount {
            recursive_read_only: true,
            readonly: true,
            ..base.clone()
        };
        assert!(volume(&rro, RRO, None).unwrap().recursive_read_only);
        let writable = cri::Mount {
            readonly: false,
            ..rro.clone()
        };
        let shared = cri::Mount {
            propagation: cri::MountPropagation::PropagationBidirectional as i32,
            ..rro.clone()
        };
        for m in [writable, shared] {
            let err = volume(&m, RRO, None).unwrap_err().to_string();
            assert!(err.contains("needs readonly and private"), "{err}");
        }
    }

    #[test]
    fn volume_follows_symlinks_and_refuses_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let m = cri::Mount {
            container_path: "/data".into(),
            host_path: link.to_string_lossy().into_owned(),
            ..Default::default()
        };
        assert_eq!(
            volume(&m, PLAIN, None).unwrap().host_path,
            target.canonicalize().unwrap()
        );
        let missing = cri::Mount {
            container_path: "/data".into(),
            host_path: "/nonexistent/x".into(),
            ..Default::default()
        };
        assert!(volume(&missing, PLAIN, None)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/x"));
    }
}

#[cfg(test)]
mod verb_tests {
    use super::*;
    use crate::testing::{container_request, expect_rootfs, launch_failing, launch_ok, ready_pod};

    /// The test image, with what its pulls recorded.
    fn image_with(evidence: Vec<image_store::PullEvidence>) -> image_store::Image {
        image_store::Image {
            evidence,
            ..crate::testing::image("sha256:aaaa")
        }
    }

    fn pulled_as(reference: &str, verified: bool, summary: &str) -> image_store::PullEvidence {
        image_store::PullEvidence {
            reference: reference.into(),
            verified,
            summary: summary.into(),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn under_verified_images_an_unsigned_image_is_refused_on_the_trusted_handler() {
        let mut d = crate::testing::Doubles::new();
        d.trusted_images = trust_policy::TrustedImages::Verified;
        let unsigned = image_with(vec![pulled_as(
            "registry.test/busybox:1",
            false,
            "accepted by insecureAcceptAnything",
        )]);
        d.images
            .expect_status()
            .returning(move |_| Ok(Some(unsigned.clone())));
        // Refused before anything is made.
        d.images.expect_create_rootfs().times(0);
        d.monitors.expect_prepare().times(0);
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");

        let err = create(&t.daemon, container_request(&pod, "app"))
            .await
            .unwrap_err();

        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        for part in [
            "registry.test/busybox:1",
            "handler runc",
            "trusted_images=verified",
            "insecureAcceptAnything",
            "sign it, or run the pod untrusted",
        ] {
            assert!(
                status.message().contains(part),
                "{part}: {}",
                status.message()
            );
        }
        assert!(t
            .daemon
            .container_names
            .reserve("k8s_app_web_test_web-uid_0", "next")
            .is_ok());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_verified_image_runs_on_the_trusted_handler_and_says_why() {
        let roots = tempfile::tempdir().unwrap();
        let mut d = crate::testing::Doubles::new();
        d.trusted_images = trust_policy::TrustedImages::Verified;
        let signed = image_with(vec![
            pulled_as("other.test/busybox:1", false, "no signature required"),
            pulled_as("registry.test/busybox:1", true, "signed by key sha256:ab12"),
        ]);
        d.images
            .expect_status()
            .returning(move |_| Ok(Some(signed.clone())));
        expect_rootfs(&mut d.images, roots.path());
        d.monitors
            .expect_prepare()
            .times(1)
            .returning(|_| Ok(launch_ok()));
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");

        let id = create(&t.daemon, container_request(&pod, "app"))
            .await
            .unwrap();

        let trust = t
            .daemon
            .containers
            .get(&id)
            .unwrap()
            .image_trust
            .clone()
            .unwrap();
        assert!(trust.verified);
        assert_eq!(
            trust.evidence,
            "signed by key sha256:ab12 (pulled as registry.test/busybox:1)"
        );
        assert!(
            trust.reason.contains("may run on handler runc"),
            "{}",
            trust.reason
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_runtime_failure_releases_the_name_and_undoes_once() {
        let roots = tempfile::tempdir().unwrap();
        let mut d = crate::testing::Doubles::new();
        expect_rootfs(&mut d.images, roots.path());
        d.monitors
            .expect_prepare()
            .times(1)
            .returning(|_| Ok(launch_failing()));
        d.runc
            .expect_delete()
            .withf(|_, force| *force)
            .times(1)
            .returning(|_, _| Ok(()));
        d.images
            .expect_remove_rootfs()
            .times(1)
            .returning(|_| Ok(()));
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");

        let err = create(&t.daemon, container_request(&pod, "app"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("exec format error"), "{err}");
        let name_free = t
            .daemon
            .container_names
            .reserve("k8s_app_web_test_web-uid_0", "next");
        assert!(name_free.is_ok(), "the name is still held: {name_free:?}");
        assert!(t
            .daemon
            .containers
            .list(&sandbox_core::ContainerFilter::default())
            .is_empty());
        let dirs = std::fs::read_dir(t.daemon.layout.container_dir("x").parent().unwrap())
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(dirs, 0, "a container directory is left");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_created_container_is_recorded_with_its_pid_and_name() {
        let roots = tempfile::tempdir().unwrap();
        let mut d = crate::testing::Doubles::new();
        expect_rootfs(&mut d.images, roots.path());
        d.monitors
            .expect_prepare()
            .times(1)
            .returning(|_| Ok(launch_ok()));
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let mut events = t.daemon.events.subscribe();

        let id = create(&t.daemon, container_request(&pod, "app"))
            .await
            .unwrap();
        let container = t.daemon.containers.get(&id).unwrap();
        assert_eq!(container.state, sandbox_core::ContainerState::Created);
        assert_eq!(container.pid, Some(4242));
        assert_eq!(container.image_ref, "sha256:aaaa");
        assert_eq!(
            t.daemon.container_names.get(&container.name).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(container.sandbox_id, pod);
        let bundle = Layout::bundle(&t.daemon.layout.container_dir(&id));
        let spec = std::fs::read_to_string(bundle.join("config.json")).unwrap();
        assert!(spec.contains("\"sleep\""), "{spec}");
        let event = events.try_recv().unwrap();
        assert_eq!(event.container_id, id);
        // A second container of the same name is refused, naming the holder.
        let again = create(&t.daemon, container_request(&pod, "app")).await;
        assert!(matches!(again, Err(Error::AlreadyExists(ref m)) if m.contains(&id)));
    }
}
