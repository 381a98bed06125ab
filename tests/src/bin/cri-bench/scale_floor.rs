//! The floor at scale (issue #20): the scale run's work done by bare `runc`
//! and the CNI plugins, with no daemon, the same number of workers at once.
//!
//! Per pod, building: a pinned network namespace, CNI ADD of the node's
//! network (bridge with masquerading, portmap), and two copies of the
//! reference busybox container created and started in it. Tearing down:
//! each container killed, reaped (this process is their subreaper, as a
//! shim would be) and deleted, then CNI DEL and the pin's removal. No pause
//! container, no records, no logs: what is left is what any runtime that
//! uses runc and these plugins must pay, so `floor / containerd` is the
//! lowest ratio any such runtime could reach on this machine.

use crate::floor::{for_each_namespace, path, set_cgroup, Floor};
use anyhow::{Context, Result};
use cni::{PodNetwork, PodNetworkRequest};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Containers per pod, as in the scale run.
const CONTAINERS: usize = 2;

/// The floor's wall times.
#[derive(Debug, Clone, Copy)]
pub struct FloorScale {
    /// Every pod attached and its containers started.
    pub build: Duration,
    /// Every container gone, every pod detached and unpinned.
    pub teardown: Duration,
}

/// Builds and tears down `pods` floor pods, `workers` at once. Blocking:
/// call it off the async workers; `handle` runs the CNI calls.
pub fn run(
    floor: &Floor,
    handle: &tokio::runtime::Handle,
    pods: usize,
    workers: usize,
) -> Result<FloorScale> {
    let dir = floor.dir().join("scale");
    let pins = netns::PinDir::prepare(dir.join("netns")).context("floor pin directory")?;
    let mut config = cni::CniManagerConfig::new("/etc/cni/net.d", dir.join("cni-cache"));
    config.watch_interval = None;
    let net = cni::CniManager::new(config).context("floor CNI")?;
    let pod = |i: usize| FloorPod {
        name: format!("floor-scale-{i}"),
        pin: pins.path().join(format!("floor-scale-{i}")),
    };
    // Killed inits come back to this process instead of PID 1, which here
    // never reaps them.
    set_subreaper(true)?;
    let result = (|| {
        let started = Instant::now();
        each(pods, workers, |i| {
            pods_build(floor, handle, &net, &pins, &pod(i))
                .with_context(|| format!("floor pod {i}"))
        })?;
        let build = started.elapsed();
        let started = Instant::now();
        each(pods, workers, |i| {
            pod_teardown(floor, handle, &net, &pins, &pod(i))
                .with_context(|| format!("floor pod {i} teardown"))
        })?;
        Ok(FloorScale {
            build,
            teardown: started.elapsed(),
        })
    })();
    let _ = set_subreaper(false);
    // The pin directory is a private bind mount of itself.
    let _ = nix::mount::umount2(pins.path(), nix::mount::MntFlags::MNT_DETACH);
    result
}

/// One floor pod's names.
struct FloorPod {
    name: String,
    pin: PathBuf,
}

impl FloorPod {
    fn container(&self, c: usize) -> String {
        format!("{}-c{c}", self.name)
    }

    fn request(&self) -> PodNetworkRequest {
        PodNetworkRequest::new(&self.name, &self.pin)
    }
}

fn pods_build(
    floor: &Floor,
    handle: &tokio::runtime::Handle,
    net: &cni::CniManager,
    pins: &netns::PinDir,
    pod: &FloorPod,
) -> Result<()> {
    pins.create(&pod.name).context("pin")?;
    handle
        .block_on(net.setup(&pod.request()))
        .context("CNI ADD")?;
    for c in 0..CONTAINERS {
        let id = pod.container(c);
        let mut config = floor.container_config().clone();
        set_cgroup(&mut config, &id)?;
        // The pod's network by path; the rest of its own.
        for_each_namespace(&mut config, |kind, ns| {
            if let Some(obj) = ns.as_object_mut() {
                if kind == "network" {
                    obj.insert("path".into(), path(&pod.pin).into());
                } else {
                    obj.remove("path");
                }
            }
        })?;
        let bundle = floor.bundle(&id, &config)?;
        let pid_file = bundle.join("pid");
        floor.runc(&[
            "create",
            "--bundle",
            path(&bundle),
            "--pid-file",
            path(&pid_file),
            &id,
        ])?;
        floor.runc(&["start", &id])?;
    }
    Ok(())
}

fn pod_teardown(
    floor: &Floor,
    handle: &tokio::runtime::Handle,
    net: &cni::CniManager,
    pins: &netns::PinDir,
    pod: &FloorPod,
) -> Result<()> {
    for c in 0..CONTAINERS {
        let id = pod.container(c);
        let bundle = floor.dir().join("bundles").join(&id);
        let pid = read_pid(&bundle.join("pid"))?;
        floor.runc(&["kill", &id, "KILL"])?;
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
            .with_context(|| format!("reap {id} (pid {pid})"))?;
        floor.runc(&["delete", &id])?;
        let _ = std::fs::remove_dir_all(&bundle);
    }
    handle
        .block_on(net.teardown(&pod.request()))
        .context("CNI DEL")?;
    pins.remove(&pod.name).context("unpin")?;
    Ok(())
}

fn read_pid(file: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: not a pid: {text:?}", file.display()))
}

/// Runs `job(i)` for every `i` below `count` on `workers` threads.
fn each(count: usize, workers: usize, job: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok(());
                    }
                    job(i)?;
                })
            })
            .collect();
        threads.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| anyhow::bail!("floor worker panicked"))
        })
    })
}

fn set_subreaper(on: bool) -> Result<()> {
    nix::sys::prctl::set_child_subreaper(on).context("prctl(PR_SET_CHILD_SUBREAPER)")
}
