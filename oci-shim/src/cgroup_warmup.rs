//! Taking the cost of the first cgroup move off a container's start-up path.
//!
//! Every write to a `cgroup.procs` file takes the kernel's global
//! `cgroup_threadgroup_rwsem` for writing. Unless the cgroup file system was
//! mounted with `favordynmods`, that lock's first writer after a quiet spell
//! waits for an RCU grace period (7–15 ms on a 2-core VM), while writers that
//! follow within about one more grace period pass straight through.
//! `runc create` moves the new init process into the container's cgroups
//! about 9 ms after it starts (its Go runtime and configuration come first),
//! so on a node that is not creating containers back to back, every create
//! pays that wait in full.
//!
//! [`warm_up`] makes a move that changes nothing (the calling process into
//! the cgroup it is already in) so that the grace period runs while the
//! runtime starts: call it on a thread of its own, or from a process that has
//! nothing better to do, right after starting the runtime. If the runtime's
//! move comes while the warm-up still waits, both share the one grace period.
//!
//! Best effort: every error is ignored, since a failed warm-up only means the
//! runtime pays the wait itself.

use std::path::{Path, PathBuf};

/// Moves the calling process into its own cgroup (a no-op move) and returns
/// once the kernel has done it; see the [module documentation](self) for why.
///
/// # Examples
///
/// ```no_run
/// let runtime = std::process::Command::new("runc").args(["create", "c1"]).spawn()?;
/// // While runc starts up, pay the grace period its cgroup move would wait for.
/// oci_shim::cgroup_warmup::warm_up();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn warm_up() {
    let Ok(cgroups) = std::fs::read_to_string("/proc/self/cgroup") else {
        return;
    };
    let procs = well_known_procs_file(&cgroups, std::process::id()).or_else(|| {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        own_procs_file(&cgroups, &mounts)
    });
    if let Some(procs) = procs {
        // "0" is the writer itself.
        let _ = std::fs::write(procs, "0");
    }
}

/// Where the cgroup v2 hierarchy is usually mounted: hybrid, then unified.
const V2_MOUNT_POINTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

/// The `cgroup.procs` file of this process's cgroup v2 (`0::` line of
/// `/proc/self/cgroup`) under a usual mount point, if it lists `pid`.
///
/// mountinfo would say for certain where the hierarchy is, but the kernel
/// formats every mount of the namespace to answer, and a node with
/// hundreds of containers has thousands: every monitor reading it was a
/// measurable share of a busy node's CPU. Finding the process in the
/// file's list proves the guess, at the cost of one small read.
fn well_known_procs_file(cgroups: &str, pid: u32) -> Option<PathBuf> {
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let relative = path.trim_start_matches('/');
    V2_MOUNT_POINTS.iter().find_map(|point| {
        let procs = Path::new(point).join(relative).join("cgroup.procs");
        let listed = std::fs::read_to_string(&procs).ok()?;
        listed
            .lines()
            .any(|l| l.trim() == pid.to_string())
            .then_some(procs)
    })
}

/// The `cgroup.procs` file of the cgroup this process is in, in the first
/// hierarchy of `/proc/self/cgroup` (`cgroups`) that is mounted
/// (`/proc/self/mountinfo`, `mounts`) where it can be reached.
fn own_procs_file(cgroups: &str, mounts: &str) -> Option<PathBuf> {
    cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let mount = mounts.lines().find_map(|m| {
            let cgroup = CgroupMount::parse(m)?;
            let matches = if id == "0" {
                cgroup.v2
            } else {
                let first = controllers.split(',').next().unwrap_or_default();
                !cgroup.v2 && cgroup.options.split(',').any(|o| o == first)
            };
            matches.then_some(cgroup)
        })?;
        // A mount of a sub-tree (a cgroup namespace, a bind mount) reaches
        // only the cgroups below its root.
        let below = Path::new(path).strip_prefix(mount.root).ok()?;
        Some(Path::new(mount.point).join(below).join("cgroup.procs"))
    })
}

/// A cgroup or cgroup2 line of mountinfo.
struct CgroupMount<'a> {
    root: &'a str,
    point: &'a str,
    v2: bool,
    /// Super-block options: the v1 hierarchy's controllers are among them.
    options: &'a str,
}

impl<'a> CgroupMount<'a> {
    /// `id parent major:minor root point options [optional...] - fstype source super-options`
    fn parse(line: &'a str) -> Option<CgroupMount<'a>> {
        let (front, back) = line.split_once(" - ")?;
        let mut front = front.split(' ');
        let root = front.nth(3)?;
        let point = front.next()?;
        let mut back = back.split(' ');
        let fstype = back.next()?;
        let options = back.nth(1).unwrap_or_default();
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => return None,
        };
        // Paths with spaces are escaped as \040; cgroup mounts have none in
        // practice, and a wrong path only costs the warm-up.
        Some(CgroupMount {
            root,
            point,
            v2,
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
25 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_and_v1_hierarchies_resolve_to_the_mount_of_their_controllers() {
        let cgroups = "4:memory:/kubepods/p1\n2:cpu,cpuacct:/a\n0::/daemon.service\n";
        assert_eq!(
            own_procs_file(cgroups, HYBRID_MOUNTS).unwrap(),
            Path::new("/sys/fs/cgroup/memory/kubepods/p1/cgroup.procs")
        );
        assert_eq!(
            own_procs_file("2:cpu,cpuacct:/a\n", HYBRID_MOUNTS).unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/a/cgroup.procs")
        );
        assert_eq!(
            own_procs_file("0::/\n", HYBRID_MOUNTS).unwrap(),
            Path::new("/sys/fs/cgroup/unified/cgroup.procs")
        );
    }

    #[test]
    fn pure_v2_with_a_namespaced_root() {
        let mounts = "40 1 0:30 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_procs_file("0::/kubepods/pod1/ctr\n", mounts).unwrap(),
            Path::new("/sys/fs/cgroup/pod1/ctr/cgroup.procs")
        );
        // Outside the mounted sub-tree: unreachable.
        assert_eq!(own_procs_file("0::/elsewhere\n", mounts), None);
    }

    #[test]
    fn nothing_mounted_or_garbage_gives_nothing() {
        assert_eq!(
            own_procs_file("0::/\n", "25 1 254:0 / / rw - ext4 /dev/vda rw\n"),
            None
        );
        assert_eq!(own_procs_file("garbage", HYBRID_MOUNTS), None);
        assert_eq!(own_procs_file("", ""), None);
        assert_eq!(
            own_procs_file("7:pids:/x\n", "- - -\nshort - cgroup\n"),
            None
        );
    }

    #[test]
    fn the_usual_mount_point_is_taken_only_when_it_lists_the_process() {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        if !own.lines().any(|l| l.starts_with("0::")) {
            return; // a pure v1 host: no v2 line to try
        }
        let found = well_known_procs_file(&own, std::process::id());
        if let Some(procs) = &found {
            let listed = std::fs::read_to_string(procs).unwrap();
            assert!(listed.lines().any(|l| l == std::process::id().to_string()));
        }
        // Not listed (another pid, another path): no guess.
        assert_eq!(well_known_procs_file(&own, u32::MAX), None);
        assert_eq!(
            well_known_procs_file("0::/no/such/cgroup\n", std::process::id()),
            None
        );
        assert_eq!(
            well_known_procs_file("4:memory:/x\n", std::process::id()),
            None
        );
    }

    #[test]
    fn warm_up_leaves_the_process_where_it_was() {
        let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        warm_up();
        assert_eq!(
            std::fs::read_to_string("/proc/self/cgroup").unwrap(),
            before
        );
    }
}
