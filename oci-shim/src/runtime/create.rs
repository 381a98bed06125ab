//! `create` without a monitor (stdio discarded).

use super::CliRuntime;
use crate::error::Result;
use std::path::Path;

impl CliRuntime {
    /// Creates the container with the runtime's stdio on /dev/null.
    pub(super) async fn create_container(&self, id: &str, bundle: &Path) -> Result<()> {
        let bundle = bundle.to_string_lossy();
        self.run(id, &["create", "--bundle", &bundle, id])
            .await
            .map(drop)
    }
}
