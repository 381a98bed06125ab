//! Which namespaces a container gets: new ones, the pod's (joined by
//! path), or the host's. One place for both the infra container, which
//! makes the pod's namespaces, and the workload containers, which join them.

use oci_shim::spec::{ContainerSpec, IdMappings, NamespaceKind, NamespaceSpec};
use sandbox_core::{NamespaceMode, NamespaceOptions};
use std::path::PathBuf;

/// What a pod's containers need to know of its namespaces.
#[derive(Debug, Clone, Default)]
pub struct PodNamespaces {
    /// The pod's pinned network namespace; `None` for host network.
    pub netns: Option<PathBuf>,
    /// The pod's namespace modes (network, PID, IPC).
    pub options: NamespaceOptions,
    /// The infra container's pid on the host, whose IPC, UTS and PID
    /// namespaces the containers join.
    pub infra_pid: Option<i32>,
    /// The pod's pinned IPC namespace, for a pod without an infra container.
    pub ipc_pin: Option<PathBuf>,
    /// The pod's pinned UTS namespace, for a pod without an infra container.
    pub uts_pin: Option<PathBuf>,
    /// The pod's pinned user namespace (its mapping is in
    /// `options.user`); every container joins it, the infra one included.
    pub userns_pin: Option<PathBuf>,
    /// gVisor keeps a pod's namespaces inside its sandbox: containers join
    /// them through the sandbox annotations, not by host path.
    pub on_gvisor: bool,
}

impl PodNamespaces {
    /// The network namespace: the pinned one, or the host's.
    fn network(&self) -> NamespaceSource {
        match &self.netns {
            Some(path) => NamespaceSource::Join(path.clone()),
            None => NamespaceSource::Host,
        }
    }

    /// The pod's namespace of `kind` (`ipc`, `uts`, `pid`) as a container
    /// joins it: through the infra container's or the pod's pin, or new on
    /// gVisor (or when neither is known).
    fn joined(&self, kind: &str) -> NamespaceSource {
        let pin = match kind {
            "ipc" => self.ipc_pin.as_ref(),
            "uts" => self.uts_pin.as_ref(),
            _ => None,
        };
        match (self.on_gvisor, self.infra_pid, pin) {
            // gVisor keeps every namespace of the pod inside its sandbox,
            // but shares the PID namespace of the pod's sandbox process
            // with a container whose spec names any path for it (a
            // container with none gets a PID namespace of its own).
            (true, Some(pid), _) if kind == "pid" => {
                NamespaceSource::Join(PathBuf::from(format!("/proc/{pid}/ns/pid")))
            }
            (true, _, _) => NamespaceSource::New,
            (false, Some(pid), _) => {
                NamespaceSource::Join(PathBuf::from(format!("/proc/{pid}/ns/{kind}")))
            }
            (false, None, Some(pin)) => NamespaceSource::Join(pin.clone()),
            (false, None, None) => NamespaceSource::New,
        }
    }

    /// Joins the pod's user namespace, if it has one, with its mapping.
    fn join_user(&self, spec: &mut ContainerSpec) {
        let (Some(pin), Some(user)) = (&self.userns_pin, &self.options.user) else {
            set_namespace(spec, NamespaceKind::User, NamespaceSource::Host);
            return;
        };
        set_namespace(
            spec,
            NamespaceKind::User,
            NamespaceSource::Join(pin.clone()),
        );
        let ranges = |ranges: &[sandbox_core::IdMapping]| {
            ranges
                .iter()
                .map(|r| (r.container_id, r.host_id, r.length))
                .collect()
        };
        spec.id_mappings = Some(IdMappings {
            uids: ranges(&user.uids),
            gids: ranges(&user.gids),
        });
    }
}

/// Sets the infra container's namespaces: it makes the pod's IPC, UTS and
/// PID namespaces (the host's where the pod asks for them) and joins the
/// pinned network namespace.
///
/// # Examples
///
/// ```
/// use cri_spec::namespaces::{infra_namespaces, PodNamespaces};
/// use oci_shim::spec::{ContainerSpec, NamespaceKind};
///
/// let mut spec = ContainerSpec::new("/pause", ["/pause"]);
/// let pod = PodNamespaces { netns: Some("/run/netns/p1".into()), ..Default::default() };
/// infra_namespaces(&mut spec, &pod);
/// let net = spec.namespaces.iter().find(|n| n.kind == NamespaceKind::Network).unwrap();
/// assert_eq!(net.path.as_deref(), Some(std::path::Path::new("/run/netns/p1")));
/// ```
pub fn infra_namespaces(spec: &mut ContainerSpec, pod: &PodNamespaces) {
    let own = |mode: NamespaceMode| {
        if mode == NamespaceMode::Node {
            NamespaceSource::Host
        } else {
            NamespaceSource::New
        }
    };
    let ns = &pod.options;
    // A pod with a user namespace had its IPC and UTS namespaces made
    // with it (owned by it): the infra container joins those pins.
    let own_or_pin = |mode: NamespaceMode, pin: &Option<PathBuf>| match pin {
        Some(pin) if mode != NamespaceMode::Node => NamespaceSource::Join(pin.clone()),
        _ => own(mode),
    };
    set_namespace(spec, NamespaceKind::Network, pod.network());
    set_namespace(spec, NamespaceKind::Ipc, own_or_pin(ns.ipc, &pod.ipc_pin));
    set_namespace(spec, NamespaceKind::Pid, own(ns.pid));
    set_namespace(
        spec,
        NamespaceKind::Uts,
        own_or_pin(ns.network, &pod.uts_pin),
    );
    pod.join_user(spec);
}

/// Sets a workload container's namespaces: the pod's network, IPC and UTS;
/// PID as the container's request says (`target_pid` is the init of the
/// container a `TARGET` mode names).
///
/// # Errors
///
/// [`crate::container::ContainerSpecError::NoTarget`] for a `TARGET` mode
/// without a running target.
pub fn container_namespaces(
    spec: &mut ContainerSpec,
    pod: &PodNamespaces,
    requested: &NamespaceOptions,
    target_pid: Option<i32>,
) -> Result<(), crate::container::ContainerSpecError> {
    let host_or = |mode: NamespaceMode, kind: &str| {
        if mode == NamespaceMode::Node {
            NamespaceSource::Host
        } else {
            pod.joined(kind)
        }
    };
    set_namespace(spec, NamespaceKind::Network, pod.network());
    set_namespace(spec, NamespaceKind::Ipc, host_or(pod.options.ipc, "ipc"));
    set_namespace(
        spec,
        NamespaceKind::Uts,
        host_or(pod.options.network, "uts"),
    );
    let pid_mode = if pod.options.pid == NamespaceMode::Node {
        NamespaceMode::Node
    } else {
        requested.pid
    };
    let pid = match pid_mode {
        NamespaceMode::Node => NamespaceSource::Host,
        NamespaceMode::Pod => pod.joined("pid"),
        NamespaceMode::Container => NamespaceSource::New,
        NamespaceMode::Target => {
            let pid = target_pid.ok_or_else(|| {
                crate::container::ContainerSpecError::NoTarget(
                    requested.target_id.clone().unwrap_or_default(),
                )
            })?;
            NamespaceSource::Join(PathBuf::from(format!("/proc/{pid}/ns/pid")))
        }
    };
    set_namespace(spec, NamespaceKind::Pid, pid);
    pod.join_user(spec);
    Ok(())
}

/// How a container gets one kind of namespace.
#[derive(Debug, Clone)]
pub enum NamespaceSource {
    /// A fresh namespace of its own.
    New,
    /// Join the namespace at this path.
    Join(PathBuf),
    /// The host's (no namespace of that kind in the spec).
    Host,
}

/// Sets `spec`'s namespace of `kind` to come from `source`.
pub fn set_namespace(spec: &mut ContainerSpec, kind: NamespaceKind, source: NamespaceSource) {
    spec.namespaces.retain(|n| n.kind != kind);
    match source {
        NamespaceSource::Host => {}
        NamespaceSource::New => spec.namespaces.push(NamespaceSpec { kind, path: None }),
        NamespaceSource::Join(path) => spec.namespaces.push(NamespaceSpec {
            kind,
            path: Some(path),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_namespace_is_absent_and_join_has_a_path() {
        let mut spec = ContainerSpec::new("/r", ["/pause"]);
        set_namespace(&mut spec, NamespaceKind::Network, NamespaceSource::Host);
        assert!(!spec
            .namespaces
            .iter()
            .any(|n| n.kind == NamespaceKind::Network));
        set_namespace(
            &mut spec,
            NamespaceKind::Ipc,
            NamespaceSource::Join("/p".into()),
        );
        let ipc: Vec<_> = spec
            .namespaces
            .iter()
            .filter(|n| n.kind == NamespaceKind::Ipc)
            .collect();
        assert_eq!(ipc.len(), 1);
        assert_eq!(ipc[0].path.as_deref(), Some(std::path::Path::new("/p")));
    }

    #[test]
    fn without_an_infra_container_containers_join_the_pins() {
        let pod = PodNamespaces {
            netns: Some("/pins/p".into()),
            ipc_pin: Some("/pins/p.ipc".into()),
            uts_pin: Some("/pins/p.uts".into()),
            ..PodNamespaces::default()
        };
        let mut spec = ContainerSpec::new("/r", ["/app"]);
        container_namespaces(&mut spec, &pod, &NamespaceOptions::default(), None).unwrap();
        let path = |kind| {
            spec.namespaces
                .iter()
                .find(|n| n.kind == kind)
                .map(|n| n.path.clone())
        };
        assert_eq!(path(NamespaceKind::Ipc), Some(Some("/pins/p.ipc".into())));
        assert_eq!(path(NamespaceKind::Uts), Some(Some("/pins/p.uts".into())));
        assert_eq!(path(NamespaceKind::Network), Some(Some("/pins/p".into())));
        // Each container has a PID namespace of its own (no pod-wide one
        // without an infra container).
        assert_eq!(path(NamespaceKind::Pid), Some(None));
    }

    #[test]
    fn a_pod_with_a_user_namespace_has_every_container_join_it_with_the_mapping() {
        let ids = vec![sandbox_core::IdMapping {
            container_id: 0,
            host_id: 65536,
            length: 65536,
        }];
        let pod = PodNamespaces {
            netns: Some("/pins/p".into()),
            ipc_pin: Some("/pins/p.ipc".into()),
            uts_pin: Some("/pins/p.uts".into()),
            userns_pin: Some("/pins/p.user".into()),
            options: NamespaceOptions {
                user: Some(sandbox_core::UserNamespace {
                    uids: ids.clone(),
                    gids: ids,
                }),
                ..NamespaceOptions::default()
            },
            ..PodNamespaces::default()
        };
        let path = |spec: &ContainerSpec, kind| {
            spec.namespaces
                .iter()
                .find(|n| n.kind == kind)
                .and_then(|n| n.path.clone())
        };
        let mut infra = ContainerSpec::new("/r", ["/pause"]);
        infra_namespaces(&mut infra, &pod);
        let mut app = ContainerSpec::new("/r", ["/app"]);
        container_namespaces(&mut app, &pod, &NamespaceOptions::default(), None).unwrap();
        for spec in [&infra, &app] {
            assert_eq!(path(spec, NamespaceKind::User), Some("/pins/p.user".into()));
            assert_eq!(path(spec, NamespaceKind::Ipc), Some("/pins/p.ipc".into()));
            assert_eq!(path(spec, NamespaceKind::Uts), Some("/pins/p.uts".into()));
            let maps = spec.id_mappings.as_ref().unwrap();
            assert_eq!(maps.uids, vec![(0, 65536, 65536)]);
        }
        // Without one: no user namespace, no mapping.
        let mut plain = ContainerSpec::new("/r", ["/app"]);
        let pod = PodNamespaces {
            userns_pin: None,
            ..pod
        };
        container_namespaces(&mut plain, &pod, &NamespaceOptions::default(), None).unwrap();
        assert!(plain
            .namespaces
            .iter()
            .all(|n| n.kind != NamespaceKind::User));
        assert!(plain.id_mappings.is_none());
    }
}
