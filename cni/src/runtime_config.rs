//! `runtimeConfig`: the per-pod arguments a plugin receives for the
//! capabilities it declares in its configuration.
//!
//! Only declared capabilities are passed; a plugin that did not ask for
//! `portMappings` never sees the pod's ports.

use crate::config::PluginConfig;
use crate::network::{PodNetworkRequest, Protocol};
use serde_json::{json, Map, Value};

/// The `runtimeConfig` object for `plugin` running for `pod`, or `None` when
/// the plugin declares none of the capabilities the pod has values for.
///
/// # Examples
///
/// ```
/// use cni::{NetworkConfigList, PodNetworkRequest, PortMapping, Protocol};
/// let list = NetworkConfigList::from_conflist_bytes(br#"{"cniVersion":"1.0.0","name":"n",
///   "plugins":[{"type":"portmap","capabilities":{"portMappings":true}}]}"#, "x").unwrap();
/// let mut pod = PodNetworkRequest::new("c1", "/run/netns/p");
/// pod.port_mappings.push(PortMapping { host_port: 8080, container_port: 80,
///     protocol: Protocol::Tcp, host_ip: None });
/// let rc = cni::runtime_config_for(&list.plugins()[0], &pod).unwrap();
/// assert_eq!(rc["portMappings"][0]["hostPort"], 8080);
/// ```
pub fn runtime_config_for(plugin: &PluginConfig, pod: &PodNetworkRequest) -> Option<Value> {
    let mut rc = Map::new();
    if plugin.has_capability("portMappings") && !pod.port_mappings.is_empty() {
        let maps = pod
            .port_mappings
            .iter()
            .map(|p| {
                let mut m = json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": match p.protocol {
                        Protocol::Tcp => "tcp",
                        Protocol::Udp => "udp",
                        Protocol::Sctp => "sctp",
                    },
                });
                if let (Some(ip), Value::Object(obj)) = (p.host_ip, &mut m) {
                    obj.insert("hostIP".into(), Value::String(ip.to_string()));
                }
                m
            })
            .collect();
        rc.insert("portMappings".into(), Value::Array(maps));
    }
    if let (true, Some(dns)) = (plugin.has_capability("dns"), &pod.dns) {
        rc.insert(
            "dns".into(),
            json!({"servers": dns.servers, "searches": dns.searches, "options": dns.options}),
        );
    }
    if let (true, Some(bw)) = (plugin.has_capability("bandwidth"), &pod.bandwidth) {
        rc.insert(
            "bandwidth".into(),
            json!({
                "ingressRate": bw.ingress_rate,
                "ingressBurst": bw.ingress_burst,
                "egressRate": bw.egress_rate,
                "egressBurst": bw.egress_burst,
            }),
        );
    }
    (!rc.is_empty()).then_some(Value::Object(rc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{Bandwidth, Dns, PortMapping};
    use crate::NetworkConfigList;

    fn plugins() -> NetworkConfigList {
        NetworkConfigList::from_conflist_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[
              {"type":"bridge"},
              {"type":"portmap","capabilities":{"portMappings":true}},
              {"type":"bandwidth","capabilities":{"bandwidth":true,"dns":false}},
              {"type":"dnsish","capabilities":{"dns":true}}]}"#,
            "x",
        )
        .unwrap()
    }

    fn pod() -> PodNetworkRequest {
        let mut pod = PodNetworkRequest::new("c", "/n");
        pod.port_mappings.push(PortMapping {
            host_port: 1,
            container_port: 2,
            protocol: Protocol::Udp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
        });
        pod.dns = Some(Dns {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["svc".into()],
            options: vec!["ndots:5".into()],
        });
        pod.bandwidth = Some(Bandwidth {
            ingress_rate: 1000,
            ..Default::default()
        });
        pod
    }

    #[test]
    fn only_declared_capabilities_are_passed() {
        let list = plugins();
        let pod = pod();
        let p = list.plugins();
        assert_eq!(runtime_config_for(&p[0], &pod), None);
        let pm = runtime_config_for(&p[1], &pod).unwrap();
        assert_eq!(
            pm,
            json!({"portMappings":[{"hostPort":1,"containerPort":2,"protocol":"udp","hostIP":"127.0.0.1"}]})
        );
        let bw = runtime_config_for(&p[2], &pod).unwrap();
        assert_eq!(bw["bandwidth"]["ingressRate"], 1000);
        assert!(bw.get("dns").is_none(), "dns declared false");
        let dns = runtime_config_for(&p[3], &pod).unwrap();
        assert_eq!(dns["dns"]["searches"], json!(["svc"]));
    }

    #[test]
    fn declared_but_empty_is_omitted() {
        let list = plugins();
        let pod = PodNetworkRequest::new("c", "/n");
        for p in list.plugins() {
            assert_eq!(runtime_config_for(p, &pod), None);
        }
    }
}
