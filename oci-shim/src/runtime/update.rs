//! `update --resources`.

use super::CliRuntime;
use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use std::io::Write;

impl CliRuntime {
    /// Applies new cgroup resources to the running container.
    pub(super) async fn update_container(
        &self,
        id: &str,
        resources: &LinuxResources,
    ) -> Result<()> {
        let json = serde_json::to_vec(resources).map_err(|e| Error::Spec(e.to_string()))?;
        let file = super::cli::blocking(move || {
            let mut file = tempfile::NamedTempFile::new()
                .map_err(|e| Error::io("resources file", std::env::temp_dir(), "create", e))?;
            file.write_all(&json)
                .map_err(|e| Error::io("resources file", file.path(), "write", e))?;
            Ok::<_, Error>(file)
        })
        .await?;
        let path = file.path().to_string_lossy().into_owned();
        self.run(id, &["update", "--resources", &path, id])
            .await
            .map(drop)
    }
}
