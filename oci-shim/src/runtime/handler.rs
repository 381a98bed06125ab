//! How to run one runtime handler.

use std::path::{Path, PathBuf};

/// Which command-line dialect a handler speaks, for the few places where
/// runsc and runc differ (killing an exec's process tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// runc and compatible runtimes: container processes are host processes.
    Runc,
    /// gVisor: container processes live inside the sandbox kernel.
    Runsc,
}

/// One runtime handler: binary, extra global arguments and its own state root.
///
/// # Examples
///
/// ```
/// use oci_shim::runtime::RuntimeHandlerConfig;
///
/// let runsc = RuntimeHandlerConfig::runsc("/run/oci-shim/runsc");
/// let args = runsc.global_args("/tmp/log.json".as_ref());
/// assert!(args.contains(&"--platform=ptrace".to_string()));
/// assert!(args.contains(&"/run/oci-shim/runsc".to_string()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeHandlerConfig {
    /// Handler name, as in errors (`runc`, `runsc`).
    pub name: String,
    /// The runtime binary.
    pub path: PathBuf,
    /// Extra global arguments placed before the verb.
    pub args: Vec<String>,
    /// The runtime's state root (`--root`); every container of a pod must share it.
    pub root: PathBuf,
    /// Command-line dialect.
    pub kind: RuntimeKind,
    /// How long one runtime command (create, start, kill, delete, state,
    /// update, ...) may take before it is killed and reported: a hung
    /// runtime must never hold a pod for good. Execs have their own
    /// timeouts.
    pub timeout: std::time::Duration,
}

/// The default [`RuntimeHandlerConfig::timeout`]: far beyond any healthy
/// runtime command (runsc's create takes a few seconds), well within what
/// kubelet waits before it retries (4 minutes).
pub const DEFAULT_RUNTIME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl RuntimeHandlerConfig {
    /// runc at `/usr/sbin/runc` with state under `root`.
    pub fn runc(root: impl Into<PathBuf>) -> Self {
        RuntimeHandlerConfig {
            name: "runc".into(),
            path: "/usr/sbin/runc".into(),
            args: Vec::new(),
            root: root.into(),
            kind: RuntimeKind::Runc,
            timeout: DEFAULT_RUNTIME_TIMEOUT,
        }
    }

    /// gVisor's runsc at `/usr/bin/runsc`, host network and ptrace platform
    /// (KVM hangs and the netstack refuses the kernel on the machines we run on).
    pub fn runsc(root: impl Into<PathBuf>) -> Self {
        RuntimeHandlerConfig {
            name: "runsc".into(),
            path: "/usr/bin/runsc".into(),
            args: vec!["--network=host".into(), "--platform=ptrace".into()],
            root: root.into(),
            kind: RuntimeKind::Runsc,
            timeout: DEFAULT_RUNTIME_TIMEOUT,
        }
    }

    /// Global arguments for one invocation logging to `log` (JSON lines).
    pub fn global_args(&self, log: &Path) -> Vec<String> {
        let mut args = vec![
            "--root".to_owned(),
            self.root.to_string_lossy().into_owned(),
            "--log".to_owned(),
            log.to_string_lossy().into_owned(),
            "--log-format".to_owned(),
            "json".to_owned(),
        ];
        if self.kind == RuntimeKind::Runsc {
            // gVisor ignores a container's seccomp profile unless told to
            // load it inside the sandbox; without this, a pod that asks for
            // RuntimeDefault or a Localhost profile silently runs
            // unconfined in its sandbox. Always on: a profile is the pod's
            // own request, and an operator's `args` must not lose it.
            args.push("--oci-seccomp".to_owned());
        }
        args.extend(self.args.iter().cloned());
        args
    }
}
