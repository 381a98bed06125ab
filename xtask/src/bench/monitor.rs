//! Memory of the per-container monitor (owned by the oci-shim work).

use anyhow::Result;
use std::path::Path;

/// Measures monitor PSS with containers running.
pub fn run(_root: &Path) -> Result<()> {
    anyhow::bail!("monitor benchmark: not written yet")
}
