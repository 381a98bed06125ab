//! `resume`.

use super::CliRuntime;
use crate::error::Result;

impl CliRuntime {
    /// Thaws the container.
    pub(super) async fn resume_container(&self, id: &str) -> Result<()> {
        self.run(id, &["resume", id]).await.map(drop)
    }
}
