//! What the test suite may not leave on the machine: pod network state that
//! outlives every daemon, because it is host-wide rather than under a
//! daemon's directories.
//!
//! A test's daemon keeps its state in a temporary directory; a pod whose
//! CNI DEL never ran leaves its address allocation (host-local IPAM, under
//! `/var/lib/cni/networks`) and its masquerading chain (`iptables -t nat`)
//! behind for good once that directory is gone. Nothing would ever release
//! them, and every later `iptables` run of every CNI ADD and DEL on the
//! machine pays for the extra rules (a bridge ADD here took 60 ms with 280
//! leaked chains, 35 ms without).

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Where host-local keeps one file per allocated address, per network.
const IPAM_DIR: &str = "/var/lib/cni/networks";

/// The machine's pod network state at one moment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Snapshot(BTreeSet<String>);

impl Snapshot {
    /// Reads the address allocations and CNI nat chains present now.
    pub fn take() -> Result<Snapshot> {
        let mut found = BTreeSet::new();
        for network in entries(Path::new(IPAM_DIR))? {
            for file in entries(&Path::new(IPAM_DIR).join(&network))? {
                if is_allocation(&file) {
                    found.insert(format!("address {file} allocated in network {network}"));
                }
            }
        }
        let rules = Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .context("run iptables-save")?;
        found.extend(cni_chains(&String::from_utf8_lossy(&rules.stdout)));
        Ok(Snapshot(found))
    }

    /// Fails naming everything present now that was not in `before`.
    pub fn check_nothing_new_since(&self, before: &Snapshot) -> Result<()> {
        let new: Vec<&String> = self.0.difference(&before.0).collect();
        if new.is_empty() {
            return Ok(());
        }
        let list: Vec<&str> = new.iter().map(|s| s.as_str()).collect();
        bail!(
            "the tests left pod network state on the machine ({} items):\n  {}",
            new.len(),
            list.join("\n  ")
        )
    }
}

/// Names in `dir`; none when it does not exist (no pod network ever ran).
fn entries(dir: &Path) -> Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(read) => Ok(read
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("read {}", dir.display())),
    }
}

/// host-local's files other than an allocation: its lock and the last
/// address it handed out per range.
fn is_allocation(file: &str) -> bool {
    file != "lock" && !file.starts_with("last_reserved_ip")
}

/// The per-pod chains of the bridge plugin's masquerading (`CNI-` and 24
/// hex digits) in `iptables-save` output; the shared `CNI-HOSTPORT-*`
/// chains of portmap stay for good by design.
fn cni_chains(save: &str) -> impl Iterator<Item = String> + '_ {
    save.lines()
        .filter_map(|line| line.strip_prefix(':'))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|chain| {
            chain
                .strip_prefix("CNI-")
                .is_some_and(|rest| rest.len() == 24 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .map(|chain| format!("iptables nat chain {chain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_per_pod_chains_only() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:CNI-HOSTPORT-DNAT - [0:0]\n\
                    :CNI-f4421a9c14d072f61175e4f0 - [0:0]\n\
                    -A POSTROUTING -j CNI-f4421a9c14d072f61175e4f0\nCOMMIT\n";
        let chains: Vec<String> = cni_chains(save).collect();
        assert_eq!(chains, ["iptables nat chain CNI-f4421a9c14d072f61175e4f0"]);
    }

    #[test]
    fn names_only_what_is_new() {
        let before = Snapshot(["a".to_string()].into());
        let same = Snapshot(["a".to_string()].into());
        assert!(same.check_nothing_new_since(&before).is_ok());
        let more = Snapshot(["a".to_string(), "b".to_string()].into());
        let err = more.check_nothing_new_since(&before).unwrap_err();
        assert!(err.to_string().contains("(1 items)"), "{err}");
        assert!(err.to_string().ends_with("b"), "{err}");
        assert!(!is_allocation("last_reserved_ip.0") && !is_allocation("lock"));
        assert!(is_allocation("10.88.0.5"));
    }
}
