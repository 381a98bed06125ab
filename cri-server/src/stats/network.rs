//! A pod's network counters: through its infra process where it has one
//! (that process lives in the pod's network namespace, so
//! `/proc/<pid>/net/dev` lists the pod's interfaces without any namespace
//! switch), otherwise from a thread that enters the pinned namespace.

use cri_api::v1 as cri;

/// One interface's counters, as `/proc/net/dev` gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// The interface name, e.g. `eth0`.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Packets dropped while receiving.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Packets dropped while sending.
    pub tx_dropped: u64,
}

impl InterfaceCounters {
    /// The subset CRI's stats carry.
    pub fn to_cri(&self) -> cri::NetworkInterfaceUsage {
        let v = |value| Some(cri::UInt64Value { value });
        cri::NetworkInterfaceUsage {
            name: self.name.clone(),
            rx_bytes: v(self.rx_bytes),
            rx_errors: v(self.rx_errors),
            tx_bytes: v(self.tx_bytes),
            tx_errors: v(self.tx_errors),
        }
    }
}

/// Where a pod's network namespace is reached from.
#[derive(Debug, Clone)]
pub enum Namespace {
    /// The namespace this process (the infra container's) is in.
    Process(i32),
    /// The pinned namespace at this path.
    Pinned(std::path::PathBuf),
}

impl Namespace {
    /// The namespace of a running pod with a network of its own: its infra
    /// process's, or its pin's.
    pub fn of(sandbox: &sandbox_core::Sandbox) -> Option<Namespace> {
        let pin = sandbox.netns_path.clone()?;
        match sandbox.infra_container.as_ref().and_then(|c| c.pid) {
            Some(pid) => Some(Namespace::Process(pid)),
            None => Some(Namespace::Pinned(pin)),
        }
    }

    /// `/proc/net/dev` as seen in the namespace; empty when it is gone.
    fn net_dev(&self) -> String {
        match self {
            Namespace::Process(pid) => {
                std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default()
            }
            // thread-self: the entering thread's namespace, not the process's.
            Namespace::Pinned(path) => netns::NetNs::open(path)
                .and_then(|ns| ns.run_in(|| std::fs::read_to_string("/proc/thread-self/net/dev")))
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
        }
    }
}

/// The pod's interfaces (loopback left out) in namespace `ns`; empty when
/// it is gone.
pub fn interfaces(ns: &Namespace) -> Vec<InterfaceCounters> {
    let text = ns.net_dev();
    parse(&text)
        .into_iter()
        .filter(|i| i.name != "lo")
        .collect()
}

/// Interface counters of namespace `ns`; the default interface is `eth0`
/// (what CNI names it).
pub fn usage(ns: &Namespace, now: i64) -> cri::NetworkUsage {
    let interfaces = interfaces(ns);
    cri::NetworkUsage {
        timestamp: now,
        default_interface: interfaces
            .iter()
            .find(|i| i.name == "eth0")
            .map(InterfaceCounters::to_cri),
        interfaces: interfaces.iter().map(InterfaceCounters::to_cri).collect(),
    }
}

/// Parses `/proc/net/dev`; lines that do not have its 16 counters are
/// skipped.
pub fn parse(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if f.len() < 16 {
                return None;
            }
            Some(InterfaceCounters {
                name: name.trim().to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_dev_parses() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2000      20    3    4    0     0          0         0     1000      10    1    5    0     0       0          0\n";
        let ifs = parse(text);
        assert_eq!(ifs.len(), 2);
        assert_eq!(
            ifs[1],
            InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 2000,
                rx_packets: 20,
                rx_errors: 3,
                rx_dropped: 4,
                tx_bytes: 1000,
                tx_packets: 10,
                tx_errors: 1,
                tx_dropped: 5,
            }
        );
        let cri = ifs[1].to_cri();
        assert_eq!(cri.rx_bytes.unwrap().value, 2000);
        assert_eq!(cri.tx_errors.unwrap().value, 1);
    }

    #[test]
    fn short_lines_are_skipped() {
        assert!(parse("h\nh\n eth0: 1 2 3\n").is_empty());
    }
}
