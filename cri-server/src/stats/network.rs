//! A pod's network counters, read through its infra process: that process
//! lives in the pod's network namespace, so `/proc/<pid>/net/dev` lists the
//! pod's interfaces without any namespace switch.

use k8s_cri::v1 as cri;

/// Interface counters of the namespace `pid` is in; the default interface
/// is `eth0` (what CNI names it).
pub fn usage(pid: i32, now: i64) -> cri::NetworkUsage {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let interfaces = parse(&text, now);
    cri::NetworkUsage {
        timestamp: now,
        default_interface: interfaces.iter().find(|i| i.name == "eth0").cloned(),
        interfaces: interfaces.into_iter().filter(|i| i.name != "lo").collect(),
    }
}

/// Parses `/proc/net/dev`.
pub fn parse(text: &str, _now: i64) -> Vec<cri::NetworkInterfaceUsage> {
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
            let v = |value| Some(cri::UInt64Value { value });
            Some(cri::NetworkInterfaceUsage {
                name: name.trim().to_string(),
                rx_bytes: v(f[0]),
                rx_errors: v(f[2]),
                tx_bytes: v(f[8]),
                tx_errors: v(f[10]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_dev_parses() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2000      20    3    0    0     0          0         0     1000      10    1    0    0     0       0          0\n";
        let ifs = parse(text, 0);
        assert_eq!(ifs.len(), 2);
        assert_eq!(ifs[1].name, "eth0");
        assert_eq!(ifs[1].rx_bytes.as_ref().unwrap().value, 2000);
        assert_eq!(ifs[1].tx_errors.as_ref().unwrap().value, 1);
    }
}
