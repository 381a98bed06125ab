//! What a daemon left on the machine, read from the kernel and the runtimes
//! rather than from the daemon: monitors, mounts, network namespace pins,
//! runtime containers (and deleted ones whose cgroups are still owed),
//! cgroups, IP allocations and iptables rules. Used by
//! the chaos test and the cancellation tests to prove nothing leaks.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

/// Everything found that belongs to none of `owners` (ids of the pods and
/// containers that exist), as one line per leak. `ever` holds every id the
/// caller ever had made: host-wide state (IP allocations, iptables rules,
/// cgroups) is shared with other daemons, so only these ids count there.
pub fn find(daemon_dir: &Path, owners: &HashSet<String>, ever: &HashSet<String>) -> Vec<String> {
    let leaked = |id: &str| !owners.contains(id);
    let mut found = Vec::new();
    for (id, cmdline) in monitors(daemon_dir) {
        if leaked(&id) {
            found.push(format!("monitor of {id}: {cmdline}"));
        }
    }
    for mount in mounts(daemon_dir) {
        if !owners.iter().any(|id| mount.contains(id.as_str())) {
            found.push(format!("mount {mount}"));
        }
    }
    // A pod's pins: `<id>` (network), `<id>.ipc`, `<id>.uts`, `<id>.user`.
    for pin in dir_names(&daemon_dir.join("state/netns")) {
        if leaked(pin.split('.').next().unwrap_or_default()) {
            found.push(format!("namespace pin {pin}"));
        }
    }
    // The daemon's record of each CNI attachment: one no pod owns is an
    // attachment (IP, rules) that nothing will ever release. Its id counts
    // for the host-wide checks below too.
    let attached = dir_names(&daemon_dir.join("root/cni"));
    for id in attached.iter().filter(|id| leaked(id)) {
        found.push(format!("CNI attachment of {id}"));
        found.extend(host_state_of(id));
    }
    for handler in ["runc", "runsc"] {
        for id in runtime_containers(handler, &daemon_dir.join("state/runtimes").join(handler)) {
            if leaked(&id) {
                found.push(format!("{handler} container {id}"));
            }
        }
        // Deleted containers whose cgroups are still owed: finished in the
        // background, so only a check that never settles sees one.
        for id in dir_names(&daemon_dir.join("state/retired").join(handler)) {
            found.push(format!(
                "{handler} container {id}: deleted, cgroups not removed"
            ));
        }
    }
    for id in ever
        .iter()
        .filter(|id| leaked(id) && !attached.contains(id))
    {
        found.extend(host_state_of(id));
    }
    found
}

/// `(--id, command line)` of every live `oci-monitor` under `daemon_dir`.
pub fn monitors(daemon_dir: &Path) -> Vec<(String, String)> {
    let dir = daemon_dir.display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter(|p| {
            let status = std::fs::read_to_string(p.path().join("status")).unwrap_or_default();
            !status.contains("State:\tZ")
        })
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .filter_map(|raw| {
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_monitor = args.first().is_some_and(|a| a.ends_with("oci-monitor"));
            let line = args.join(" ");
            let id = args
                .windows(2)
                .find(|w| w[0] == "--id")
                .map(|w| w[1].clone())?;
            (is_monitor && line.contains(&dir)).then_some((id, line))
        })
        .collect()
}

/// Mount points under `daemon_dir`, but for the daemon's own
/// ([`daemon_mounts`]), which live as long as the daemon.
pub fn mounts(daemon_dir: &Path) -> Vec<String> {
    let own = daemon_mounts(daemon_dir);
    let dir = daemon_dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|mount_point| {
            mount_point.starts_with(&dir) && !own.iter().any(|o| o == mount_point)
        })
        .map(str::to_string)
        .collect()
}

/// The mounts a daemon with its directories under `daemon_dir` keeps for
/// its lifetime: the state tmpfs, the pin directory and the directory of
/// root filesystems.
pub fn daemon_mounts(daemon_dir: &Path) -> [String; 3] {
    ["state", "state/netns", "root/images/containers"]
        .map(|m| daemon_dir.join(m).display().to_string())
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The containers a runtime knows under its state root.
fn runtime_containers(handler: &str, root: &Path) -> Vec<String> {
    if !root.exists() {
        return Vec::new();
    }
    let out = Command::new(handler)
        .arg("--root")
        .arg(root)
        .args(["list", "--quiet"])
        .output();
    let Ok(out) = out else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Cgroups, IP allocations and iptables rules that name `id`.
fn host_state_of(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for controller in ["memory", "pids", "cpu,cpuacct", "unified"] {
        let path = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("cri-server")
            .join(id);
        if path.exists() {
            found.push(format!("cgroup {}", path.display()));
        }
    }
    for network in dir_names(Path::new("/var/lib/cni/networks")) {
        let dir = Path::new("/var/lib/cni/networks").join(&network);
        for ip in dir_names(&dir) {
            let owner = std::fs::read_to_string(dir.join(&ip)).unwrap_or_default();
            if owner.lines().next() == Some(id) {
                found.push(format!("IP {ip} on {network} for {id}"));
            }
        }
    }
    if let Ok(out) = Command::new("iptables-save").args(["-t", "nat"]).output() {
        for rule in String::from_utf8_lossy(&out.stdout).lines() {
            if rule.contains(id) {
                found.push(format!("iptables: {rule}"));
            }
        }
    }
    found
}
