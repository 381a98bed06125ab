//! `state`: the runtime's view of one container.

use super::CliRuntime;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::PathBuf;

/// Lifecycle status as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Being created.
    Creating,
    /// Created, user process not started.
    Created,
    /// Running.
    Running,
    /// Paused (frozen).
    Paused,
    /// Exited.
    Stopped,
    /// Anything else the runtime said.
    #[serde(other)]
    Unknown,
}

/// The runtime's state of a container (`runc state` output).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Host pid of init (0 when stopped).
    #[serde(default)]
    pub pid: i32,
    /// Status.
    pub status: ContainerStatus,
    /// Bundle directory.
    #[serde(default)]
    pub bundle: PathBuf,
    /// Annotations from the config.
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
}

impl CliRuntime {
    /// Runs `state` and parses its JSON.
    pub(super) async fn container_state(&self, id: &str) -> Result<ContainerState> {
        let out = self.run(id, &["state", id]).await?;
        serde_json::from_slice(&out.stdout).map_err(|e| Error::RuntimeOutput {
            id: id.to_owned(),
            runtime: self.config.name.clone(),
            command: self.describe(&["state", id]),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runc_state() {
        let s: ContainerState = serde_json::from_str(
            r#"{"ociVersion":"1.0.2-dev","id":"c1","pid":42,"status":"running","bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-01T00:00:00Z","owner":""}"#,
        )
        .unwrap();
        assert_eq!(s.status, ContainerStatus::Running);
        assert_eq!(s.pid, 42);
        let s: ContainerState = serde_json::from_str(r#"{"id":"c","status":"weird"}"#).unwrap();
        assert_eq!(s.status, ContainerStatus::Unknown);
    }
}
