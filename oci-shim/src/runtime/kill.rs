//! `kill`.

use super::CliRuntime;
use crate::error::Result;

impl CliRuntime {
    /// Signals the container's init, or all its processes.
    pub(super) async fn kill_container(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.run(id, &args).await.map(drop)
    }
}
