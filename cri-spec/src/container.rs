//! A workload container's spec from its CreateContainer request, its
//! image's configuration and what the pod and the handler contribute.
//!
//! [`build`] is pure: what needs the machine (mounting the root
//! filesystem, reading the image's user database, resolving volume paths,
//! finding the pid of a PID-namespace target) is done by the caller, whose
//! answers arrive in [`ContainerInputs`]. [`user_to_resolve`] says which
//! user the caller must look up.

use crate::annotations::AllowList;
use crate::image_config::{ImageConfig, ResolvedUser};
use crate::namespaces::{container_namespaces, PodNamespaces};
use cri_api::v1 as cri;
use oci_shim::spec::{ContainerSpec, MountSpec, PodRole, Propagation};
use sandbox_core::{Mount, MountPropagation, NamespaceOptions};
use std::path::{Path, PathBuf};

/// Why a container's spec cannot be built from its request.
#[derive(Debug, thiserror::Error)]
pub enum ContainerSpecError {
    /// Neither the request nor the image names a command.
    #[error("no command: the request and the image give none")]
    NoCommand,
    /// A uid or gid does not fit in 32 bits.
    #[error("{field} {value} is out of range")]
    IdOutOfRange {
        /// `run_as_user`, `run_as_group` or `supplemental_groups`.
        field: &'static str,
        /// The value given.
        value: i64,
    },
    /// `run_as_group` without a user to apply it to.
    #[error("run_as_group is set without run_as_user")]
    GroupWithoutUser,
    /// The PID namespace target is not a running container.
    #[error("PID namespace target {0:?} is not a running container")]
    NoTarget(String),
    /// The security context cannot be applied.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    /// The resources are invalid.
    #[error(transparent)]
    Resources(#[from] crate::resources::ResourcesError),
    /// A device cannot be given.
    #[error(transparent)]
    Device(#[from] crate::devices::DeviceError),
    /// An environment value is not UTF-8. CRI carries values as bytes
    /// (Kubernetes 1.36), but an OCI process environment is JSON strings, so
    /// such a value cannot reach the runtime intact.
    #[error("environment variable {0:?}: the value is not UTF-8")]
    EnvNotUtf8(String),
    /// A `supplemental_groups_policy` CRI does not define.
    #[error("supplemental_groups_policy {0} is neither Merge nor Strict")]
    UnknownGroupsPolicy(i32),
}

/// Everything [`build`] needs besides the request: the answers of the
/// machine, the pod and the handler.
#[derive(Debug)]
pub struct ContainerInputs<'a> {
    /// The CreateContainer request's config.
    pub request: &'a cri::ContainerConfig,
    /// The image's configuration.
    pub image: &'a ImageConfig,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// The user [`user_to_resolve`] named, as the image's database resolved
    /// it; `None` when there was none to resolve.
    pub user: Option<ResolvedUser>,
    /// The volumes, host paths resolved by the caller.
    pub volumes: &'a [Mount],
    /// The pod's files (resolv.conf, hostname, hosts): `(host path,
    /// container path)` of those that exist.
    pub pod_files: &'a [(PathBuf, &'static str)],
    /// The pod's namespaces and how to join them.
    pub pod: PodNamespaces,
    /// The pod's id (gVisor groups a pod's containers by it).
    pub pod_id: &'a str,
    /// The init pid of the container a PID-namespace `TARGET` names.
    pub target_pid: Option<i32>,
    /// The container's `linux.cgroupsPath`.
    pub cgroups_path: String,
    /// Which annotations the handler may receive.
    pub allowed_annotations: &'a AllowList,
    /// The container's annotations (from the request).
    pub annotations: &'a std::collections::BTreeMap<String, String>,
    /// Whether the kernel has AppArmor enabled.
    pub apparmor_enabled: bool,
    /// The handler's `privileged_without_host_devices`: privileged
    /// containers get no host devices.
    pub privileged_without_host_devices: bool,
}

/// The user CreateContainer must look up in the image: the request's uid
/// (or name) wins over the image's `User`. `None`: no user to look up.
///
/// # Examples
///
/// ```
/// use cri_spec::container::user_to_resolve;
/// use cri_api::v1 as cri;
///
/// let mut security = cri::LinuxContainerSecurityContext::default();
/// assert_eq!(user_to_resolve(&security, Some("www-data")).unwrap().as_deref(), Some("www-data"));
/// security.run_as_user = Some(cri::Int64Value { value: 1000 });
/// assert_eq!(user_to_resolve(&security, Some("www-data")).unwrap().as_deref(), Some("1000"));
/// ```
pub fn user_to_resolve(
    security: &cri::LinuxContainerSecurityContext,
    image_user: Option<&str>,
) -> Result<Option<String>, ContainerSpecError> {
    match (&security.run_as_user, security.run_as_username.as_str()) {
        (Some(uid), _) => Ok(Some(id("run_as_user", uid.value)?.to_string())),
        (None, name) if !name.is_empty() => Ok(Some(name.to_string())),
        _ if security.run_as_group.is_some() => Err(ContainerSpecError::GroupWithoutUser),
        _ => Ok(image_user.filter(|u| !u.is_empty()).map(str::to_string)),
    }
}

/// The container's spec, and what its record keeps of it.
#[derive(Debug)]
pub struct BuiltContainer {
    /// The typed spec, ready for `ContainerSpec::to_oci`.
    pub spec: ContainerSpec,
    /// The resources as the record keeps them (ContainerStatus reports them).
    pub resources: Option<sandbox_core::Resources>,
}

/// Builds the container's spec.
///
/// # Errors
///
/// [`ContainerSpecError`], naming the field at fault; the caller adds the
/// container's name.
pub fn build(inputs: &ContainerInputs<'_>) -> Result<BuiltContainer, ContainerSpecError> {
    let request = inputs.request;
    let linux = request.linux.clone().unwrap_or_default();
    let security = linux.security_context.clone().unwrap_or_default();
    let mut spec = process(inputs)?;
    spec.root.readonly = security.readonly_rootfs;
    apply_user(&mut spec, inputs.user.clone(), &security)?;
    let requested: NamespaceOptions =
        crate::convert::namespace_options(security.namespace_options.as_ref());
    container_namespaces(&mut spec, &inputs.pod, &requested, inputs.target_pid)?;
    spec.mounts.extend(inputs.volumes.iter().map(volume_mount));
    spec.mounts.extend(pod_file_mounts(
        inputs.pod_files,
        &request.mounts,
        security.readonly_rootfs,
    ));
    spec.cgroups_path = Some(inputs.cgroups_path.clone());
    let mut resources = None;
    if let Some(limits) = &linux.resources {
        resources = Some(crate::resources::to_record(limits));
        spec.resources = Some(crate::resources::to_oci(limits)?);
        if limits.oom_score_adj != 0 {
            spec.process.oom_score_adj = i32::try_from(limits.oom_score_adj).ok();
        }
    }
    // After resources: privilege adds a device rule to them.
    crate::security::apply_with_devices(
        &mut spec,
        &security,
        inputs.apparmor_enabled,
        !inputs.privileged_without_host_devices,
    )?;
    add_devices(&mut spec, &request.devices)?;
    spec.pod_role = Some(PodRole::Container {
        sandbox_id: inputs.pod_id.to_string(),
    });
    // Only what the handler allows: runtimes act on annotations.
    let name = request
        .metadata
        .as_ref()
        .map(|m| format!("container {}", m.name))
        .unwrap_or_default();
    spec.annotations = inputs.allowed_annotations.filter(&name, inputs.annotations);
    Ok(BuiltContainer { spec, resources })
}

/// The process: argv, environment, working directory and terminal.
fn process(inputs: &ContainerInputs<'_>) -> Result<ContainerSpec, ContainerSpecError> {
    let (request, image) = (inputs.request, inputs.image);
    let argv = image.argv(&request.command, &request.args);
    if argv.is_empty() {
        return Err(ContainerSpecError::NoCommand);
    }
    let mut spec = ContainerSpec::new(inputs.rootfs, argv);
    let request_env = request
        .envs
        .iter()
        .map(|kv| match String::from_utf8(kv.value.clone()) {
            Ok(value) => Ok((kv.key.clone(), value)),
            Err(_) => Err(ContainerSpecError::EnvNotUtf8(kv.key.clone())),
        })
        .collect::<Result<Vec<(String, String)>, _>>()?;
    spec.process.env = image.env(&request_env);
    spec.process.cwd = Some(request.working_dir.clone())
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    spec.process.terminal = request.tty;
    Ok(spec)
}

/// The process's uid, gid and groups: the resolved user, overridden by
/// `run_as_group`, plus `supplemental_groups`.
fn apply_user(
    spec: &mut ContainerSpec,
    resolved: Option<ResolvedUser>,
    security: &cri::LinuxContainerSecurityContext,
) -> Result<(), ContainerSpecError> {
    let supplemental = security
        .supplemental_groups
        .iter()
        .map(|g| id("supplemental_groups", *g))
        .collect::<Result<Vec<u32>, _>>()?;
    // Strict (KEP-3619): only the groups the pod spec names; Merge, the
    // default, adds the user's groups from the image's /etc/group, which
    // an image author controls.
    let strict = match cri::SupplementalGroupsPolicy::try_from(security.supplemental_groups_policy)
    {
        Ok(policy) => policy == cri::SupplementalGroupsPolicy::Strict,
        Err(_) => {
            return Err(ContainerSpecError::UnknownGroupsPolicy(
                security.supplemental_groups_policy,
            ))
        }
    };
    let Some(user) = resolved else {
        spec.process.user.additional_gids = sorted(supplemental);
        return Ok(());
    };
    let mut groups = if strict {
        Vec::new()
    } else {
        user.additional_gids
    };
    for g in supplemental {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    spec.process.user.uid = user.uid;
    spec.process.user.gid = match &security.run_as_group {
        Some(g) => id("run_as_group", g.value)?,
        None => user.gid,
    };
    spec.process.user.additional_gids = sorted(groups);
    Ok(())
}

/// Groups in ascending order, each once. Linux's `setgroups` sorts them
/// anyway, so on runc `id -G` lists them sorted whatever the order given;
/// gVisor keeps the order it is given. Sorted here, both list the same.
fn sorted(mut groups: Vec<u32>) -> Vec<u32> {
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// A uid or gid from a CRI `int64`.
fn id(field: &'static str, value: i64) -> Result<u32, ContainerSpecError> {
    u32::try_from(value).map_err(|_| ContainerSpecError::IdOutOfRange { field, value })
}

/// A volume's bind mount.
pub fn volume_mount(mount: &Mount) -> MountSpec {
    let mut options = vec!["rbind".to_string()];
    if mount.readonly {
        options.push("ro".into());
    }
    if mount.recursive_read_only {
        // runc ≥ 1.1 applies it with mount_setattr(AT_RECURSIVE).
        options.push("rro".into());
    }
    MountSpec {
        destination: mount.container_path.to_string_lossy().into_owned(),
        kind: "bind".into(),
        source: mount.host_path.to_string_lossy().into_owned(),
        options,
        propagation: Some(match mount.propagation {
            MountPropagation::Private => Propagation::Private,
            MountPropagation::HostToContainer => Propagation::HostToContainer,
            MountPropagation::Bidirectional => Propagation::Bidirectional,
        }),
    }
}

/// The pod's resolv.conf, hostname and hosts, unless a volume of the
/// container's own takes their place; read-only with a read-only root.
fn pod_file_mounts(
    files: &[(PathBuf, &'static str)],
    volumes: &[cri::Mount],
    readonly: bool,
) -> Vec<MountSpec> {
    files
        .iter()
        .filter(|(_, destination)| !volumes.iter().any(|m| m.container_path == *destination))
        .map(|(source, destination)| MountSpec {
            destination: destination.to_string(),
            kind: "bind".into(),
            source: source.to_string_lossy().into_owned(),
            options: vec!["rbind".into(), if readonly { "ro" } else { "rw" }.into()],
            propagation: Some(Propagation::Private),
        })
        .collect()
}

/// The request's devices: nodes in the container and cgroup rules.
fn add_devices(
    spec: &mut ContainerSpec,
    devices: &[cri::Device],
) -> Result<(), ContainerSpecError> {
    if devices.is_empty() {
        return Ok(());
    }
    let mut rules = Vec::new();
    for device in devices {
        let (node, rule) = crate::devices::to_oci(device)?;
        spec.devices.push(node);
        rules.push(rule);
    }
    let mut resources = spec.resources.take().unwrap_or_default();
    let mut all = resources.devices().clone().unwrap_or_default();
    all.extend(rules);
    resources.set_devices(Some(all));
    spec.resources = Some(resources);
    Ok(())
}

#[cfg(test)]
mod tests;
