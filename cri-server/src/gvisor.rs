//! Settings the daemon applies to pods on gVisor so they behave as on runc
//! wherever gVisor allows it (issue #22). Each loosens nothing a pod did
//! not ask for.
//!
//! Low ports: runsc runs here with `--network=host`, so a sandboxed
//! process's socket is a host socket of the pod's network namespace,
//! opened by the sandbox (the Sentry), which holds no capability. A
//! server on port 80 got `EACCES` even when its container kept
//! `CAP_NET_BIND_SERVICE`, as every container does by default. The fix is
//! the pod's own `net.ipv4.ip_unprivileged_port_start = 0`: a setting of
//! the pod's network namespace only, made when a container of the pod
//! keeps `CAP_NET_BIND_SERVICE`. gVisor itself does not check the
//! capability for host sockets, so from then on every container of that
//! pod may bind low ports: the capability is pod-wide on gVisor (README,
//! "runsc differences").
//!
//! Pod sysctls: runsc ignores the spec's `linux.sysctl`. The `net.*` ones
//! still mean something: they govern the host sockets the sandbox opens in
//! the pod's network namespace, so the daemon writes them there itself, as
//! runc would in the namespace it joins. The IPC ones (`kernel.shm*`,
//! `fs.mqueue.*`, ...) have no such place: gVisor implements System V IPC
//! and message queues inside its sandbox, so they stay ignored, with a
//! warning (README, "runsc differences").

use crate::error::{Error, Result};
use oci_shim::spec::ContainerSpec;
use sandbox_core::Sandbox;

/// The sysctl that opens ports below 1024 to sockets without
/// `CAP_NET_BIND_SERVICE`, in the writer's network namespace.
const UNPRIVILEGED_PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";

/// Whether `spec`'s process keeps capability `name` (`NET_BIND_SERVICE`).
pub fn keeps_capability(spec: &ContainerSpec, name: &str) -> bool {
    spec.privileged
        || spec.process.capabilities.iter().any(|c| {
            let c = c.strip_prefix("CAP_").unwrap_or(c);
            c.eq_ignore_ascii_case(name)
        })
}

/// Lets sockets of gVisor pod `sandbox` bind ports below 1024, if the
/// container about to be made keeps `CAP_NET_BIND_SERVICE` (see the module
/// docs). Nothing for a pod on the host's network: that setting would be
/// the host's.
pub async fn allow_low_ports(sandbox: &Sandbox, spec: &ContainerSpec) -> Result<()> {
    let Some(netns) = sandbox.netns_path.clone() else {
        return Ok(());
    };
    if !keeps_capability(spec, "NET_BIND_SERVICE") {
        return Ok(());
    }
    let what = format!("pod {} low ports", sandbox.id);
    tokio::task::spawn_blocking(move || {
        let ns = netns::NetNs::open(&netns)?;
        ns.run_in(|| std::fs::write(UNPRIVILEGED_PORT_START, "0"))
    })
    .await
    .map_err(|e| Error::internal(&what, e))?
    .map_err(|e| Error::internal(&what, e))?
    .map_err(|e| Error::internal(&what, e))
}

/// The `/proc/sys` path of dotted sysctl `name`, as sysctl(8) reads it: dots
/// separate components, a slash stands for a dot inside one (an interface
/// like `eth0.100`). Names are checked by `cri_spec::sysctls::validate`:
/// no component is empty, `.` or `..`.
fn proc_sys_path(name: &str) -> String {
    let parts: Vec<String> = name.split('.').map(|p| p.replace('/', ".")).collect();
    format!("/proc/sys/{}", parts.join("/"))
}

/// Writes the `net.*` ones of pod `sandbox`'s sysctls in its network
/// namespace (see the module docs); nothing for a pod on the host's
/// network (validation refused `net.*` for it). A sysctl the namespace
/// does not have fails the pod, as it does on runc.
pub async fn apply_network_sysctls(
    sandbox: &Sandbox,
    sysctls: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let Some(netns) = sandbox.netns_path.clone() else {
        return Ok(());
    };
    let network: Vec<(String, String)> = sysctls
        .iter()
        .filter(|(name, _)| name.starts_with("net."))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if network.is_empty() {
        return Ok(());
    }
    let what = format!("pod {} sysctls", sandbox.id);
    let written = tokio::task::spawn_blocking(move || {
        let ns = netns::NetNs::open(&netns)?;
        ns.run_in(|| {
            for (name, value) in &network {
                std::fs::write(proc_sys_path(name), value)
                    .map_err(|e| format!("sysctl {name}={value}: {e}"))?;
            }
            Ok::<(), String>(())
        })
    })
    .await
    .map_err(|e| Error::internal(&what, e))?
    .map_err(|e| Error::internal(&what, e))?;
    written.map_err(|e| Error::internal(&what, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sysctl_names_become_proc_sys_paths() {
        assert_eq!(
            super::proc_sys_path("net.ipv4.ip_local_port_range"),
            "/proc/sys/net/ipv4/ip_local_port_range"
        );
        assert_eq!(
            super::proc_sys_path("net.ipv4.conf.eth0/100.forwarding"),
            "/proc/sys/net/ipv4/conf/eth0.100/forwarding"
        );
    }
}

#[cfg(test)]
mod capability_tests {
    use super::*;

    #[test]
    fn a_capability_is_kept_by_any_spelling_or_by_privilege() {
        let mut spec = ContainerSpec::new("/r", ["/app"]);
        spec.process.capabilities = vec!["CAP_CHOWN".into(), "net_bind_service".into()];
        assert!(keeps_capability(&spec, "NET_BIND_SERVICE"));
        spec.process.capabilities = vec!["CAP_CHOWN".into()];
        assert!(!keeps_capability(&spec, "NET_BIND_SERVICE"));
        spec.privileged = true;
        assert!(keeps_capability(&spec, "NET_BIND_SERVICE"));
    }
}
