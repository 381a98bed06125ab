//! `start`.

use super::CliRuntime;
use crate::error::Result;

impl CliRuntime {
    /// Starts the user process of a created container.
    pub(super) async fn start_container(&self, id: &str) -> Result<()> {
        self.run(id, &["start", id]).await.map(drop)
    }
}
