//! Which namespaces a container gets: new ones, the pod's (joined by
//! path), or the host's.

use oci_shim::spec::{ContainerSpec, NamespaceKind, NamespaceSpec};
use std::path::PathBuf;

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
}
