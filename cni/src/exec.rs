//! Running one plugin binary: the `CNI_*` environment, the configuration on
//! stdin, the result or error object on stdout, and a deadline after which
//! the plugin (and anything it started) is killed.

use crate::error::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Directories Debian and upstream install plugins into.
pub const DEFAULT_PLUGIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

/// How long a plugin may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Most bytes kept of a plugin's stdout or stderr; results are a few KiB,
/// and a runaway plugin must not grow the daemon without bound (past the
/// cap it blocks on the full pipe and meets the timeout).
const MAX_OUTPUT: u64 = 4 << 20;

/// A CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    /// Attach.
    Add,
    /// Detach.
    Del,
    /// Verify an attachment.
    Check,
}

impl CniCommand {
    /// The `CNI_COMMAND` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        }
    }
}

/// The per-call part of a plugin's environment.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The verb.
    pub command: CniCommand,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`; empty when the namespace is gone (DEL only).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` pairs, joined as `K=V;K=V`.
    pub args: Vec<(String, String)>,
}

/// Finds and runs plugin binaries.
///
/// # Examples
///
/// ```no_run
/// use cni::exec::{CniCommand, Invocation, PluginExec};
/// # async fn demo() -> Result<(), cni::Error> {
/// let exec = PluginExec::new(["/usr/lib/cni"], std::time::Duration::from_secs(10));
/// let inv = Invocation {
///     command: CniCommand::Del,
///     container_id: "c1".into(),
///     netns: String::new(),
///     ifname: "eth0".into(),
///     args: vec![],
/// };
/// let conf = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"loopback"});
/// exec.run("loopback", &inv, &conf).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PluginExec {
    dirs: Vec<PathBuf>,
    timeout: Duration,
}

impl PluginExec {
    /// Searches plugins in `dirs` (in order) and kills any that runs longer
    /// than `timeout`.
    pub fn new<P: Into<PathBuf>>(dirs: impl IntoIterator<Item = P>, timeout: Duration) -> Self {
        Self {
            dirs: dirs.into_iter().map(Into::into).collect(),
            timeout,
        }
    }

    /// The plugin directories, in search order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The first executable file named `plugin` in the plugin directories.
    pub fn find(&self, plugin: &str) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        self.dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| Error::PluginNotFound {
                plugin: plugin.to_string(),
                dirs: self.dirs.clone(),
            })
    }

    /// Runs `plugin` with `config` on stdin. ADD returns the plugin's result;
    /// DEL and CHECK return `None`. A CNI error object becomes
    /// [`Error::PluginError`], any other failure [`Error::PluginFailed`], and
    /// a plugin still running at the deadline is killed with its whole
    /// process group and reported as [`Error::PluginTimeout`].
    pub async fn run(
        &self,
        plugin: &str,
        inv: &Invocation,
        config: &Value,
    ) -> Result<Option<Value>> {
        let path = self.find(plugin)?;
        let command = inv.command.as_str();
        let spawn_err = |source| Error::PluginSpawn {
            plugin: plugin.to_string(),
            command,
            path: path.clone(),
            source,
        };
        let stdin_bytes = serde_json::to_vec(config).map_err(|e| Error::PluginOutput {
            plugin: plugin.to_string(),
            command,
            container_id: inv.container_id.clone(),
            reason: format!("cannot encode config: {e}"),
        })?;
        let cni_path = std::env::join_paths(&self.dirs)
            .map_err(|e| spawn_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let args = inv
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let mut cmd = tokio::process::Command::new(&path);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &inv.container_id)
            .env("CNI_NETNS", &inv.netns)
            .env("CNI_IFNAME", &inv.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills helpers it started
            // (a shell plugin's `sleep`, iptables) and not just the parent.
            .process_group(0)
            // Never killed because our future is dropped (the daemon exits
            // under it): a plugin cut short halfway leaves what no later DEL
            // undoes (bridge's masquerading chain once its interface is
            // gone). Only the deadline below kills it.
            .kill_on_drop(false);
        let mut child = spawn_retrying(cmd).await.map_err(spawn_err)?;
        let pid = child.id();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let finished =
            tokio::time::timeout_at(deadline, communicate(&mut child, stdin_bytes)).await;
        let Ok((stdout, stderr, status)) = finished else {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The group may already be gone; the wait below settles it.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill().await;
            return Err(Error::PluginTimeout {
                plugin: plugin.to_string(),
                command,
                container_id: inv.container_id.clone(),
                timeout: self.timeout,
            });
        };
        let status = status.map_err(spawn_err)?;
        interpret(plugin, inv, status, &stdout, &stderr)
    }
}

/// Spawns `cmd`, retrying briefly on ETXTBSY: the binary is being replaced
/// (package upgrade) or a concurrent fork briefly holds a write fd to it; it
/// clears within milliseconds.
///
/// Spawned on the blocking pool, not on the calling worker: the standard
/// library spawns with `CLONE_VFORK`, which holds the calling thread until
/// the child has exec'd, and on a node busy tearing pods down the child
/// first waits for a CPU. At 110 pods the daemon's async workers spent
/// 111 ms of 4 s so, up to 4 ms at once, with every task queued on them
/// waiting too.
async fn spawn_retrying(
    mut cmd: tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        let (returned, spawned) = tokio::task::spawn_blocking(move || {
            let spawned = cmd.spawn();
            (cmd, spawned)
        })
        .await
        .map_err(std::io::Error::other)?;
        cmd = returned;
        match spawned {
            Err(e)
                if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && attempt < 5 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// Feeds the plugin its config and drains stdout and stderr concurrently
/// (a plugin that fills a pipe before reading its config must not deadlock
/// us), then waits for it.
async fn communicate(
    child: &mut tokio::process::Child,
    stdin_bytes: Vec<u8>,
) -> (Vec<u8>, Vec<u8>, std::io::Result<std::process::ExitStatus>) {
    let mut stdin = child.stdin.take();
    let feed = async move {
        if let Some(s) = stdin.as_mut() {
            // A plugin may exit without reading stdin; that is its
            // business, its exit status tells what happened.
            let _ = s.write_all(&stdin_bytes).await;
        }
        drop(stdin);
    };
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let read_out = async {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.take(MAX_OUTPUT).read_to_end(&mut buf).await;
        }
        buf
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.take(MAX_OUTPUT).read_to_end(&mut buf).await;
        }
        buf
    };
    let ((), stdout, stderr, status) = tokio::join!(feed, read_out, read_err, child.wait());
    (stdout, stderr, status)
}

fn interpret(
    plugin: &str,
    inv: &Invocation,
    status: std::process::ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<Option<Value>> {
    let command = inv.command.as_str();
    if !status.success() {
        if let Some(e) = parse_error_object(stdout) {
            return Err(Error::PluginError {
                plugin: plugin.to_string(),
                command,
                container_id: inv.container_id.clone(),
                code: e.0,
                msg: e.1,
                details: e.2,
            });
        }
        let detail = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            stderr
        } else {
            stdout
        };
        return Err(Error::PluginFailed {
            plugin: plugin.to_string(),
            command,
            container_id: inv.container_id.clone(),
            status: status.to_string(),
            detail: String::from_utf8_lossy(detail).trim().to_string(),
        });
    }
    if inv.command != CniCommand::Add {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(stdout).map_err(|e| Error::PluginOutput {
        plugin: plugin.to_string(),
        command,
        container_id: inv.container_id.clone(),
        reason: format!("{e}: {:?}", String::from_utf8_lossy(stdout)),
    })?;
    if !value.is_object() {
        return Err(Error::PluginOutput {
            plugin: plugin.to_string(),
            command,
            container_id: inv.container_id.clone(),
            reason: "result is not a JSON object".into(),
        });
    }
    Ok(Some(value))
}

/// `(code, msg, details)` when `stdout` is a CNI error object.
fn parse_error_object(stdout: &[u8]) -> Option<(u64, String, String)> {
    let v: Value = serde_json::from_slice(stdout).ok()?;
    let code = v.get("code")?.as_u64()?;
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some((code, text("msg"), text("details")))
}

/// Whether a path is a usable namespace path to hand to plugins.
pub(crate) fn netns_arg(path: &Path) -> String {
    if path.as_os_str().is_empty() || !path.exists() {
        String::new()
    } else {
        path.to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn inv(command: CniCommand) -> Invocation {
        Invocation {
            command,
            container_id: "c1".into(),
            netns: String::new(),
            ifname: "eth0".into(),
            args: vec![],
        }
    }

    #[test]
    fn error_object_becomes_plugin_error() {
        let out = br#"{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"ipam"}"#;
        let err = interpret(
            "bridge",
            &inv(CniCommand::Add),
            ExitStatusExt::from_raw(1 << 8),
            out,
            b"",
        )
        .unwrap_err();
        match &err {
            Error::PluginError {
                plugin,
                code,
                msg,
                details,
                ..
            } => {
                assert_eq!(
                    (plugin.as_str(), *code, msg.as_str(), details.as_str()),
                    ("bridge", 7, "bad config", "ipam")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(err
            .to_string()
            .contains("bridge (ADD, container c1): error 7: bad config (ipam)"));
    }

    #[test]
    fn non_zero_exit_without_object_uses_stderr() {
        let err = interpret(
            "x",
            &inv(CniCommand::Del),
            ExitStatusExt::from_raw(2 << 8),
            b"",
            b"boom\n",
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::PluginFailed { detail, .. } if detail == "boom"),
            "{err:?}"
        );
    }

    #[test]
    fn add_needs_a_json_object_and_del_ignores_stdout() {
        let ok = ExitStatusExt::from_raw(0);
        assert!(matches!(
            interpret("x", &inv(CniCommand::Add), ok, b"hello", b""),
            Err(Error::PluginOutput { .. })
        ));
        assert!(matches!(
            interpret("x", &inv(CniCommand::Add), ok, b"[1]", b""),
            Err(Error::PluginOutput { .. })
        ));
        assert_eq!(
            interpret("x", &inv(CniCommand::Del), ok, b"junk", b"").unwrap(),
            None
        );
        let r = interpret("x", &inv(CniCommand::Add), ok, br#"{"ips":[]}"#, b"").unwrap();
        assert_eq!(r.unwrap()["ips"], serde_json::json!([]));
    }

    #[test]
    fn missing_binary_names_plugin_and_dirs() {
        let exec = PluginExec::new(["/nonexistent-cni-dir"], DEFAULT_TIMEOUT);
        let err = exec.find("bridge").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("bridge") && text.contains("/nonexistent-cni-dir"),
            "{text}"
        );
    }

    #[test]
    fn already_gone_errors_are_recognised() {
        let e = |msg: &str| Error::PluginError {
            plugin: "p".into(),
            command: "DEL",
            container_id: "c".into(),
            code: 11,
            msg: msg.into(),
            details: String::new(),
        };
        assert!(e("failed to find plugin: Link not found").is_already_gone());
        assert!(e("open /x: no such file or directory").is_already_gone());
        assert!(!e("permission denied").is_already_gone());
    }

    proptest::proptest! {
        #[test]
        fn error_object_parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = parse_error_object(&bytes);
        }
    }
}
