//! RunPodSandbox: decide trust, pin the network namespace, start the infra
//! container on the decided handler, and record the pod.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::metrics::TrustOutcome;
use cri_api::v1 as cri;
use cri_spec::convert;
use cri_spec::namespaces::{infra_namespaces, PodNamespaces};
use netns::NetNs;
use oci_shim::bundle::Bundle;
use oci_shim::monitor::{launch_alongside, MonitorConfig};
use oci_shim::spec::{ContainerSpec, PodRole};
use sandbox_core::{Container, ContainerMetadata, NamespaceMode, PodMetadata, Sandbox};
use std::sync::Arc;
use trust_policy::PodTrustInput;

/// Runs a pod sandbox and returns its id.
pub async fn run(daemon: &Arc<Daemon>, request: cri::RunPodSandboxRequest) -> Result<String> {
    let _busy = daemon.pod_calls.enter();
    let config = request
        .config
        .ok_or_else(|| Error::InvalidArgument("RunPodSandbox: config is required".into()))?;
    let (mut sandbox, sysctls) = new_sandbox(daemon, &config)?;
    let decision = decide_trust(daemon, &request.runtime_handler, &config, &sandbox)?;
    sandbox.trusted = decision.trusted;
    sandbox.trust_reason = decision.reason;
    sandbox.runtime_handler = decision.handler;
    check_user_namespace(daemon, &sandbox)?;

    reserve_name(daemon, &sandbox).await?;
    let _guard = daemon.locks.lock(&sandbox.id).await;
    let dns = config.dns_config.clone().map(|d| super::files::DnsConfig {
        servers: d.servers,
        searches: d.searches,
        options: d.options,
    });
    match start(daemon, &mut sandbox, dns, sysctls).await {
        Ok(()) => {
            crate::fault::point("run_pod_sandbox.before_record");
            daemon.save_sandbox(&sandbox)?;
            let id = sandbox.id.clone();
            let has_infra = sandbox.infra_container.is_some();
            daemon.sandboxes.add(sandbox)?;
            if has_infra {
                crate::watch::watch_infra(daemon, &id);
            }
            Ok(id)
        }
        Err(e) => {
            tracing::warn!(pod = %sandbox.name, error = %e, "RunPodSandbox failed; undoing");
            undo(daemon, &sandbox).await;
            Err(e)
        }
    }
}

/// The pod the request describes, checked (metadata, ports, sysctls,
/// cgroup parent), with a fresh id; and its sysctls.
fn new_sandbox(
    daemon: &Daemon,
    config: &cri::PodSandboxConfig,
) -> Result<(Sandbox, std::collections::BTreeMap<String, String>)> {
    let meta = config.metadata.clone().ok_or_else(|| {
        Error::InvalidArgument("RunPodSandbox: config.metadata is required".into())
    })?;
    for (field, value) in [
        ("name", &meta.name),
        ("namespace", &meta.namespace),
        ("uid", &meta.uid),
    ] {
        if value.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "RunPodSandbox: config.metadata.{field} is required"
            )));
        }
    }
    let invalid =
        |e: &dyn std::fmt::Display| Error::InvalidArgument(format!("pod {}: {e}", meta.name));
    // The kernel's limit (HOST_NAME_MAX); refused here rather than by
    // sethostname(2) halfway through making the pod.
    if config.hostname.len() > 64 || config.hostname.contains('\0') {
        return Err(invalid(&format_args!(
            "hostname of {} bytes: at most 64, without NUL",
            config.hostname.len()
        )));
    }
    let linux = config.linux.clone().unwrap_or_default();
    let security = linux.security_context.clone().unwrap_or_default();
    let mut namespaces = convert::namespace_options(security.namespace_options.as_ref());
    namespaces.user = cri_spec::user_namespace::user_namespace(
        security
            .namespace_options
            .as_ref()
            .and_then(|o| o.userns_options.as_ref()),
    )
    .map_err(|e| invalid(&e))?;
    let sysctls = cri_spec::sysctls::validate(
        &linux.sysctls,
        namespaces.network == NamespaceMode::Node,
        namespaces.ipc == NamespaceMode::Node,
    )
    .map_err(|e| invalid(&e))?;
    daemon
        .config
        .runtime
        .cgroup_driver
        .check_parent(&linux.cgroup_parent)
        .map_err(|e| invalid(&format!("linux.{e}")))?;
    let mut sandbox = Sandbox::new(
        sandbox_core::id::generate()?,
        PodMetadata::new(&meta.name, &meta.namespace, &meta.uid, meta.attempt),
    );
    sandbox.port_mappings =
        convert::port_mappings(&config.port_mappings).map_err(|e| invalid(&e))?;
    sandbox.log_dir = config.log_directory.clone().into();
    sandbox.labels = convert::map(&config.labels);
    sandbox.annotations = convert::map(&config.annotations);
    sandbox.cgroup_parent = linux.cgroup_parent.clone();
    sandbox.privileged = security.privileged;
    sandbox.hostname = config.hostname.clone();
    sandbox.namespace_options = namespaces;
    Ok((sandbox, sysctls))
}

/// The trust decision for the pod: which handler, and why (logged, and
/// counted for the metrics).
fn decide_trust(
    daemon: &Daemon,
    runtime_handler: &str,
    config: &cri::PodSandboxConfig,
    sandbox: &Sandbox,
) -> Result<trust_policy::Decision> {
    let namespaces = &sandbox.namespace_options;
    let mut input = PodTrustInput::new(&config.annotations);
    input.runtime_handler = runtime_handler;
    input.privileged = sandbox.privileged;
    input.host_network = namespaces.network == NamespaceMode::Node;
    input.host_pid = namespaces.pid == NamespaceMode::Node;
    input.host_ipc = namespaces.ipc == NamespaceMode::Node;
    input.user_namespace = namespaces.user.is_some();
    let decided = daemon.policy().decide(&input);
    daemon.metrics.trust_decision(match &decided {
        Ok(d) if d.trusted => TrustOutcome::Trusted,
        Ok(_) => TrustOutcome::Untrusted,
        Err(_) => TrustOutcome::Rejected,
    });
    let decision = decided.map_err(|e| match e {
        trust_policy::DecisionError::PrivilegedUntrustedRejected { .. } => {
            Error::FailedPrecondition(format!("pod {}: {e}", sandbox.name))
        }
        other => Error::InvalidArgument(format!("pod {}: {other}", sandbox.name)),
    })?;
    tracing::info!(
        pod = %sandbox.name,
        id = %sandbox.id,
        handler = %decision.handler,
        trusted = decision.trusted,
        reason = %decision.reason,
        "trust decision"
    );
    Ok(decision)
}

/// Refuses a pod with a user namespace on a handler that cannot run one
/// (kubelet checks Status first; this is for pods the trust policy sent
/// elsewhere, and for clients that do not check).
fn check_user_namespace(daemon: &Daemon, sandbox: &Sandbox) -> Result<()> {
    if sandbox.namespace_options.user.is_none() {
        return Ok(());
    }
    let handlers = daemon.handlers();
    match handlers.get(&sandbox.runtime_handler) {
        Some(h) if h.user_namespaces() => Ok(()),
        _ => Err(Error::FailedPrecondition(format!(
            "pod {}: runtime handler {:?} (chosen because: {}) cannot run pods with a user \
             namespace (hostUsers: false)",
            sandbox.name, sandbox.runtime_handler, sandbox.trust_reason
        ))),
    }
}

/// Reserves the pod's name. A name held by a pod that is no longer ready
/// (or no longer known) is taken back, the stale pod removed first, as CRI-O
/// does; a name held by a ready pod is a live duplicate.
async fn reserve_name(daemon: &Arc<Daemon>, sandbox: &Sandbox) -> Result<()> {
    match daemon.pod_names.reserve(&sandbox.name, &sandbox.id) {
        Ok(()) => Ok(()),
        Err(sandbox_core::Error::NameReserved { holder, .. }) => {
            match daemon.sandboxes.get(&holder) {
                Ok(old) if !old.is_stopped() => Err(Error::AlreadyExists(format!(
                    "pod {} already exists as {holder}",
                    sandbox.name
                ))),
                Ok(_) => {
                    tracing::info!(pod = %sandbox.name, stale = %holder, "removing the stale pod that holds the name");
                    super::remove::remove(daemon, &holder).await?;
                    daemon.pod_names.reserve(&sandbox.name, &sandbox.id)?;
                    Ok(())
                }
                // Held by an id no pod has: left by a creation that died.
                // Retries of a creation in flight never get here (they
                // join it, see `crate::creations`).
                Err(_) => {
                    daemon.pod_names.release_held(&sandbox.name, &holder);
                    daemon.pod_names.reserve(&sandbox.name, &sandbox.id)?;
                    Ok(())
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the network namespace, attaches it (CNI ADD) and makes what
/// holds the pod's other namespaces: the infra container, or pins.
///
/// Neither holder touches the network namespace beyond joining it by path
/// and CNI only configures it, so on runc the two run at once and the pod
/// is ready after the slower of them rather than after both. They stay in
/// sequence where one may see the other half-done: on gVisor (whose host
/// network may read the interfaces once at boot) and for pods with `net.*`
/// sysctls (which may name the interface CNI is still creating).
async fn start(
    daemon: &Arc<Daemon>,
    sandbox: &mut Sandbox,
    dns: Option<super::files::DnsConfig>,
    sysctls: std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let host_network = sandbox.namespace_options.network == NamespaceMode::Node;
    if sandbox.namespace_options.user.is_some() {
        pin_user_namespaces(daemon, sandbox).await?;
    } else if !host_network {
        let pins = daemon.pins.clone();
        let id = sandbox.id.clone();
        let ns = tokio::task::spawn_blocking(move || NetNs::create(&pins, &id))
            .await
            .map_err(|e| Error::internal(format!("pod {}", sandbox.id), e))??;
        sandbox.netns_path = Some(ns.path().to_path_buf());
        crate::fault::point("run_pod_sandbox.netns_pinned");
    }
    let handler = daemon.handler(&sandbox.runtime_handler)?;
    let overlap = handler.kind == oci_shim::runtime::RuntimeKind::Runc
        && !sysctls.keys().any(|k| k.starts_with("net."));
    let cni_dns = dns.clone().map(|d| cni::Dns {
        servers: d.servers,
        searches: d.searches,
        options: d.options,
    });
    let infra_needed = needs_infra(daemon, sandbox, &handler, &sysctls);
    // runsc ignores the spec's sysctls: the daemon writes the pod's network
    // ones itself (crate::gvisor).
    let gvisor_sysctls =
        (handler.kind == oci_shim::runtime::RuntimeKind::Runsc).then(|| sysctls.clone());
    let shared: &Sandbox = sandbox;
    let attach = async {
        if host_network {
            Ok(Vec::new())
        } else {
            super::release::release_conflicting(daemon, shared).await;
            super::network::setup(daemon, shared, cni_dns).await
        }
    };
    let hold = async {
        // After CNI (gVisor pods never overlap the two) and before the
        // sandbox boots, so a sysctl the namespace lacks fails fast.
        if let Some(sysctls) = &gvisor_sysctls {
            crate::gvisor::apply_network_sysctls(shared, sysctls).await?;
        }
        if infra_needed {
            start_infra(daemon, shared, handler, sysctls)
                .await
                .map(|(pid, argv)| Holder::Infra { pid, argv })
        } else if shared.userns_path.is_some() {
            // Pinned with the user namespace already.
            Ok(Holder::Pins {
                ipc: shared.ipc_path.clone(),
                uts: shared.uts_path.clone(),
            })
        } else {
            pin_namespaces(daemon, shared).await
        }
    };
    let (ips, holder) = if overlap {
        tokio::join!(attach, hold)
    } else {
        let ips = attach.await?;
        (Ok(ips), hold.await)
    };
    // Both ran to the end, so `undo` finds whatever either left.
    sandbox.pod_ips = ips?;
    let holder = holder?;
    crate::fault::point("run_pod_sandbox.infra_started");

    let hostname = if host_network {
        node_hostname()
    } else {
        sandbox.hostname.clone()
    };
    let dir = daemon.layout.sandbox_dir(&sandbox.id);
    let files = super::files::write(
        &dir,
        &hostname,
        &dns.unwrap_or_default(),
        sandbox.pod_ips.first().copied(),
        host_network,
    )
    .map_err(|e| Error::internal(format!("pod {} files", sandbox.id), e))?;
    if let Some((uid, gid)) = sandbox
        .namespace_options
        .user
        .as_ref()
        .and_then(|u| u.host_root())
    {
        files
            .chown(uid, gid)
            .map_err(|e| Error::internal(format!("pod {} files", sandbox.id), e))?;
    }
    sandbox.resolv_path = Some(files.resolv_conf);

    let now = sandbox_core::timestamp::now();
    match holder {
        Holder::Infra { pid, argv } => {
            let mut infra = Container::new(
                sandbox.id.clone(),
                sandbox,
                ContainerMetadata::new("POD", sandbox.metadata.attempt),
            );
            infra.name = sandbox.name.clone();
            infra.command = argv;
            infra.log_path = dir.join("pause.log");
            infra.runtime_handler = sandbox.runtime_handler.clone();
            infra.mark_started(now, pid)?;
            sandbox.infra_container = Some(infra);
        }
        Holder::Pins { ipc, uts } => {
            sandbox.ipc_path = ipc;
            sandbox.uts_path = uts;
        }
    }
    sandbox.mark_ready(now)?;
    Ok(())
}

/// What holds a pod's IPC, UTS (and PID) namespaces open.
enum Holder {
    /// The infra container, with its pid and command.
    Infra { pid: i32, argv: Vec<String> },
    /// Pins; `None` where the pod uses the host's namespace.
    Pins {
        ipc: Option<std::path::PathBuf>,
        uts: Option<std::path::PathBuf>,
    },
}

/// Whether the pod needs an infra container, as CRI-O decides with
/// `drop_infra_ctr`: a sandboxing runtime's sandbox *is* its infra
/// container; a PID namespace shared by the pod's containers needs an init
/// to hold it; the runtime applies sysctls in the namespaces it makes (and
/// refuses ones the pod's host namespaces would expose); and a privileged
/// pod's first sysfs mount decides whether /sys is writable for every
/// container of the network namespace.
fn needs_infra(
    daemon: &Daemon,
    sandbox: &Sandbox,
    handler: &oci_shim::runtime::RuntimeHandlerConfig,
    sysctls: &std::collections::BTreeMap<String, String>,
) -> bool {
    !daemon.config.runtime.drop_infra_container
        || handler.kind != oci_shim::runtime::RuntimeKind::Runc
        || sandbox.namespace_options.pid == NamespaceMode::Pod
        || !sysctls.is_empty()
        || sandbox.privileged
}

/// Makes the pod's user namespace and, owned by it, its network, IPC and
/// UTS namespaces, all pinned (see `netns::PinDir::create_user_pod`). The
/// pins are recorded on the pod at once, so `undo` removes them if a later
/// step fails.
async fn pin_user_namespaces(daemon: &Arc<Daemon>, sandbox: &mut Sandbox) -> Result<()> {
    let Some(user) = sandbox.namespace_options.user.clone() else {
        return Ok(());
    };
    let ranges = |ranges: &[sandbox_core::IdMapping]| {
        ranges
            .iter()
            .map(|r| netns::IdRange {
                container_id: r.container_id,
                host_id: r.host_id,
                length: r.length,
            })
            .collect()
    };
    let options = &sandbox.namespace_options;
    let own_network = options.network != NamespaceMode::Node;
    let pod = netns::UserPod {
        uids: ranges(&user.uids),
        gids: ranges(&user.gids),
        network: own_network,
        ipc: options.ipc != NamespaceMode::Node,
        uts: own_network.then(|| sandbox.hostname.clone()),
    };
    let pins = daemon.pins.clone();
    let id = sandbox.id.clone();
    let made = tokio::task::spawn_blocking(move || pins.create_user_pod(&id, &pod))
        .await
        .map_err(|e| Error::internal(format!("pod {}", sandbox.id), e))??;
    sandbox.userns_path = Some(made.user);
    sandbox.netns_path = made.network;
    sandbox.ipc_path = made.ipc;
    sandbox.uts_path = made.uts;
    crate::fault::point("run_pod_sandbox.netns_pinned");
    Ok(())
}

/// Pins the pod's own IPC and UTS namespaces (not the host's it asked
/// for); on failure neither pin is left.
async fn pin_namespaces(daemon: &Arc<Daemon>, sandbox: &Sandbox) -> Result<Holder> {
    let pins = daemon.pins.clone();
    let id = sandbox.id.clone();
    let ipc = sandbox.namespace_options.ipc != NamespaceMode::Node;
    // UTS follows the network: a host-network pod has the host's name.
    let uts = (sandbox.namespace_options.network != NamespaceMode::Node).then(|| {
        netns::PinnedKind::Uts {
            hostname: sandbox.hostname.clone(),
        }
    });
    tokio::task::spawn_blocking(move || {
        let ipc = ipc
            .then(|| pins.create_pinned(&netns::PinnedKind::Ipc, &id))
            .transpose()?;
        let uts = match uts.map(|kind| pins.create_pinned(&kind, &id)).transpose() {
            Ok(uts) => uts,
            Err(e) => {
                let _ = pins.remove(&netns::PinnedKind::Ipc.pin_name(&id));
                return Err(e);
            }
        };
        Ok::<_, netns::Error>(Holder::Pins { ipc, uts })
    })
    .await
    .map_err(|e| Error::internal(format!("pod {}", sandbox.id), e))?
    .map_err(Error::from)
}

/// Creates and starts the infra container in the pod's namespaces; returns
/// its pid and command.
async fn start_infra(
    daemon: &Arc<Daemon>,
    sandbox: &Sandbox,
    handler: oci_shim::runtime::RuntimeHandlerConfig,
    sysctls: std::collections::BTreeMap<String, String>,
) -> Result<(i32, Vec<String>)> {
    let dir = daemon.layout.sandbox_dir(&sandbox.id);
    let mut monitor_config = MonitorConfig::new(
        &sandbox.id,
        Layout::bundle(&dir),
        Layout::monitor(&dir),
        dir.join("pause.log"),
        handler.clone(),
    );
    monitor_config.monitor_binary = daemon.monitor_binary.clone();
    // The monitor starts up while the bundle is written (see CreateContainer).
    let (monitor, argv) = launch_alongside(
        daemon.monitors.as_ref(),
        &monitor_config,
        write_infra_bundle(daemon, sandbox, &handler, sysctls),
    )
    .await?;
    daemon
        .monitors
        .start(monitor.id(), monitor.state_dir())
        .await?;
    Ok((monitor.container_pid(), argv))
}

/// The node's hostname, which host-network pods carry.
fn node_hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes the infra container's bundle and returns its command.
async fn write_infra_bundle(
    daemon: &Arc<Daemon>,
    sandbox: &Sandbox,
    handler: &oci_shim::runtime::RuntimeHandlerConfig,
    sysctls: std::collections::BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let host_network = sandbox.namespace_options.network == NamespaceMode::Node;
    let dir = daemon.layout.sandbox_dir(&sandbox.id);
    let (rootfs, argv) = infra_root(daemon, sandbox).await?;
    let mut spec = ContainerSpec::new(&rootfs, argv.clone());
    spec.root.readonly = true;
    // pause needs no privilege at all.
    spec.process.capabilities.clear();
    spec.process.no_new_privileges = true;
    infra_namespaces(
        &mut spec,
        &PodNamespaces {
            netns: sandbox.netns_path.clone(),
            options: sandbox.namespace_options.clone(),
            ipc_pin: sandbox.ipc_path.clone(),
            uts_pin: sandbox.uts_path.clone(),
            userns_pin: sandbox.userns_path.clone(),
            ..PodNamespaces::default()
        },
    );
    if !host_network && !sandbox.hostname.is_empty() {
        spec.hostname = Some(sandbox.hostname.clone());
    } else if host_network && handler.kind == oci_shim::runtime::RuntimeKind::Runsc {
        // gVisor's UTS namespace is always its own, named from this spec
        // ("?" without one): a host-network pod gets the node's name, as
        // on runc, where it shares the host's UTS namespace.
        spec.hostname = Some(node_hostname());
    }
    // Set once in the pod's IPC and network namespaces, which its
    // containers join.
    let ipc_sysctls = sysctls.keys().any(|k| !k.starts_with("net."));
    if ipc_sysctls && handler.kind == oci_shim::runtime::RuntimeKind::Runsc {
        tracing::warn!(pod = %sandbox.name, "gVisor keeps IPC inside its sandbox: the pod's IPC sysctls are ignored");
    }
    spec.sysctls = sysctls;
    if sandbox.privileged {
        // sysfs has one superblock per network namespace, and the first
        // mount decides whether it is read-only: the infra container mounts
        // it first, so a read-only one here would make every privileged
        // container's /sys read-only too.
        for mount in spec.mounts.iter_mut().filter(|m| m.kind == "sysfs") {
            for option in mount.options.iter_mut().filter(|o| *o == "ro") {
                *option = "rw".into();
            }
        }
    }
    spec.cgroups_path = Some(daemon.cgroup_path(&sandbox.cgroup_parent, &sandbox.id)?);
    spec.pod_role = Some(PodRole::Sandbox);
    // Only what the handler allows: runtimes act on annotations.
    spec.annotations = daemon
        .allowed_annotations(&sandbox.runtime_handler)
        .filter(&format!("pod {}", sandbox.name), &sandbox.annotations);

    let oci = spec.to_oci(&daemon.host)?;
    let bundle_dir = Layout::bundle(&dir);
    tokio::task::spawn_blocking(move || Bundle::write(bundle_dir, &oci))
        .await
        .map_err(|e| Error::internal(format!("pod {}", sandbox.id), e))??;
    Ok(argv)
}

/// The infra container's root and command: the built-in pause program, or
/// the configured `pause_image` (pulled when missing, mounted read-only).
///
/// For a pod with a user namespace, a `pause_image` root is idmapped and
/// bound where the pod's mapped root can reach it (see
/// `container::userns_root`); the built-in one is world-readable already.
async fn infra_root(
    daemon: &Arc<Daemon>,
    sandbox: &Sandbox,
) -> Result<(std::path::PathBuf, Vec<String>)> {
    let id = &sandbox.id;
    let image_name = &daemon.config.image.pause_image;
    if image_name.is_empty() {
        return Ok((
            daemon.pause_rootfs.clone(),
            vec![crate::pause::PAUSE_PATH.to_string()],
        ));
    }
    let image = match daemon.images.status(image_name)? {
        Some(image) => image,
        None => daemon.images.pull(image_name, None).await?,
    };
    let config = cri_spec::image_config::ImageConfig::from_json(&image.config_json)
        .map_err(|e| Error::internal(format!("pause image {image_name}"), e))?;
    let argv = config.argv(&[], &[]);
    if argv.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "pause image {image_name} names no command"
        )));
    }
    // Writable underneath: runc creates mount points (/proc, /dev) before it
    // makes the root read-only as the spec says.
    let idmap = sandbox.userns_path.clone().zip(
        sandbox
            .namespace_options
            .user
            .as_ref()
            .and_then(|u| u.host_root()),
    );
    let Some((userns, root)) = idmap else {
        let rootfs = daemon.images.create_rootfs(&image.id, id, false).await?;
        return Ok((rootfs.path, argv));
    };
    let idmap = image_store::RootFsIdmap { userns, root };
    let rootfs = daemon
        .images
        .create_rootfs_mapped(&image.id, id, false, idmap)
        .await?;
    let dir = daemon.layout.sandbox_dir(id);
    let bound = crate::container::userns_root::bind(&dir, &rootfs.path, root).await?;
    Ok((bound, argv))
}

/// Undoes whatever a failed RunPodSandbox made: the infra container, the
/// network namespace, the directory and the name.
async fn undo(daemon: &Arc<Daemon>, sandbox: &Sandbox) {
    if let Ok(runtime) = daemon.runtime(&sandbox.runtime_handler) {
        let _ = runtime.delete(&sandbox.id, true).await;
    }
    if sandbox.netns_path.is_some() {
        let _ = super::network::teardown(daemon, sandbox).await;
    }
    let pins = daemon.pins.clone();
    let id = sandbox.id.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for name in super::release::pin_names(&id) {
            let _ = pins.remove(&name);
        }
    })
    .await;
    crate::container::userns_root::release(&daemon.layout.sandbox_dir(&sandbox.id)).await;
    let _ = daemon.images.remove_rootfs(&sandbox.id).await;
    let _ = tokio::fs::remove_dir_all(daemon.layout.sandbox_dir(&sandbox.id)).await;
    daemon.pod_names.release_held(&sandbox.name, &sandbox.id);
}

#[cfg(test)]
mod verb_tests {
    use super::*;
    use crate::testing::{launch_failing, launch_ok, network_status, pod_request, Doubles};

    fn bridge_failure() -> cni::Error {
        cni::Error::PluginFailed {
            plugin: "bridge".into(),
            command: "ADD",
            container_id: "x".into(),
            status: "exit status: 1".into(),
            detail: "failed to set bridge addr".into(),
        }
    }

    /// Everything a failed RunPodSandbox may leave: none of it may stay.
    fn assert_nothing_left(t: &crate::testing::TestDaemon, name: &str) {
        let daemon = &t.daemon;
        assert_eq!(
            daemon
                .pod_names
                .get(&format!("k8s_POD_{name}_test_{name}-uid_0")),
            None
        );
        assert!(daemon
            .sandboxes
            .list(&sandbox_core::SandboxFilter::default())
            .is_empty());
        let pods = std::fs::read_dir(daemon.layout.sandbox_dir("x").parent().unwrap())
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(pods, 0, "a pod directory is left");
        let pins = daemon.pins.list().unwrap();
        assert!(pins.is_empty(), "pins left: {pins:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_cni_failure_undoes_each_resource_once_and_frees_the_name() {
        let mut d = Doubles::new();
        d.network
            .expect_setup()
            .times(1)
            .returning(|_| Err(bridge_failure()));
        d.network.expect_teardown().times(1).returning(|_| Ok(()));
        // On runc the infra container starts beside the ADD, so it is made
        // and must be deleted again.
        d.monitors
            .expect_prepare()
            .times(1)
            .returning(|_| Ok(launch_ok()));
        d.monitors.expect_start().times(1).returning(|_, _| Ok(()));
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

        let err = run(&t.daemon, pod_request("web")).await.unwrap_err();
        let status = tonic::Status::from(err);
        assert!(status.message().contains("bridge"), "{status}");
        assert_nothing_left(&t, "web");
        // The pin was made for real (on the double), then unmounted.
        use netns::syscall::CallKind;
        assert!(t.netns.kinds().contains(&CallKind::Unshare));
        assert!(t.netns.kinds().contains(&CallKind::Umount2));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_runtime_failure_undoes_each_resource_once_and_frees_the_name() {
        let mut d = Doubles::new();
        d.network
            .expect_setup()
            .times(1)
            .returning(|_| Ok(network_status()));
        d.network.expect_teardown().times(1).returning(|_| Ok(()));
        d.monitors
            .expect_prepare()
            .times(1)
            .returning(|_| Ok(launch_failing()));
        d.monitors.expect_start().never();
        d.runc.expect_delete().times(1).returning(|_, _| Ok(()));
        d.images
            .expect_remove_rootfs()
            .times(1)
            .returning(|_| Ok(()));
        let t = d.build().await;

        let err = run(&t.daemon, pod_request("db")).await.unwrap_err();
        assert!(err.to_string().contains("exec format error"), "{err}");
        assert_nothing_left(&t, "db");
    }

    // One thread: the exit watcher the verb spawns runs only once the test
    // yields, after it has looked at the ready pod.
    #[tokio::test]
    async fn a_pod_that_starts_is_ready_until_its_infra_container_exits() {
        let mut d = infra_starts();
        d.monitors
            .expect_wait()
            .times(1)
            .returning(|_, _| Ok(crate::testing::exit(137)));
        let t = d.build().await;

        let id = run(&t.daemon, pod_request("api")).await.unwrap();
        let pod = t.daemon.sandboxes.get(&id).unwrap();
        assert_eq!(pod.state, sandbox_core::SandboxState::Ready);
        assert_eq!(
            pod.pod_ips,
            ["10.88.0.7".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(pod.runtime_handler, "runc");
        assert_eq!(
            t.daemon.pod_names.get(&pod.name).as_deref(),
            Some(id.as_str())
        );
        assert!(t
            .daemon
            .layout
            .sandbox_dir(&id)
            .join("resolv.conf")
            .exists());
        assert_eq!(t.daemon.pins.list().unwrap(), std::slice::from_ref(&id));

        // The infra container dies: the watcher makes the pod not ready.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let pod = t.daemon.sandboxes.get(&id).unwrap();
        assert_eq!(pod.state, sandbox_core::SandboxState::NotReady);
        assert_eq!(pod.infra_container.as_ref().unwrap().exit_code, Some(137));
    }

    /// Doubles for a pod whose network comes up and whose infra container
    /// is created and started once.
    fn infra_starts() -> Doubles {
        let mut d = Doubles::new();
        d.network
            .expect_setup()
            .times(1)
            .returning(|_| Ok(network_status()));
        d.monitors
            .expect_prepare()
            .times(1)
            .returning(|_| Ok(launch_ok()));
        d.monitors.expect_start().times(1).returning(|_, _| Ok(()));
        d
    }

    /// A pod as kubelet sends one by default: each container with a PID
    /// namespace of its own.
    fn own_pid_pod(name: &str) -> cri::RunPodSandboxRequest {
        let mut request = pod_request(name);
        let config = request.config.as_mut().unwrap();
        config.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        request
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_pod_without_a_shared_pid_namespace_runs_no_infra_container_and_pins_ipc_and_uts() {
        let mut d = Doubles::new();
        d.network
            .expect_setup()
            .times(1)
            .returning(|_| Ok(network_status()));
        d.network.expect_teardown().times(1).returning(|_| Ok(()));
        d.monitors.expect_prepare().never();
        d.monitors.expect_start().never();
        d.monitors.expect_wait().never();
        d.images.expect_remove_rootfs().returning(|_| Ok(()));
        let t = d.build().await;

        let id = run(&t.daemon, own_pid_pod("lean")).await.unwrap();
        let pod = t.daemon.sandboxes.get(&id).unwrap();
        assert_eq!(pod.state, sandbox_core::SandboxState::Ready);
        assert!(pod.infra_container.is_none());
        let pins = t.daemon.pins.path();
        assert_eq!(pod.ipc_path, Some(pins.join(format!("{id}.ipc"))));
        assert_eq!(pod.uts_path, Some(pins.join(format!("{id}.uts"))));
        use netns::syscall::Call;
        assert!(t
            .netns
            .calls()
            .iter()
            .any(|c| c.call == Call::SetHostname("lean".into())));
        let mut listed = t.daemon.pins.list().unwrap();
        listed.sort();
        assert_eq!(
            listed,
            [id.clone(), format!("{id}.ipc"), format!("{id}.uts")]
        );

        // Stopping releases every pin (in the background), removal the rest.
        crate::pod::remove::remove(&t.daemon, &id).await.unwrap();
        crate::testing::removals_released(&t.daemon).await;
    }

    /// A network whose ADDs take 50 ms each and count how many run at once.
    #[derive(Default)]
    struct CountingNetwork {
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        added: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl cni::PodNetwork for CountingNetwork {
        async fn setup(&self, _: &cni::PodNetworkRequest) -> cni::Result<cni::NetworkStatus> {
            use std::sync::atomic::Ordering::SeqCst;
            self.most
                .fetch_max(self.now.fetch_add(1, SeqCst) + 1, SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            self.now.fetch_sub(1, SeqCst);
            self.added.fetch_add(1, SeqCst);
            Ok(network_status())
        }
        async fn teardown(&self, _: &cni::PodNetworkRequest) -> cni::Result<()> {
            Ok(())
        }
        async fn check(&self, _: &cni::PodNetworkRequest) -> cni::Result<()> {
            Ok(())
        }
        async fn attachment(&self, _: &str, _: &str) -> cni::Result<Option<cni::NetworkStatus>> {
            Ok(None)
        }
        async fn attached(&self) -> cni::Result<Vec<String>> {
            Ok(Vec::new())
        }
        fn status(&self) -> std::result::Result<(), cni::NotReadyReason> {
            Ok(())
        }
    }

    /// More pods than CPUs starting at once attach their networks one per
    /// CPU at a time (`crate::turns`), and every one of them starts.
    #[tokio::test(flavor = "multi_thread")]
    async fn pods_starting_together_attach_their_networks_one_per_cpu_at_a_time() {
        use std::sync::atomic::Ordering::SeqCst;
        let cpus = crate::daemon::cpus();
        let pods = cpus + 2;
        let network = Arc::new(CountingNetwork::default());
        let mut d = Doubles::new();
        d.network_instead = Some(Arc::clone(&network) as _);
        let t = Arc::new(d.build().await);
        let runs: Vec<_> = (0..pods)
            .map(|i| {
                let t = Arc::clone(&t);
                tokio::spawn(async move { run(&t.daemon, own_pid_pod(&format!("p{i}"))).await })
            })
            .collect();
        for r in runs {
            r.await.unwrap().expect("every pod starts");
        }
        assert_eq!(network.added.load(SeqCst), pods);
        assert_eq!(
            network.most.load(SeqCst),
            cpus,
            "one ADD per CPU at once, no more"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn shared_pid_sysctls_privilege_or_the_config_keep_the_infra_container() {
        type Change = fn(&mut cri::RunPodSandboxRequest, &mut Doubles);
        let cases: [(&str, Change); 4] = [
            ("shared-pid", |r, _| {
                let linux = r.config.as_mut().unwrap().linux.as_mut().unwrap();
                let ns = linux
                    .security_context
                    .as_mut()
                    .unwrap()
                    .namespace_options
                    .as_mut()
                    .unwrap();
                ns.pid = cri::NamespaceMode::Pod as i32;
            }),
            ("sysctls", |r, _| {
                let linux = r.config.as_mut().unwrap().linux.as_mut().unwrap();
                linux
                    .sysctls
                    .insert("kernel.shm_rmid_forced".into(), "1".into());
            }),
            ("privileged", |r, _| {
                let linux = r.config.as_mut().unwrap().linux.as_mut().unwrap();
                linux.security_context.as_mut().unwrap().privileged = true;
            }),
            ("configured", |_, d| d.drop_infra_container = false),
        ];
        for (name, change) in cases {
            let mut d = infra_starts();
            d.monitors
                .expect_wait()
                .returning(|_, _| Ok(crate::testing::exit(0)));
            let mut request = own_pid_pod(name);
            change(&mut request, &mut d);
            let t = d.build().await;
            let id = run(&t.daemon, request).await.unwrap();
            let pod = t.daemon.sandboxes.get(&id).unwrap();
            assert!(pod.infra_container.is_some(), "{name}");
            assert_eq!(
                (pod.ipc_path.clone(), pod.uts_path.clone()),
                (None, None),
                "{name}"
            );
        }
    }
}
