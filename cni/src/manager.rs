//! [`CniManager`]: the [`PodNetwork`] that runs real plugins.

use crate::cache::{CacheEntry, ResultCache};
use crate::config::NetworkConfigList;
use crate::error::{Error, NotReadyReason, Result};
use crate::exec::{
    netns_arg, CniCommand, Invocation, PluginExec, DEFAULT_PLUGIN_DIRS, DEFAULT_TIMEOUT,
};
use crate::loader::{ConfigLoader, ConfigWatcher};
use crate::network::{NetworkStatus, PodNetwork, PodNetworkRequest};
use crate::result::CniResult;
use crate::runtime_config::runtime_config_for;
use async_trait::async_trait;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where [`CniManager`] finds configs and plugins, and keeps its cache.
#[derive(Debug, Clone)]
pub struct CniManagerConfig {
    /// Directory of network configurations (normally `/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Directories searched for plugin binaries, in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// Directory of the ADD result cache; must survive daemon restarts.
    pub cache_dir: PathBuf,
    /// How long one plugin may run before it is killed.
    pub plugin_timeout: Duration,
    /// How often to look for config changes; `None` loads once.
    pub watch_interval: Option<Duration>,
}

impl CniManagerConfig {
    /// Configs from `conf_dir`, cache in `cache_dir`, Debian's and the
    /// upstream plugin directories, a 60 s plugin timeout and a 1 s poll.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = cni::CniManagerConfig::new("/etc/cni/net.d", "/var/lib/cri-server/cni");
    /// assert_eq!(c.plugin_dirs[0], std::path::Path::new("/usr/lib/cni"));
    /// ```
    pub fn new(conf_dir: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            conf_dir: conf_dir.into(),
            plugin_dirs: DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
            cache_dir: cache_dir.into(),
            plugin_timeout: DEFAULT_TIMEOUT,
            watch_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// Runs CNI plugin chains for pods.
///
/// # Examples
///
/// ```no_run
/// use cni::{CniManager, CniManagerConfig, PodNetwork, PodNetworkRequest};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let net = CniManager::new(CniManagerConfig::new("/etc/cni/net.d", "/var/lib/cri-server/cni"))?;
/// let pod = PodNetworkRequest::new("infra1", "/run/netns/pod1");
/// let status = net.setup(&pod).await?;
/// println!("{:?}", status.ips);
/// net.teardown(&pod).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CniManager {
    loader: ConfigLoader,
    exec: PluginExec,
    cache: ResultCache,
    _watcher: Option<ConfigWatcher>,
}

impl CniManager {
    /// Loads the configuration directory and, when asked, starts watching it.
    pub fn new(config: CniManagerConfig) -> Result<Self> {
        let loader = ConfigLoader::new(&config.conf_dir);
        let watcher = match config.watch_interval {
            Some(every) => Some(loader.watch(every).map_err(|source| Error::Io {
                what: "CNI config directory",
                path: config.conf_dir.clone(),
                op: "start watcher thread",
                source,
            })?),
            None => None,
        };
        Ok(Self {
            loader,
            exec: PluginExec::new(config.plugin_dirs, config.plugin_timeout),
            cache: ResultCache::new(config.cache_dir),
            _watcher: watcher,
        })
    }

    /// The configuration loader (for reloading by hand or inspecting).
    pub fn loader(&self) -> &ConfigLoader {
        &self.loader
    }

    async fn cache_op<T: Send + 'static>(
        &self,
        op: impl FnOnce(ResultCache) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || op(cache))
            .await
            .map_err(|e| Error::Io {
                what: "result cache",
                path: self.cache.dir().to_path_buf(),
                op: "join worker",
                source: std::io::Error::other(e.to_string()),
            })?
    }

    async fn run_chain(
        &self,
        list: &NetworkConfigList,
        command: CniCommand,
        pod: &PodNetworkRequest,
        netns: String,
        prev_result: Option<&Value>,
    ) -> Result<Option<Value>> {
        let inv = Invocation {
            command,
            container_id: pod.container_id.clone(),
            netns,
            ifname: pod.ifname.clone(),
            args: cni_args(pod),
        };
        let mut prev = prev_result.cloned();
        let plugins: Vec<_> = if command == CniCommand::Del {
            list.plugins().iter().rev().collect()
        } else {
            list.plugins().iter().collect()
        };
        let mut first_err = None;
        for plugin in plugins {
            let stdin = plugin.stdin_for(list, prev.as_ref(), runtime_config_for(plugin, pod));
            match self.exec.run(plugin.plugin_type(), &inv, &stdin).await {
                Ok(Some(result)) if command == CniCommand::Add => prev = Some(result),
                Ok(_) => {}
                // Teardown carries on past an error so one plugin's failure
                // does not leak what the others hold; the first is reported.
                Err(e) if command == CniCommand::Del => {
                    if e.is_already_gone() {
                        tracing::debug!(error = %e, "DEL: already gone");
                    } else {
                        tracing::warn!(error = %e, "DEL failed");
                        first_err.get_or_insert(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(prev),
        }
    }
}

fn validate(pod: &PodNetworkRequest) -> Result<()> {
    let bad = |reason: String| {
        Err(Error::InvalidRequest {
            container_id: pod.container_id.clone(),
            reason,
        })
    };
    // Ids and ifnames become file names and CNI_ARGS values.
    let unsafe_chars = |s: &str| s.contains(['/', ';', '=', '\0']) || s == "." || s == "..";
    if pod.container_id.is_empty() || unsafe_chars(&pod.container_id) {
        return bad("container id must be non-empty without '/', ';', '='".into());
    }
    if pod.ifname.is_empty() || pod.ifname.len() > 15 || unsafe_chars(&pod.ifname) {
        return bad(format!("invalid interface name {:?}", pod.ifname));
    }
    for (what, v) in [
        ("pod name", &pod.pod_name),
        ("pod namespace", &pod.pod_namespace),
        ("pod uid", &pod.pod_uid),
    ] {
        if v.contains([';', '=', '\0']) {
            return bad(format!("{what} {v:?} contains ';' or '='"));
        }
    }
    Ok(())
}

fn cni_args(pod: &PodNetworkRequest) -> Vec<(String, String)> {
    vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("K8S_POD_NAMESPACE".into(), pod.pod_namespace.clone()),
        ("K8S_POD_NAME".into(), pod.pod_name.clone()),
        (
            "K8S_POD_INFRA_CONTAINER_ID".into(),
            pod.container_id.clone(),
        ),
        ("K8S_POD_UID".into(), pod.pod_uid.clone()),
    ]
}

fn status_of(network: &str, raw: Value) -> std::result::Result<NetworkStatus, serde_json::Error> {
    let result = CniResult::from_json(&raw)?;
    Ok(NetworkStatus {
        network: network.to_string(),
        ips: result.pod_ips(),
        interfaces: result
            .sandbox_interfaces()
            .into_iter()
            .map(str::to_string)
            .collect(),
        result,
        raw_result: raw,
    })
}

#[async_trait]
impl PodNetwork for CniManager {
    async fn setup(&self, pod: &PodNetworkRequest) -> Result<NetworkStatus> {
        validate(pod)?;
        let list = self.loader.current().ok_or_else(|| {
            Error::NotReady(
                self.loader
                    .status()
                    .err()
                    .unwrap_or_else(|| NotReadyReason {
                        reason: "NoNetworkConfig".into(),
                        message: "configuration vanished".into(),
                    }),
            )
        })?;
        // Recorded before ADD so a crash mid-chain still leaves enough for
        // DEL to release whatever the first plugins allocated.
        let mut entry = CacheEntry {
            network: list.name().to_string(),
            request: pod.clone(),
            config: list.to_json().clone(),
            result: None,
        };
        let e = entry.clone();
        self.cache_op(move |c| c.save(&e)).await?;

        let netns = pod.netns_path.to_string_lossy().into_owned();
        let added = self
            .run_chain(&list, CniCommand::Add, pod, netns.clone(), None)
            .await;
        let raw = match added {
            Ok(Some(raw)) => raw,
            Ok(None) => Value::Object(Default::default()),
            Err(e) => {
                // Undo the plugins that succeeded; the ADD error is the news.
                if let Err(del) = self
                    .run_chain(
                        &list,
                        CniCommand::Del,
                        pod,
                        netns_arg(&pod.netns_path),
                        None,
                    )
                    .await
                {
                    tracing::warn!(error = %del, "cleanup after failed ADD");
                } else {
                    let e = entry.clone();
                    let _ = self.cache_op(move |c| c.remove(&e)).await;
                }
                return Err(e);
            }
        };
        entry.result = Some(raw.clone());
        let e = entry.clone();
        self.cache_op(move |c| c.save(&e)).await?;
        status_of(list.name(), raw).map_err(|reason| Error::PluginOutput {
            plugin: list
                .plugins()
                .last()
                .map(|p| p.plugin_type().to_string())
                .unwrap_or_default(),
            command: "ADD",
            container_id: pod.container_id.clone(),
            reason: reason.to_string(),
        })
    }

    async fn teardown(&self, pod: &PodNetworkRequest) -> Result<()> {
        validate(pod)?;
        let (cid, ifname) = (pod.container_id.clone(), pod.ifname.clone());
        let entry = self.cache_op(move |c| c.load(&cid, &ifname)).await?;
        let (list, request, prev) = match &entry {
            Some(e) => (
                Arc::new(NetworkConfigList::from_json(
                    e.config.clone(),
                    self.cache.dir(),
                )?),
                e.request.clone(),
                e.result.clone(),
            ),
            None => match self.loader.current() {
                Some(list) => (list, pod.clone(), None),
                // Never attached and nothing to run: nothing to undo.
                None => return Ok(()),
            },
        };
        // The caller's view of the namespace wins (it may have been deleted
        // since ADD); a caller that no longer knows it (empty path) gets the
        // recorded one, so the pod's interface is still removed.
        let mut request = request;
        if !pod.netns_path.as_os_str().is_empty() {
            request.netns_path = pod.netns_path.clone();
        }
        let netns = netns_arg(&request.netns_path);
        self.run_chain(&list, CniCommand::Del, &request, netns, prev.as_ref())
            .await?;
        if let Some(e) = entry {
            self.cache_op(move |c| c.remove(&e)).await?;
        }
        Ok(())
    }

    async fn check(&self, pod: &PodNetworkRequest) -> Result<()> {
        validate(pod)?;
        let (cid, ifname) = (pod.container_id.clone(), pod.ifname.clone());
        let entry = self.cache_op(move |c| c.load(&cid, &ifname)).await?;
        let Some(entry) = entry else {
            return Err(Error::NotAttached {
                network: self
                    .loader
                    .current()
                    .map(|l| l.name().to_string())
                    .unwrap_or_default(),
                container_id: pod.container_id.clone(),
                ifname: pod.ifname.clone(),
            });
        };
        let list = NetworkConfigList::from_json(entry.config.clone(), self.cache.dir())?;
        if !list.supports_check() || list.disable_check() {
            return Ok(());
        }
        let netns = pod.netns_path.to_string_lossy().into_owned();
        self.run_chain(
            &list,
            CniCommand::Check,
            &entry.request,
            netns,
            entry.result.as_ref(),
        )
        .await
        .map(|_| ())
    }

    async fn attached(&self) -> Result<Vec<String>> {
        self.cache_op(|c| c.container_ids()).await
    }

    async fn attachment(&self, container_id: &str, ifname: &str) -> Result<Option<NetworkStatus>> {
        let (cid, ifn) = (container_id.to_string(), ifname.to_string());
        let Some(entry) = self.cache_op(move |c| c.load(&cid, &ifn)).await? else {
            return Ok(None);
        };
        let Some(raw) = entry.result else {
            return Ok(None);
        };
        let path = self.cache.dir().to_path_buf();
        status_of(&entry.network, raw)
            .map(Some)
            .map_err(|e| Error::CacheCorrupt {
                path,
                reason: e.to_string(),
            })
    }

    fn status(&self) -> std::result::Result<(), NotReadyReason> {
        self.loader.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_carry_pod_identity() {
        let mut pod = PodNetworkRequest::new("infra", "/n");
        pod.pod_name = "web".into();
        pod.pod_namespace = "default".into();
        pod.pod_uid = "u-1".into();
        let args = cni_args(&pod);
        let get = |k: &str| args.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        assert_eq!(get("K8S_POD_NAME"), Some("web"));
        assert_eq!(get("K8S_POD_NAMESPACE"), Some("default"));
        assert_eq!(get("K8S_POD_INFRA_CONTAINER_ID"), Some("infra"));
        assert_eq!(get("K8S_POD_UID"), Some("u-1"));
        assert_eq!(get("IgnoreUnknown"), Some("1"));
    }

    #[test]
    fn unsafe_requests_are_refused() {
        for (cid, ifname, name) in [
            ("", "eth0", ""),
            ("../x", "eth0", ""),
            ("a;b", "eth0", ""),
            ("ok", "", ""),
            ("ok", "averyveryverylongname", ""),
            ("ok", "eth0", "a=b"),
        ] {
            let mut pod = PodNetworkRequest::new(cid, "/n");
            pod.ifname = ifname.into();
            pod.pod_name = name.into();
            assert!(
                matches!(validate(&pod), Err(Error::InvalidRequest { .. })),
                "{cid} {ifname} {name}"
            );
        }
        assert!(validate(&PodNetworkRequest::new("abc123", "/n")).is_ok());
    }

    #[tokio::test]
    async fn teardown_without_cache_or_config_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = CniManagerConfig::new(dir.path().join("conf"), dir.path().join("cache"));
        cfg.watch_interval = None;
        let m = CniManager::new(cfg).unwrap();
        let pod = PodNetworkRequest::new("c1", "/run/netns/does-not-exist");
        m.teardown(&pod).await.unwrap();
        assert!(matches!(m.setup(&pod).await, Err(Error::NotReady(_))));
        assert!(matches!(
            m.check(&pod).await,
            Err(Error::NotAttached { .. })
        ));
        assert_eq!(m.attachment("c1", "eth0").await.unwrap(), None);
        assert_eq!(m.status().unwrap_err().reason, "NoNetworkConfig");
    }
}
