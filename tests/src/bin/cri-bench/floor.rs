//! The floor: the daemon's own bundles run under bare `runc`, with no daemon,
//! no monitor and no gRPC in between.
//!
//! The bundles are copies of a reference pod's and container's `config.json`
//! as the daemon wrote them, changed only where they must be: the pause
//! container gets a fresh network namespace instead of the pod's pin, the
//! busybox container joins the floor pause's namespaces instead of the
//! reference pod's, and both get cgroups of their own. The busybox container
//! keeps the reference container's root filesystem and mounts, which stay
//! in place while the reference container runs.

use crate::stats::Samples;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The cgroup (under every controller) holding the floor's containers.
pub const CGROUP: &str = "cri-bench-floor";

/// Timings of the floor's verbs.
#[derive(Debug, Default, Clone)]
pub struct FloorSamples {
    /// `runc run -d` of the pause bundle (the floor of RunPodSandbox).
    pub run_pause: Samples,
    /// `runc create` of the busybox bundle.
    pub create: Samples,
    /// `runc start` of the busybox container.
    pub start: Samples,
    /// `runc create` + `runc start` of the same container (the floor of
    /// CreateContainer + StartContainer).
    pub create_start: Samples,
    /// `runc delete -f` of the busybox container.
    pub delete: Samples,
    /// `runc delete -f` of the pause container.
    pub delete_pause: Samples,
}

impl FloorSamples {
    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: &FloorSamples) {
        self.run_pause.extend(&other.run_pause);
        self.create.extend(&other.create);
        self.start.extend(&other.start);
        self.create_start.extend(&other.create_start);
        self.delete.extend(&other.delete);
        self.delete_pause.extend(&other.delete_pause);
    }
}

/// Bare-runc lifecycles of the daemon's bundles.
#[derive(Debug)]
pub struct Floor {
    runc: PathBuf,
    dir: PathBuf,
    root: PathBuf,
    pause: Value,
    container: Value,
    next: AtomicUsize,
}

impl Floor {
    /// Prepares the floor in `dir` from the bundles of the daemon's
    /// reference pod `pod` and container `container` (state directory
    /// `state`).
    pub fn new(runc: &Path, dir: &Path, state: &Path, pod: &str, container: &str) -> Result<Floor> {
        let read = |path: PathBuf| -> Result<(Value, PathBuf)> {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            let value =
                serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
            Ok((
                value,
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ))
        };
        let (mut pause, pause_bundle) = read(state.join("p").join(pod).join("bundle/config.json"))?;
        let (mut container, ctr_bundle) =
            read(state.join("c").join(container).join("bundle/config.json"))?;
        absolute_root(&mut pause, &pause_bundle)?;
        absolute_root(&mut container, &ctr_bundle)?;
        // A fresh network namespace stands in for the daemon's pinned one.
        for_each_namespace(&mut pause, |_, ns| {
            if let Some(obj) = ns.as_object_mut() {
                obj.remove("path");
            }
        })?;
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Floor {
            runc: runc.to_path_buf(),
            dir: dir.to_path_buf(),
            root: dir.join("runc-root"),
            pause,
            container,
            next: AtomicUsize::new(0),
        })
    }

    /// The reference container's configuration, as copied.
    pub(crate) fn container_config(&self) -> &Value {
        &self.container
    }

    /// The floor's scratch directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// One lifecycle: run the pause container, create and start the busybox
    /// container in its namespaces, then delete both. Blocking: call it on
    /// a thread of its own.
    pub fn lifecycle(&self, out: &mut FloorSamples) -> Result<()> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let pause_id = format!("floor-pause-{n}");
        let ctr_id = format!("floor-ctr-{n}");
        let mut pause = self.pause.clone();
        set_cgroup(&mut pause, &pause_id)?;
        let pause_bundle = self.bundle(&pause_id, &pause)?;
        let took = self.runc(&["run", "-d", "--bundle", path(&pause_bundle), &pause_id])?;
        out.run_pause.push(took);
        let pid = self.pid(&pause_id)?;

        let mut ctr = self.container.clone();
        set_cgroup(&mut ctr, &ctr_id)?;
        for_each_namespace(&mut ctr, |kind, ns| {
            if let (Some(obj), Some(file)) = (ns.as_object_mut(), proc_ns_file(kind)) {
                if obj.contains_key("path") {
                    obj.insert("path".into(), format!("/proc/{pid}/ns/{file}").into());
                }
            }
        })?;
        let ctr_bundle = self.bundle(&ctr_id, &ctr)?;
        let create = self.runc(&["create", "--bundle", path(&ctr_bundle), &ctr_id])?;
        let start = self.runc(&["start", &ctr_id])?;
        out.create.push(create);
        out.start.push(start);
        out.create_start.push(create + start);
        out.delete.push(self.runc(&["delete", "-f", &ctr_id])?);
        out.delete_pause
            .push(self.runc(&["delete", "-f", &pause_id])?);
        let _ = std::fs::remove_dir_all(&ctr_bundle);
        let _ = std::fs::remove_dir_all(&pause_bundle);
        Ok(())
    }

    pub(crate) fn bundle(&self, id: &str, config: &Value) -> Result<PathBuf> {
        let dir = self.dir.join("bundles").join(id);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let text = serde_json::to_vec(config)?;
        std::fs::write(dir.join("config.json"), text)
            .with_context(|| format!("write {}/config.json", dir.display()))?;
        Ok(dir)
    }

    /// Runs `runc --root <root> --log <log> <args>` and returns how long it
    /// took. The container inherits runc's stdio, so it must not be a pipe
    /// (reading it would wait for the container's end).
    pub(crate) fn runc(&self, args: &[&str]) -> Result<Duration> {
        let log = self.dir.join("runc.log");
        let start = Instant::now();
        let status = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("run {}", self.runc.display()))?;
        let took = start.elapsed();
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            bail!(
                "runc {}: {status}; log: {}",
                args.join(" "),
                tail.join(" | ")
            );
        }
        Ok(took)
    }

    fn pid(&self, id: &str) -> Result<u64> {
        let out = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.root)
            .args(["state", id])
            .output()
            .with_context(|| format!("runc state {id}"))?;
        let state: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("runc state {id}: unparsable output"))?;
        state["pid"]
            .as_u64()
            .filter(|&p| p > 0)
            .with_context(|| format!("runc state {id}: no pid"))
    }
}

/// Deletes whatever containers are left in the floor directory `dir` (after
/// a failure), then the directory and the floor's cgroups; returns how many
/// containers were left.
pub fn clean(runc: &Path, dir: &Path) -> usize {
    let root = dir.join("runc-root");
    let listed = Command::new(runc)
        .arg("--root")
        .arg(&root)
        .args(["list", "-q"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let left: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
    for id in &left {
        let _ = Command::new(runc)
            .arg("--root")
            .arg(&root)
            .args(["delete", "-f", id])
            .stderr(Stdio::null())
            .status();
    }
    remove_cgroups(CGROUP);
    let _ = std::fs::remove_dir_all(dir);
    left.len()
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Makes `root.path` absolute, since the copy lives in another bundle.
fn absolute_root(config: &mut Value, bundle: &Path) -> Result<()> {
    let root = config
        .pointer_mut("/root/path")
        .context("config.json has no root.path")?;
    let p = PathBuf::from(root.as_str().context("root.path is not a string")?);
    if p.is_relative() {
        *root = bundle.join(p).to_string_lossy().into_owned().into();
    }
    Ok(())
}

pub(crate) fn set_cgroup(config: &mut Value, id: &str) -> Result<()> {
    let linux = config
        .get_mut("linux")
        .and_then(Value::as_object_mut)
        .context("config.json has no linux section")?;
    linux.insert("cgroupsPath".into(), format!("/{CGROUP}/{id}").into());
    Ok(())
}

pub(crate) fn for_each_namespace(
    config: &mut Value,
    mut f: impl FnMut(&str, &mut Value),
) -> Result<()> {
    let namespaces = config
        .pointer_mut("/linux/namespaces")
        .and_then(Value::as_array_mut)
        .context("config.json has no linux.namespaces")?;
    for ns in namespaces {
        let kind = ns["type"].as_str().unwrap_or_default().to_string();
        f(&kind, ns);
    }
    Ok(())
}

/// The `/proc/<pid>/ns/` file of an OCI namespace type.
fn proc_ns_file(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "network" => "net",
        "ipc" => "ipc",
        "uts" => "uts",
        "pid" => "pid",
        "mount" => "mnt",
        "cgroup" => "cgroup",
        "user" => "user",
        "time" => "time",
        _ => return None,
    })
}

/// Removes `/sys/fs/cgroup/<name>` (cgroup v2) and the same directory under
/// every v1 controller, deepest first.
pub fn remove_cgroups(name: &str) {
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup").join(name)];
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(controllers.flatten().map(|c| c.path().join(name)));
    }
    for dir in dirs {
        if let Ok(children) = std::fs::read_dir(&dir) {
            for c in children.flatten() {
                if c.path().is_dir() {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_root_cgroup_and_namespaces() {
        let mut c = json!({
            "root": {"path": "rootfs"},
            "linux": {"cgroupsPath": "/cri-server/x", "namespaces": [
                {"type": "network", "path": "/run/pin"},
                {"type": "mount"},
            ]},
        });
        absolute_root(&mut c, Path::new("/b")).unwrap();
        set_cgroup(&mut c, "id").unwrap();
        for_each_namespace(&mut c, |kind, ns| {
            if let (Some(o), Some(f)) = (ns.as_object_mut(), proc_ns_file(kind)) {
                if o.contains_key("path") {
                    o.insert("path".into(), format!("/proc/1/ns/{f}").into());
                }
            }
        })
        .unwrap();
        assert_eq!(c["root"]["path"], "/b/rootfs");
        assert_eq!(c["linux"]["cgroupsPath"], format!("/{CGROUP}/id"));
        assert_eq!(c["linux"]["namespaces"][0]["path"], "/proc/1/ns/net");
        assert!(c["linux"]["namespaces"][1].get("path").is_none());
    }

    #[test]
    fn a_config_without_linux_is_an_error() {
        let mut c = json!({"root": {"path": "/r"}});
        assert!(set_cgroup(&mut c, "id").is_err());
        assert!(for_each_namespace(&mut c, |_, _| {}).is_err());
    }
}
