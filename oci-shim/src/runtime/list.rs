//! `list`.

use super::{CliRuntime, ContainerState};
use crate::error::{Error, Result};

impl CliRuntime {
    /// Lists the containers under this handler's root.
    pub(super) async fn list_containers(&self) -> Result<Vec<ContainerState>> {
        let out = self.run("*", &["list", "--format", "json"]).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        // runc prints `null` for no containers.
        if text.trim().is_empty() || text.trim() == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(&text).map_err(|e| Error::RuntimeOutput {
            id: "*".into(),
            runtime: self.config.name.clone(),
            command: self.describe(&["list", "--format", "json"]),
            reason: e.to_string(),
        })
    }
}
