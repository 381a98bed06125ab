//! Image pull/unpack and image metadata latency (owned by the image-store work).

use anyhow::Result;
use std::path::Path;

/// Measures pull-and-unpack time and image listing latency.
pub fn run(_root: &Path) -> Result<()> {
    anyhow::bail!("image benchmark: not written yet")
}
