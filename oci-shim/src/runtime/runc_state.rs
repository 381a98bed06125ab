//! What runc keeps about a container in `<root>/<id>/state.json`
//! (libcontainer's `State`), read only as far as [`super::stopped_runc`]
//! and [`super::created_runc`] need to tell whether runc's own `delete` or
//! `start` would do more than they do.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The parts of `state.json` that matter here; other fields are ignored,
/// and a file without these is not read at all.
#[derive(Deserialize)]
pub(super) struct State {
    pub init_process_pid: i32,
    /// The init's start time, in clock ticks after boot.
    pub init_process_start: u64,
    #[serde(default)]
    pub cgroup_paths: BTreeMap<String, String>,
    #[serde(default)]
    pub intel_rdt_path: Option<String>,
    pub config: Config,
}

/// The container's libcontainer configuration.
#[derive(Deserialize)]
pub(super) struct Config {
    #[serde(default)]
    pub cgroups: Option<Cgroups>,
    #[serde(default, rename = "Hooks")]
    hooks: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// Network devices moved into the container (newer runc), which its
    /// delete moves back.
    #[serde(default, rename = "netDevices")]
    pub net_devices: Option<serde_json::Value>,
}

/// How the container's cgroups are managed.
#[derive(Deserialize)]
pub(super) struct Cgroups {
    #[serde(default)]
    pub systemd: bool,
}

/// A namespace the container was given: a new one (`path` empty) or one it
/// joined.
#[derive(Deserialize)]
pub(super) struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: String,
}

impl State {
    /// The state of container `id` under runc root `root`, if it has one
    /// of the expected shape.
    pub fn load(root: &Path, id: &str) -> Option<State> {
        let text = std::fs::read(root.join(id).join("state.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Whether the init still exists, running or not yet reaped.
    pub fn init_alive(&self) -> bool {
        process_started_at(self.init_process_pid, self.init_process_start)
    }
}

impl Config {
    /// Whether hooks of kind `kind` (`poststop`, `poststart`) are set.
    pub fn has_hooks(&self, kind: &str) -> bool {
        self.hooks
            .as_ref()
            .and_then(|h| h.get(kind))
            .is_some_and(|v| !is_empty(v))
    }
}

/// Null, `{}` and `[]`, as runc writes what is not set.
pub(super) fn is_empty(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Object(m) => m.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Whether process `pid` started at `start` (clock ticks after boot, as in
/// `/proc/<pid>/stat`) exists: a pid with another start time is a
/// recycled one.
fn process_started_at(pid: i32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    start_time(&stat) == Some(start)
}

/// The start time (field 22) of a `/proc/<pid>/stat` line.
pub(super) fn start_time(stat: &str) -> Option<u64> {
    super::process_tree::fields_after_comm(stat)?
        .nth(19)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_reads_past_a_command_with_spaces() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 777 1000 10";
        assert_eq!(start_time(stat), Some(777));
        assert_eq!(start_time("garbage"), None);
    }

    #[test]
    fn the_calling_process_is_alive_and_a_recycled_pid_is_not() {
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        let start = start_time(&me).unwrap();
        let pid = std::process::id() as i32;
        assert!(process_started_at(pid, start));
        assert!(!process_started_at(pid, start + 1));
        assert!(!process_started_at(0, start), "pid 0 is no process");
    }

    #[test]
    fn hooks_runc_writes_as_null_are_none() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "Hooks": {"poststart": null, "poststop": [], "prestart": [{"path": "/x"}]},
        }))
        .unwrap();
        assert!(!config.has_hooks("poststart"));
        assert!(!config.has_hooks("poststop"));
        assert!(config.has_hooks("prestart"));
    }
}
