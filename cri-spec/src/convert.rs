//! Mapping between CRI messages and the `sandbox-core` model, in one place.

use cri_api::v1 as cri;
use sandbox_core::{
    ContainerState, NamespaceMode, NamespaceOptions, PortMapping, Protocol, SandboxState,
};
use std::collections::{BTreeMap, HashMap};

/// CRI's namespace mode number → the model's mode (unknown numbers → `Pod`,
/// CRI's default).
pub fn namespace_mode(mode: i32) -> NamespaceMode {
    match cri::NamespaceMode::try_from(mode) {
        Ok(cri::NamespaceMode::Container) => NamespaceMode::Container,
        Ok(cri::NamespaceMode::Node) => NamespaceMode::Node,
        Ok(cri::NamespaceMode::Target) => NamespaceMode::Target,
        _ => NamespaceMode::Pod,
    }
}

/// The model's namespace mode → CRI's number.
pub fn cri_namespace_mode(mode: NamespaceMode) -> i32 {
    (match mode {
        NamespaceMode::Pod => cri::NamespaceMode::Pod,
        NamespaceMode::Container => cri::NamespaceMode::Container,
        NamespaceMode::Node => cri::NamespaceMode::Node,
        NamespaceMode::Target => cri::NamespaceMode::Target,
    }) as i32
}

/// CRI namespace options → the model's.
pub fn namespace_options(options: Option<&cri::NamespaceOption>) -> NamespaceOptions {
    let Some(o) = options else {
        return NamespaceOptions::default();
    };
    NamespaceOptions {
        network: namespace_mode(o.network),
        pid: namespace_mode(o.pid),
        ipc: namespace_mode(o.ipc),
        target_id: Some(o.target_id.clone()).filter(|t| !t.is_empty()),
        // Checked apart: see crate::user_namespace.
        user: None,
    }
}

/// The model's namespace options → CRI's.
pub fn cri_namespace_options(options: &NamespaceOptions) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri_namespace_mode(options.network),
        pid: cri_namespace_mode(options.pid),
        ipc: cri_namespace_mode(options.ipc),
        target_id: options.target_id.clone().unwrap_or_default(),
        userns_options: Some(crate::user_namespace::cri_user_namespace(
            options.user.as_ref(),
        )),
    }
}

/// A port mapping's port outside 0..=65535.
#[derive(Debug, thiserror::Error)]
#[error("port_mappings: {field} {port} is out of range")]
pub struct PortOutOfRange {
    /// `container_port` or `host_port`.
    pub field: &'static str,
    /// The value given.
    pub port: i32,
}

/// CRI port mappings → the model's; ports outside 0..=65535 are refused.
pub fn port_mappings(mappings: &[cri::PortMapping]) -> Result<Vec<PortMapping>, PortOutOfRange> {
    mappings
        .iter()
        .map(|m| {
            let port = |port: i32, field: &'static str| {
                u16::try_from(port).map_err(|_| PortOutOfRange { field, port })
            };
            Ok(PortMapping {
                protocol: match cri::Protocol::try_from(m.protocol) {
                    Ok(cri::Protocol::Udp) => Protocol::Udp,
                    Ok(cri::Protocol::Sctp) => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                container_port: port(m.container_port, "container_port")?,
                host_port: port(m.host_port, "host_port")?,
                host_ip: m.host_ip.clone(),
            })
        })
        .collect()
}

/// A CRI string map → an ordered map.
pub fn map(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// An ordered map → a CRI string map.
pub fn cri_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The model's sandbox state → CRI's number.
pub fn cri_sandbox_state(state: SandboxState) -> i32 {
    (match state {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }) as i32
}

/// CRI's sandbox state number → the model's (`None` for unknown numbers).
pub fn sandbox_state(state: i32) -> Option<SandboxState> {
    match cri::PodSandboxState::try_from(state) {
        Ok(cri::PodSandboxState::SandboxReady) => Some(SandboxState::Ready),
        Ok(cri::PodSandboxState::SandboxNotready) => Some(SandboxState::NotReady),
        Err(_) => None,
    }
}

/// The model's container state → CRI's number.
pub fn cri_container_state(state: ContainerState) -> i32 {
    (match state {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }) as i32
}

/// CRI's container state number → the model's (`None` for unknown numbers).
pub fn container_state(state: i32) -> Option<ContainerState> {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => Some(ContainerState::Created),
        Ok(cri::ContainerState::ContainerRunning) => Some(ContainerState::Running),
        Ok(cri::ContainerState::ContainerExited) => Some(ContainerState::Exited),
        Ok(cri::ContainerState::ContainerUnknown) => Some(ContainerState::Unknown),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_modes_round_trip() {
        for mode in [
            NamespaceMode::Pod,
            NamespaceMode::Container,
            NamespaceMode::Node,
            NamespaceMode::Target,
        ] {
            assert_eq!(namespace_mode(cri_namespace_mode(mode)), mode);
        }
        assert_eq!(namespace_mode(99), NamespaceMode::Pod);
    }

    #[test]
    fn out_of_range_port_is_refused() {
        let bad = cri::PortMapping {
            container_port: 70000,
            ..Default::default()
        };
        assert!(port_mappings(&[bad])
            .unwrap_err()
            .to_string()
            .contains("container_port"));
    }

    #[test]
    fn states_round_trip() {
        for s in [SandboxState::Ready, SandboxState::NotReady] {
            assert_eq!(sandbox_state(cri_sandbox_state(s)), Some(s));
        }
        for s in [
            ContainerState::Created,
            ContainerState::Running,
            ContainerState::Exited,
            ContainerState::Unknown,
        ] {
            assert_eq!(container_state(cri_container_state(s)), Some(s));
        }
    }
}
