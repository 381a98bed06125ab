//! `delete`.

use super::CliRuntime;
use crate::error::{Error, Result};

impl CliRuntime {
    /// Deletes the container; a container the runtime does not know counts as deleted.
    pub(super) async fn delete_container(&self, id: &str, force: bool) -> Result<()> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        match self.run(id, &args).await {
            Ok(_) => Ok(()),
            Err(Error::RuntimeFailed { detail, .. }) if is_not_found(&detail) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// runc says "container does not exist", runsc "... not found" / "no such file".
fn is_not_found(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("does not exist") || d.contains("not found") || d.contains("no such file")
}

#[cfg(test)]
mod tests {
    #[test]
    fn not_found_messages() {
        assert!(super::is_not_found("container does not exist"));
        assert!(super::is_not_found(
            "loading container: file does not exist"
        ));
        assert!(!super::is_not_found("device or resource busy"));
    }
}
