//! The runtime handlers in force: for each, its settings from the config,
//! what the runtime driver needs, the driver itself and what the runtime
//! said it can do. A reload swaps the whole set at once
//! ([`crate::daemon::Daemon::set_handlers`]); a call that already holds a
//! handler finishes with it.

use crate::config::HandlerConfig;
use oci_shim::runtime::{OciRuntime, RuntimeFeatures, RuntimeHandlerConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One runtime handler.
#[derive(Clone)]
pub struct Handler {
    /// Its `[runtime.handlers.<name>]` settings.
    pub settings: HandlerConfig,
    /// What the runtime driver runs it with.
    pub runtime_config: RuntimeHandlerConfig,
    /// The driver.
    pub runtime: Arc<dyn OciRuntime>,
    /// What `<runtime> features` said; nothing optional when it said
    /// nothing (the command is missing, as in runsc).
    pub features: RuntimeFeatures,
}

impl Handler {
    /// Whether pods with a user namespace (`hostUsers: false`) can run on
    /// it: runc-style runtimes that say they make user namespaces (the
    /// daemon pins the namespace and idmaps the root filesystem itself, so
    /// the runtime needs no idmapped-mount support). Not gVisor: runsc
    /// (2022-12) fails to start a sandbox in a user namespace here ("error
    /// setting up chroot: error converting mounts: operation not
    /// permitted"), and its sentry is a user-space kernel of its own anyway.
    pub fn user_namespaces(&self) -> bool {
        self.runtime_config.kind == oci_shim::runtime::RuntimeKind::Runc
            && self.features.user_namespaces()
    }
}

/// Every configured handler, by name.
#[derive(Clone, Default)]
pub struct HandlerSet {
    handlers: BTreeMap<String, Handler>,
}

impl HandlerSet {
    /// The set of `handlers`.
    pub fn new(handlers: impl IntoIterator<Item = (String, Handler)>) -> Self {
        HandlerSet {
            handlers: handlers.into_iter().collect(),
        }
    }

    /// Handler `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&Handler> {
        self.handlers.get(name)
    }

    /// Every handler, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Handler)> {
        self.handlers.iter()
    }

    /// The handlers' names.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.handlers.keys()
    }

    /// Handlers whose binary is missing, as `name (path)`: reported in
    /// Status, never silently dropped.
    pub fn missing_binaries(&self) -> Vec<String> {
        self.handlers
            .iter()
            .filter(|(_, h)| !h.settings.path.is_file())
            .map(|(name, h)| format!("{name} ({})", h.settings.path.display()))
            .collect()
    }
}
