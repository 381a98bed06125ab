//! CreateContainer: merge the image's configuration with the request, mount
//! the root filesystem, write the bundle and let the monitor run the
//! runtime's `create` on the pod's handler.

use cri_spec::image_config::{resolve_user, ImageConfig};
use cri_spec::convert;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::layout::Layout;
use cri_spec::namespaces::{set_namespace, NamespaceSource};
use k8s_cri::v1 as cri;
use oci_shim::bundle::Bundle;
use oci_shim::monitor::{launch_alongside, MonitorConfig};
use oci_shim::runtime::RuntimeKind;
use oci_shim::spec::{ContainerSpec, MountSpec, NamespaceKind, PodRole, Propagation};
use sandbox_core::{Container, ContainerMetadata, Mount, MountPropagation, NamespaceMode, Sandbox};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    let image_config = ImageConfig::from_json(&image.config_json)
        .map_err(|e| Error::internal(format!("image {} configuration", image.id), e))?;

    let mut container = Container::new(
        sandbox_core::id::generate()?,
        &sandbox,
        ContainerMetadata::new(&meta.name, meta.attempt),
    );
    container.image = image_name.clone();
    container.image_ref = image.id.clone();
    container.command = config.command.clone();
    container.args = config.args.clone();
    container.labels = convert::map(&config.labels);
    container.annotations = convert::map(&config.annotations);
    container.tty = config.tty;
    container.stdin = config.stdin;
    container.stdin_once = config.stdin_once;
    container.runtime_handler = sandbox.runtime_handler.clone();
    container.stop_signal = image_config
        .stop_signal
        .clone()
        .unwrap_or_else(|| "SIGTERM".into());
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

    match daemon
        .container_names
        .reserve(&container.name, &container.id)
    {
        Ok(()) => {}
        Err(sandbox_core::Error::NameReserved { holder, .. }) => {
            return Err(Error::AlreadyExists(format!(
                "container {} already exists as {holder}",
                container.name
            )))
        }
        Err(e) => return Err(e.into()),
    }

    match build_and_create(daemon, &sandbox, &mut container, &config, &image_config).await {
        Ok(()) => {
            daemon.save_container(&container)?;
            let id = container.id.clone();
            daemon.containers.add(container)?;
            let updated = daemon.sandboxes.update(&sandbox_id, |s| {
                s.add_container(&id);
                s.clone()
            })?;
            daemon.save_sandbox(&updated)?;
            daemon.emit(&id, cri::ContainerEventType::ContainerCreatedEvent);
            Ok(id)
        }
        Err(e) => {
            tracing::warn!(container = %container.name, error = %e, "CreateContainer failed; undoing");
            if let Ok(runtime) = daemon.runtime(&container.runtime_handler) {
                let _ = runtime.delete(&container.id, true).await;
            }
            let _ = daemon.images.remove_rootfs(&container.id).await;
            let _ = tokio::fs::remove_dir_all(daemon.layout.container_dir(&container.id)).await;
            daemon.container_names.release(&container.name);
            Err(e)
        }
    }
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
    Ok(())
}

/// Mounts the root filesystem and writes the bundle's `config.json`: the
/// image's configuration merged with the request.
async fn write_bundle(
    daemon: &Arc<Daemon>,
    sandbox: &Sandbox,
    container: &mut Container,
    config: &cri::ContainerConfig,
    image: &ImageConfig,
    handler: &oci_shim::runtime::RuntimeHandlerConfig,
) -> Result<()> {
    let linux = config.linux.clone().unwrap_or_default();
    let security = linux.security_context.clone().unwrap_or_default();
    let rootfs = daemon
        .images
        // Writable underneath even for a read-only root: runc creates the
        // mount points (/proc, /dev, volumes) first, then remounts the root
        // read-only as `root.readonly` asks.
        .create_rootfs(&container.image_ref, &container.id, false)
        .await?;

    let argv = image.argv(&config.command, &config.args);
    if argv.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "container {}: no command: the request and the image give none",
            container.name
        )));
    }
    let mut spec = ContainerSpec::new(&rootfs.path, argv);
    spec.root.readonly = security.readonly_rootfs;
    let request_env: Vec<(String, String)> = config
        .envs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    spec.process.env = image.env(&request_env);
    spec.process.cwd = Some(config.working_dir.clone())
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    container.working_dir = spec.process.cwd.clone();
    container.env = spec.process.env.clone();
    spec.process.terminal = config.tty;
    container.privileged = security.privileged;

    // User: the request's uid (or name) wins over the image's User.
    let user = match (&security.run_as_user, security.run_as_username.as_str()) {
        (Some(uid), _) => {
            let uid = u32::try_from(uid.value).map_err(|_| {
                Error::InvalidArgument(format!("run_as_user {} is out of range", uid.value))
            })?;
            Some(uid.to_string())
        }
        (None, name) if !name.is_empty() => Some(name.to_string()),
        _ => {
            if security.run_as_group.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "container {}: run_as_group is set without run_as_user",
                    container.name
                )));
            }
            image.user.clone().filter(|u| !u.is_empty())
        }
    };
    if let Some(user) = user {
        let resolved = user_of(&rootfs.path, user, container).await?;
        let (uid, mut gid, mut groups) = (resolved.uid, resolved.gid, resolved.additional_gids);
        if let Some(g) = &security.run_as_group {
            gid = u32::try_from(g.value).map_err(|_| {
                Error::InvalidArgument(format!("run_as_group {} is out of range", g.value))
            })?;
        }
        for g in &security.supplemental_groups {
            let g = u32::try_from(*g).map_err(|_| {
                Error::InvalidArgument(format!("supplemental group {g} is out of range"))
            })?;
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        spec.process.user.uid = uid;
        spec.process.user.gid = gid;
        spec.process.user.additional_gids = groups;
    } else {
        spec.process.user.additional_gids = security
            .supplemental_groups
            .iter()
            .filter_map(|g| u32::try_from(*g).ok())
            .collect();
    }

    // Namespaces: the pod's network, IPC and UTS; PID as the request says.
    let infra_pid = sandbox.infra_container.as_ref().and_then(|c| c.pid);
    let on_gvisor = handler.kind == RuntimeKind::Runsc;
    let ns_opts = convert::namespace_options(security.namespace_options.as_ref());
    set_namespace(
        &mut spec,
        NamespaceKind::Network,
        match &sandbox.netns_path {
            Some(path) => NamespaceSource::Join(path.clone()),
            None => NamespaceSource::Host,
        },
    );
    let join_infra = |kind: &str| match (on_gvisor, infra_pid) {
        // gVisor keeps the pod's namespaces inside its sandbox; joining is
        // by the sandbox annotations, not by host paths.
        (true, _) | (false, None) => NamespaceSource::New,
        (false, Some(pid)) => {
            NamespaceSource::Join(PathBuf::from(format!("/proc/{pid}/ns/{kind}")))
        }
    };
    let pod_ns = &sandbox.namespace_options;
    set_namespace(
        &mut spec,
        NamespaceKind::Ipc,
        if pod_ns.ipc == NamespaceMode::Node {
            NamespaceSource::Host
        } else {
            join_infra("ipc")
        },
    );
    set_namespace(
        &mut spec,
        NamespaceKind::Uts,
        if pod_ns.network == NamespaceMode::Node {
            NamespaceSource::Host
        } else {
            join_infra("uts")
        },
    );
    let pid_mode = if pod_ns.pid == NamespaceMode::Node {
        NamespaceMode::Node
    } else {
        ns_opts.pid
    };
    set_namespace(
        &mut spec,
        NamespaceKind::Pid,
        match pid_mode {
            NamespaceMode::Node => NamespaceSource::Host,
            NamespaceMode::Pod => join_infra("pid"),
            NamespaceMode::Container => NamespaceSource::New,
            NamespaceMode::Target => {
                let target = ns_opts.target_id.clone().unwrap_or_default();
                let pid = daemon
                    .containers
                    .get(&target)
                    .ok()
                    .and_then(|c| c.pid)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "container {}: PID namespace target {target:?} is not a running container",
                            container.name
                        ))
                    })?;
                NamespaceSource::Join(PathBuf::from(format!("/proc/{pid}/ns/pid")))
            }
        },
    );

    // Volumes.
    for m in &config.mounts {
        let mount = volume(m)
            .map_err(|e| Error::InvalidArgument(format!("container {}: {e}", container.name)))?;
        let (host, propagation) = (mount.host_path.clone(), mount.propagation);
        tokio::task::spawn_blocking(move || {
            super::mount_propagation::prepare(&super::mount_propagation::Kernel, &host, propagation)
        })
        .await
        .map_err(|e| Error::internal(format!("container {}", container.name), e))?
        .map_err(|e| Error::internal(format!("container {}", container.name), e))?;
        spec.mounts.push(MountSpec {
            destination: m.container_path.clone(),
            kind: "bind".into(),
            source: mount.host_path.to_string_lossy().into_owned(),
            options: {
                let mut o = vec!["rbind".to_string()];
                if m.readonly {
                    o.push("ro".into());
                }
                o
            },
            propagation: Some(match mount.propagation {
                MountPropagation::Private => Propagation::Private,
                MountPropagation::HostToContainer => Propagation::HostToContainer,
                MountPropagation::Bidirectional => Propagation::Bidirectional,
            }),
        });
        container.mounts.push(mount);
    }

    // The pod's resolv.conf, hostname and hosts, unless a volume of the
    // container's own takes their place.
    let pod_dir = daemon.layout.sandbox_dir(&sandbox.id);
    for (file, destination) in crate::pod::files::MOUNTS {
        let source = pod_dir.join(file);
        if source.exists()
            && !config
                .mounts
                .iter()
                .any(|m| m.container_path == destination)
        {
            spec.mounts.push(MountSpec {
                destination: destination.to_string(),
                kind: "bind".into(),
                source: source.to_string_lossy().into_owned(),
                options: vec![
                    "rbind".into(),
                    if security.readonly_rootfs { "ro" } else { "rw" }.into(),
                ],
                propagation: Some(Propagation::Private),
            });
        }
    }
    spec.cgroups_path = Some(daemon.cgroup_path(&sandbox.cgroup_parent, &container.id)?);
    if let Some(resources) = &linux.resources {
        container.resources = Some(cri_spec::resources::to_record(resources));
        spec.resources =
            Some(cri_spec::resources::to_oci(resources).map_err(|e| {
                Error::InvalidArgument(format!("container {}: {e}", container.name))
            })?);
        if resources.oom_score_adj != 0 {
            spec.process.oom_score_adj = i32::try_from(resources.oom_score_adj).ok();
        }
    }
    // After resources: privilege adds a device rule to them.
    cri_spec::security::apply(&mut spec, &security, cri_spec::security::apparmor_enabled())
        .map_err(|e| Error::InvalidArgument(format!("container {}: {e}", container.name)))?;
    if !config.devices.is_empty() {
        let mut rules = Vec::new();
        for device in &config.devices {
            let (node, rule) = cri_spec::devices::to_oci(device).map_err(|e| {
                Error::InvalidArgument(format!("container {}: {e}", container.name))
            })?;
            spec.devices.push(node);
            rules.push(rule);
        }
        let mut resources = spec.resources.take().unwrap_or_default();
        let mut all = resources.devices().clone().unwrap_or_default();
        all.extend(rules);
        resources.set_devices(Some(all));
        spec.resources = Some(resources);
    }
    spec.pod_role = Some(PodRole::Container {
        sandbox_id: sandbox.id.clone(),
    });
    // Only what the handler allows: runtimes act on annotations.
    spec.annotations = daemon.allowed_annotations(&sandbox.runtime_handler).filter(
        &format!("container {}", container.name),
        &container.annotations,
    );

    let host = if on_gvisor {
        cri_spec::security::gvisor_limits(daemon.host)
    } else {
        daemon.host
    };
    let oci = spec.to_oci(&host)?;
    let bundle_dir = Layout::bundle(&daemon.layout.container_dir(&container.id));
    tokio::task::spawn_blocking(move || Bundle::write(bundle_dir, &oci))
        .await
        .map_err(|e| Error::internal(format!("container {}", container.id), e))??;
    Ok(())
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

/// A CRI volume: the host path resolved (a symlink is followed, as kubelet's
/// hostPath volumes may be symlinks) and must exist.
fn volume(m: &cri::Mount) -> std::result::Result<Mount, String> {
    if m.container_path.is_empty() || !m.container_path.starts_with('/') {
        return Err(format!(
            "mount container_path {:?} is not absolute",
            m.container_path
        ));
    }
    let host = Path::new(&m.host_path);
    let resolved = std::fs::canonicalize(host)
        .map_err(|e| format!("mount host_path {}: {e}", host.display()))?;
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            volume(&m).unwrap().host_path,
            target.canonicalize().unwrap()
        );
        let missing = cri::Mount {
            container_path: "/data".into(),
            host_path: "/nonexistent/x".into(),
            ..Default::default()
        };
        assert!(volume(&missing).unwrap_err().contains("/nonexistent/x"));
    }
}

#[cfg(test)]
mod verb_tests {
    use super::*;
    use crate::testing::{container_request, expect_rootfs, launch_failing, launch_ok, ready_pod};

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
        assert!(t.daemon.sandboxes.get(&pod).unwrap().containers.is_empty());
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
        assert!(t
            .daemon
            .sandboxes
            .get(&pod)
            .unwrap()
            .containers
            .contains(&id));
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
