//! The files a pod's containers share: `/etc/resolv.conf` from the pod's DNS
//! config, `/etc/hostname` and `/etc/hosts`. Written once per pod into its
//! directory (atomically) and bind-mounted into every container.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The pod's DNS settings, as CRI gives them.
#[derive(Debug, Clone, Default)]
pub struct DnsConfig {
    /// Name servers.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// resolv.conf options (`ndots:5`).
    pub options: Vec<String>,
}

/// The three files, written under `dir`.
#[derive(Debug, Clone)]
pub struct PodFiles {
    /// `resolv.conf`.
    pub resolv_conf: PathBuf,
    /// `hostname`.
    pub hostname: PathBuf,
    /// `hosts`.
    pub hosts: PathBuf,
}

impl PodFiles {
    /// Gives the files to `uid`:`gid` on the host: a pod with a user
    /// namespace then sees them owned by its own root, as on the host they
    /// belong to the host's (they are the daemon's, one copy per pod, so no
    /// idmapped mount is needed).
    pub fn chown(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        for file in [&self.resolv_conf, &self.hostname, &self.hosts] {
            std::os::unix::fs::chown(file, Some(uid), Some(gid))?;
        }
        Ok(())
    }
}

/// The file names inside a pod directory, and where each is mounted.
pub const MOUNTS: [(&str, &str); 3] = [
    ("resolv.conf", "/etc/resolv.conf"),
    ("hostname", "/etc/hostname"),
    ("hosts", "/etc/hosts"),
];

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What resolv.conf says for `dns`; `None` when the pod gives no DNS config
/// (the host's file is used then, as kubelet's `Default` policy expects).
pub fn resolv_conf(dns: &DnsConfig) -> Option<String> {
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut text = String::new();
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(text)
}

/// The hosts file: loopback names and the pod's own name on its IP.
pub fn hosts(hostname: &str, ip: Option<IpAddr>) -> String {
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = ip {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    text
}

/// Writes the pod's files into `dir`. For host-network pods the host's own
/// resolv.conf and hosts are copied; otherwise they come from the pod.
pub fn write(
    dir: &Path,
    hostname: &str,
    dns: &DnsConfig,
    ip: Option<IpAddr>,
    host_network: bool,
) -> std::io::Result<PodFiles> {
    std::fs::create_dir_all(dir)?;
    let files = PodFiles {
        resolv_conf: dir.join(MOUNTS[0].0),
        hostname: dir.join(MOUNTS[1].0),
        hosts: dir.join(MOUNTS[2].0),
    };
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match resolv_conf(dns) {
        Some(text) if !host_network => text,
        _ => host_resolv,
    };
    write_atomic(&files.resolv_conf, &resolv)?;
    write_atomic(&files.hostname, &format!("{hostname}\n"))?;
    let hosts_text = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| hosts(hostname, None))
    } else {
        hosts(hostname, ip)
    };
    write_atomic(&files.hosts, &hosts_text)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&dns).unwrap(),
            "search ns.svc.cluster.local cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"
        );
        assert!(resolv_conf(&DnsConfig::default()).is_none());
    }

    #[test]
    fn files_are_written_with_the_pod_name_and_ip() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(
            dir.path(),
            "web-0",
            &DnsConfig {
                servers: vec!["1.2.3.4".into()],
                ..Default::default()
            },
            Some("10.88.0.5".parse().unwrap()),
            false,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&files.hostname).unwrap(), "web-0\n");
        assert!(std::fs::read_to_string(&files.hosts)
            .unwrap()
            .contains("10.88.0.5\tweb-0"));
        assert_eq!(
            std::fs::read_to_string(&files.resolv_conf).unwrap(),
            "nameserver 1.2.3.4\n"
        );
    }
}
