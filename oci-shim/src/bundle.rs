//! OCI bundle directories: `config.json` written atomically next to the rootfs.

use crate::error::{Error, Result};
use oci_spec::runtime::Spec;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A bundle directory holding a complete `config.json`.
///
/// # Examples
///
/// ```no_run
/// use oci_shim::bundle::Bundle;
/// use oci_shim::spec::{ContainerSpec, HostLimits};
///
/// # fn main() -> Result<(), oci_shim::Error> {
/// let spec = ContainerSpec::new("/var/lib/ctr/c1/rootfs", ["sleep", "10"]);
/// let oci = spec.to_oci(&HostLimits::of_current_process()?)?;
/// let bundle = Bundle::write("/var/lib/ctr/c1", &oci)?;
/// assert!(bundle.config_path().exists());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    /// Creates `dir` if needed and writes `config.json` into it; readers never
    /// see a half-written file (temp file, rename).
    pub fn write(dir: impl Into<PathBuf>, spec: &Spec) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("bundle", &dir, "create", e))?;
        let json = serde_json::to_vec_pretty(spec).map_err(|e| Error::Spec(e.to_string()))?;
        let config = dir.join("config.json");
        write_atomically(&config, &json, "bundle config")?;
        Ok(Bundle { dir })
    }

    /// Opens an existing bundle directory (no check of its contents).
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        Bundle { dir: dir.into() }
    }

    /// The bundle directory, as passed to `runtime create --bundle`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Reads back `config.json`.
    pub fn read_spec(&self) -> Result<Spec> {
        let path = self.config_path();
        let text =
            std::fs::read(&path).map_err(|e| Error::io("bundle config", &path, "read", e))?;
        serde_json::from_slice(&text).map_err(|e| {
            Error::io(
                "bundle config",
                &path,
                "parse",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })
    }
}

/// Writes `data` to `path` through a temp file in the same directory and a rename.
///
/// No fsync: bundles live in the runtime state directory, which a reboot
/// makes void (it is meant to be on tmpfs), and the rename alone keeps
/// readers and crashed writers from half a file. The write is on every
/// container's start-up path, where an fsync on a disk-backed `/run` costs a
/// journal commit.
pub(crate) fn write_atomically(path: &Path, data: &[u8], what: &'static str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io(what, path, "create temp", e))?;
    tmp.write_all(data)
        .map_err(|e| Error::io(what, path, "write", e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(what, path, "rename", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{CapabilityMask, ContainerSpec, HostLimits};

    #[test]
    fn written_config_reads_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ContainerSpec::new("rootfs", ["echo", "hi"])
            .to_oci(&HostLimits {
                capabilities: CapabilityMask(u64::MAX),
                oom_score_adj: 0,
                can_lower_oom_score_adj: true,
            })
            .unwrap();
        let bundle = Bundle::write(dir.path().join("b"), &spec).unwrap();
        assert_eq!(bundle.read_spec().unwrap(), spec);
        // Only config.json: no temp file left behind.
        let names: Vec<_> = std::fs::read_dir(bundle.dir()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn unwritable_dir_names_the_path() {
        let err = Bundle::write("/proc/nope/bundle", &Spec::default()).unwrap_err();
        assert!(err.to_string().contains("/proc/nope/bundle"), "{err}");
    }
}
