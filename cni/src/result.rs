//! CNI results (versions 0.4.0 and 1.0.0 share this shape; 0.4.0 adds a
//! `version` field per IP, which is kept but not needed).
//!
//! The raw JSON is what gets chained as `prevResult` and cached; this typed
//! view exists to answer "which IPs does the pod have".

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A plugin chain's final result.
///
/// # Examples
///
/// ```
/// let r: cni::CniResult = serde_json::from_str(r#"{
///   "cniVersion": "1.0.0",
///   "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
///   "ips": [{"address": "10.88.0.7/16", "gateway": "10.88.0.1", "interface": 1}]
/// }"#).unwrap();
/// assert_eq!(r.pod_ips(), vec!["10.88.0.7".parse::<std::net::IpAddr>().unwrap()]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// The specification version the result is written in.
    #[serde(default)]
    pub cni_version: String,
    /// Interfaces created, on the host and in the sandbox.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes installed in the sandbox.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// DNS settings the network suggests.
    #[serde(default)]
    pub dns: Option<ResultDns>,
}

/// An interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name (e.g. `eth0`, `veth1234`).
    pub name: String,
    /// Hardware address, when the plugin reports one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The network namespace path for sandbox interfaces; empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An address in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address in CIDR notation, e.g. `10.88.0.7/16`.
    pub address: String,
    /// Default gateway for this address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into [`CniResult::interfaces`] of the interface holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// `"4"` or `"6"` (0.4.0 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A route in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination in CIDR notation.
    pub dst: String,
    /// Next hop, when not the default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// DNS settings in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultDns {
    /// Name servers.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default)]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default)]
    pub options: Vec<String>,
}

impl IpConfig {
    /// The address without its prefix length, or `None` when the plugin
    /// wrote something that is not an address.
    ///
    /// # Examples
    ///
    /// ```
    /// let ip = cni::IpConfig { address: "fd00::5/64".into(), ..Default::default() };
    /// assert_eq!(ip.ip(), Some("fd00::5".parse().unwrap()));
    /// ```
    pub fn ip(&self) -> Option<IpAddr> {
        let addr = self.address.split('/').next()?;
        addr.parse().ok()
    }
}

impl CniResult {
    /// Parses a result from a plugin's JSON output.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value.clone())
    }

    /// Parses a result from a plugin's raw standard output (what a plugin,
    /// or a file in the attachment cache, hands over). Never panics,
    /// whatever the bytes (fuzzed from `cni/fuzz/`).
    ///
    /// # Errors
    ///
    /// The JSON error when the bytes are not a CNI result.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = cni::CniResult::from_slice(br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}"#).unwrap();
    /// assert_eq!(r.pod_ips(), ["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]);
    /// assert!(cni::CniResult::from_slice(b"\xff").is_err());
    /// ```
    pub fn from_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The pod's addresses, in result order without duplicates: those on a
    /// sandbox interface when the result says which interface holds them,
    /// otherwise every address (some plugins omit `interface`).
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let in_sandbox = |ip: &&IpConfig| {
            ip.interface
                .and_then(|i| self.interfaces.get(i))
                .is_some_and(|iface| !iface.sandbox.is_empty())
        };
        let mut chosen: Vec<&IpConfig> = self.ips.iter().filter(in_sandbox).collect();
        if chosen.is_empty() {
            chosen = self.ips.iter().collect();
        }
        let mut out = Vec::new();
        for ip in chosen.into_iter().filter_map(IpConfig::ip) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        out
    }

    /// Names of the interfaces created inside the sandbox.
    pub fn sandbox_interfaces(&self) -> Vec<&str> {
        self.interfaces
            .iter()
            .filter(|i| !i.sandbox.is_empty())
            .map(|i| i.name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_0_4_0_result_with_version_fields() {
        let r = CniResult::from_json(&json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name":"cni0","mac":"aa"},{"name":"eth0","sandbox":"/n"}],
            "ips": [
                {"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1","interface":1},
                {"version":"6","address":"fd00::2/64","interface":1}
            ],
            "routes": [{"dst":"0.0.0.0/0"}],
            "dns": {}
        }))
        .unwrap();
        assert_eq!(
            r.pod_ips(),
            vec![
                "10.1.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
        assert_eq!(r.sandbox_interfaces(), ["eth0"]);
    }

    #[test]
    fn host_side_addresses_are_not_pod_ips() {
        let r = CniResult::from_json(&json!({
            "interfaces": [{"name":"cni0"},{"name":"eth0","sandbox":"/n"}],
            "ips": [{"address":"10.1.0.1/24","interface":0},{"address":"10.1.0.9/24","interface":1}]
        }))
        .unwrap();
        assert_eq!(r.pod_ips(), vec!["10.1.0.9".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn without_interface_index_every_ip_counts_and_garbage_is_skipped() {
        let r = CniResult::from_json(&json!({
            "ips": [{"address":"10.1.0.3/24"},{"address":"nonsense"},{"address":"10.1.0.3/24"}]
        }))
        .unwrap();
        assert_eq!(r.pod_ips(), vec!["10.1.0.3".parse::<IpAddr>().unwrap()]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn address() -> impl Strategy<Value = String> {
        prop_oneof![
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, p)| format!("{}/{p}", IpAddr::from(a))),
            (any::<[u16; 8]>(), 0u8..=128)
                .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a))),
            ".{0,12}",
        ]
    }

    fn result() -> impl Strategy<Value = CniResult> {
        let interface = (
            "[a-z0-9]{0,8}",
            "[a-f0-9:]{0,17}",
            prop_oneof![Just(String::new()), "/[a-z/]{1,12}"],
        )
            .prop_map(|(name, mac, sandbox)| Interface { name, mac, sandbox });
        let ip = (address(), proptest::option::of(0usize..6)).prop_map(|(address, interface)| {
            IpConfig {
                address,
                interface,
                ..Default::default()
            }
        });
        (
            "[0-9.]{0,6}",
            proptest::collection::vec(interface, 0..4),
            proptest::collection::vec(ip, 0..6),
        )
            .prop_map(|(cni_version, interfaces, ips)| CniResult {
                cni_version,
                interfaces,
                ips,
                ..Default::default()
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(r) = CniResult::from_slice(&raw) {
                let _ = (r.pod_ips(), r.sandbox_interfaces());
            }
        }

        #[test]
        fn arbitrary_json_never_panics(json in "[\\[\\]{}\":,0-9a-z. ]{0,64}") {
            if let Ok(r) = CniResult::from_slice(json.as_bytes()) {
                let _ = (r.pod_ips(), r.sandbox_interfaces());
            }
        }

        #[test]
        fn results_round_trip_and_pod_ips_come_from_the_result(r in result()) {
            let bytes = serde_json::to_vec(&r).unwrap();
            let back = CniResult::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &r);
            let ips = r.pod_ips();
            let all: Vec<IpAddr> = r.ips.iter().filter_map(IpConfig::ip).collect();
            for ip in &ips {
                prop_assert!(all.contains(ip));
            }
            let mut unique = ips.clone();
            unique.dedup();
            prop_assert_eq!(unique.len(), ips.len());
            let on_sandbox = r.ips.iter().any(|ip| {
                ip.interface
                    .and_then(|i| r.interfaces.get(i))
                    .is_some_and(|iface| !iface.sandbox.is_empty())
            });
            if !on_sandbox {
                let mut expected = Vec::new();
                for ip in all {
                    if !expected.contains(&ip) {
                        expected.push(ip);
                    }
                }
                prop_assert_eq!(ips, expected);
            }
        }
    }
}
