//! `<runtime> features`: what an OCI runtime says it can do (the runtime-spec
//! "features" document, runc ≥ 1.1). containerd and CRI-O read it to tell
//! kubelet, per handler, whether recursive read-only mounts and user
//! namespaces work; a runtime without the command (gVisor's runsc of 2022)
//! can do none of the optional things.

use super::cli::CliRuntime;
use serde::Deserialize;
use std::process::Stdio;
use std::time::Duration;

/// How long the probe may take: it only prints a document.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a features document read; runc's is ~2 KiB.
const DOCUMENT_CAP: usize = 1 << 20;

/// The parts of the features document the daemon acts on.
///
/// # Examples
///
/// ```
/// let f = oci_shim::runtime::RuntimeFeatures::parse(
///     br#"{"mountOptions": ["ro", "rro"], "linux": {"namespaces": ["user"]}}"#,
/// ).unwrap();
/// assert!(f.recursive_read_only());
/// assert!(f.user_namespaces());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeFeatures {
    /// Mount options the runtime understands (`rro`: recursive read-only).
    #[serde(default)]
    pub mount_options: Vec<String>,
    /// Linux specifics.
    #[serde(default)]
    pub linux: LinuxFeatures,
}

/// The `linux` part of the features document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LinuxFeatures {
    /// Namespaces the runtime can create (`user`, `cgroup`, …).
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// Why a runtime's features could not be learnt; the handler is then
/// treated as having none of the optional ones.
#[derive(Debug, thiserror::Error)]
#[error("runtime handler {handler}: `{command}`: {reason}")]
pub struct FeaturesError {
    /// The handler's name.
    pub handler: String,
    /// The command run.
    pub command: String,
    /// What went wrong.
    pub reason: String,
}

impl RuntimeFeatures {
    /// Parses a features document.
    pub fn parse(document: &[u8]) -> Result<RuntimeFeatures, serde_json::Error> {
        serde_json::from_slice(document)
    }

    /// Whether mounts can be made read-only recursively (`rro`).
    pub fn recursive_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "rro")
    }

    /// Whether the runtime can create user namespaces.
    pub fn user_namespaces(&self) -> bool {
        self.linux.namespaces.iter().any(|n| n == "user")
    }
}

impl CliRuntime {
    /// Runs `<runtime> features` and parses what it prints.
    pub async fn features(&self) -> Result<RuntimeFeatures, FeaturesError> {
        let command = format!("{} features", self.config.path.display());
        let fail = |reason: String| FeaturesError {
            handler: self.config.name.clone(),
            command: command.clone(),
            reason,
        };
        let running = tokio::process::Command::new(&self.config.path)
            .arg("features")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PROBE_TIMEOUT, running)
            .await
            .map_err(|_| fail(format!("did not finish within {PROBE_TIMEOUT:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        if !output.status.success() {
            return Err(fail(format!("{} (no features command?)", output.status)));
        }
        if output.stdout.len() > DOCUMENT_CAP {
            return Err(fail(format!("printed over {DOCUMENT_CAP} bytes")));
        }
        RuntimeFeatures::parse(&output.stdout).map_err(|e| fail(format!("unparsable: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeHandlerConfig;
    use std::os::unix::fs::PermissionsExt;

    fn fake_runtime(dir: &std::path::Path, script: &str) -> CliRuntime {
        let path = dir.join("fake-runtime");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut config = RuntimeHandlerConfig::runc(dir.join("root"));
        config.path = path;
        CliRuntime::new(config)
    }

    #[tokio::test]
    async fn a_runtime_that_prints_its_features_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = fake_runtime(
            dir.path(),
            r#"[ "$1" = features ] && echo '{"ociVersionMax": "1.0.2", "mountOptions": ["rro"], "linux": {"namespaces": ["mount"]}}'"#,
        );
        let features = runtime.features().await.unwrap();
        assert!(features.recursive_read_only());
        assert!(!features.user_namespaces());
    }

    #[tokio::test]
    async fn a_runtime_without_the_command_or_with_garbage_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let old = fake_runtime(dir.path(), "echo 'unknown command' >&2; exit 1");
        let err = old.features().await.unwrap_err().to_string();
        assert!(
            err.contains("runtime handler runc") && err.contains("features"),
            "{err}"
        );
        let garbage = fake_runtime(dir.path(), "echo not json");
        assert!(garbage
            .features()
            .await
            .unwrap_err()
            .to_string()
            .contains("unparsable"));
    }

    #[test]
    fn real_runc_if_installed_offers_rro() {
        // runc 1.1.5 (Debian 12) lists rro; skip quietly elsewhere.
        let Ok(out) = std::process::Command::new("runc").arg("features").output() else {
            return;
        };
        if out.status.success() {
            assert!(RuntimeFeatures::parse(&out.stdout)
                .unwrap()
                .recursive_read_only());
        }
    }
}
