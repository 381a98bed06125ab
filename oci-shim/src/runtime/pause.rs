//! `pause`.

use super::CliRuntime;
use crate::error::Result;

impl CliRuntime {
    /// Freezes the container.
    pub(super) async fn pause_container(&self, id: &str) -> Result<()> {
        self.run(id, &["pause", id]).await.map(drop)
    }
}
