//! Pods removed while their network release was still running: what that
//! release needs once the store no longer has them (see `pod::release`).
//! Kept apart from the release so the daemon's state can hold it without
//! depending on the verbs.

use sandbox_core::Sandbox;

/// Pods removed while their network release was pending, by id: the
/// release reads the pod from here once the store no longer has it, and
/// forgets it when done.
#[derive(Debug, Default)]
pub struct RemovedPods {
    pods: std::sync::Mutex<std::collections::HashMap<String, Sandbox>>,
}

impl RemovedPods {
    fn pods(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Sandbox>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `sandbox` for its release.
    pub fn hold(&self, sandbox: Sandbox) {
        self.pods().insert(sandbox.id.clone(), sandbox);
    }

    /// The removed pod `id`, if its release is still to finish.
    pub fn get(&self, id: &str) -> Option<Sandbox> {
        self.pods().get(id).cloned()
    }

    /// Forgets pod `id`; whether it was held.
    pub fn forget(&self, id: &str) -> bool {
        self.pods().remove(id).is_some()
    }

    /// Every removed pod whose release is still to finish.
    pub fn list(&self) -> Vec<Sandbox> {
        self.pods().values().cloned().collect()
    }
}
