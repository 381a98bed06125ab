//! `delete`.

use super::stopped_runc::{self, Outcome};
use super::{CliRuntime, RuntimeKind};
use crate::error::{Error, Result};
use std::path::Path;

impl CliRuntime {
    /// Deletes the container; a container the runtime does not know counts as deleted.
    ///
    /// A runc container whose init has exited is deleted without starting
    /// runc when that is only removing its cgroups and state directory
    /// ([`stopped_runc`]); anything more is runc's. With a
    /// [`Retirement`](super::Retirement), those cgroups are removed after
    /// this returns.
    pub(super) async fn delete_container(&self, id: &str, force: bool) -> Result<()> {
        if self.config.kind == RuntimeKind::Runc {
            let (root, owned_id) = (self.config.root.clone(), id.to_owned());
            let retirement = self.retirement.clone();
            let outcome = super::cli::blocking(move || {
                let cgroup_root = retirement
                    .as_ref()
                    .map_or(Path::new(stopped_runc::CGROUP_ROOT), |r| r.cgroup_root());
                stopped_runc::delete(&root, &owned_id, cgroup_root, retirement.as_ref())
            })
            .await;
            match outcome {
                Outcome::Deleted => return Ok(()),
                Outcome::Retired(retired) => {
                    if let Some(retirement) = &self.retirement {
                        retirement.hand_over(retired);
                    }
                    return Ok(());
                }
                Outcome::Declined(why) => {
                    tracing::debug!(container = %id, why, "deleting through the runtime")
                }
            }
        }
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
