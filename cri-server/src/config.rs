//! The daemon's configuration: TOML whose key names are a contract with
//! operators and tooling, read from a main file and its drop-ins laid over
//! the embedded default (see [`ConfigSources`]).
//!
//! Unknown keys are refused rather than ignored, so a typo never silently
//! falls back to a default.

mod otlp;
mod sources;

use cgroups::CgroupDriver;
pub use image_store::RegistryConfig;
pub use otlp::{TracingConfig, TracingConfigError};
use serde::{Deserialize, Serialize};
pub use sources::{ConfigSources, Layered, DEFAULT_FILE, DROP_IN_DIR};
use std::collections::BTreeMap;
use std::path::PathBuf;
use trust_policy::{PrivilegedUntrusted, TrustConfig, TrustPolicy, TrustedImages, WorkloadTrust};

/// The whole configuration file.
///
/// # Examples
///
/// ```
/// use cri_server::config::Config;
///
/// let config: Config = toml::from_str("socket = \"/tmp/cri.sock\"").unwrap();
/// assert_eq!(config.socket.to_str(), Some("/tmp/cri.sock"));
/// assert_eq!(config.runtime.default_handler, "runc");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The unix socket the gRPC server listens on.
    pub socket: PathBuf,
    /// Persistent state: images, pod and container records.
    pub root: PathBuf,
    /// Runtime state that does not survive a reboot: bundles, monitors, netns pins.
    pub state: PathBuf,
    /// Mount a tmpfs on `state` when it is not on one already and is empty
    /// (or left by an earlier boot): its files are per boot, and created
    /// and deleted with every container. See `cri_server::state_dir`.
    pub state_tmpfs: bool,
    /// The log level or tracing filter (`info`, `debug`,
    /// `info,cri_server::pod=debug`); empty: `--log-level`, else `info`.
    /// Reloadable, so a node can be made to say more without a restart.
    pub log_level: String,
    /// OCI runtimes and the trust policy.
    pub runtime: RuntimeConfig,
    /// Images and registries.
    pub image: ImageConfig,
    /// Pod networking.
    pub network: NetworkConfig,
    /// The streaming server behind Exec, Attach and PortForward.
    pub streaming: StreamingConfig,
    /// The daemon's own Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
    /// OpenTelemetry spans of every CRI call, sent over OTLP/gRPC.
    pub tracing: TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/cri-server/cri-server.sock"),
            root: PathBuf::from("/var/lib/cri-server"),
            state: PathBuf::from("/run/cri-server"),
            state_tmpfs: true,
            log_level: String::new(),
            runtime: RuntimeConfig::default(),
            image: ImageConfig::default(),
            network: NetworkConfig::default(),
            streaming: StreamingConfig::default(),
            metrics: MetricsConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

/// The `[runtime]` table: the trust policy's keys and the handlers themselves.
///
/// The five policy keys keep the names operators know; their values are the
/// `trust-policy` crate's types, so a bad value is refused while parsing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The handler trusted workloads run on.
    pub default_handler: String,
    /// The handler untrusted workloads run on; empty means none is configured.
    pub untrusted_handler: String,
    /// The trust of a pod that is not privileged: `untrusted` sandboxes
    /// every such pod, whatever its trust annotations say (an annotation
    /// can lower trust, never lift this default).
    pub default_workload_trust: WorkloadTrust,
    /// What happens to a privileged pod that is untrusted.
    pub privileged_untrusted: PrivilegedUntrusted,
    /// Which images may run outside the sandbox: `"any"` (the default) or
    /// `"verified"` (only images a `sigstoreSigned` requirement of
    /// `[image] signature_policy` verified; a `true` trust hint may then
    /// lift an untrusted default).
    pub trusted_images: TrustedImages,
    /// Every runtime handler, by name (the name RuntimeClass refers to).
    pub handlers: BTreeMap<String, HandlerConfig>,
    /// Who places pods and containers in the cgroup tree: `"cgroupfs"` (the
    /// default) or `"systemd"` (needs a running systemd; kubelet's
    /// `cgroupDriver` must say the same).
    pub cgroup_driver: CgroupDriver,
    /// How long a pod or container whose RunPodSandbox or CreateContainer
    /// call was cancelled waits for kubelet's retry to claim it, before it
    /// is removed again. A retry within it gets the same id.
    pub unclaimed_creation_grace_seconds: u64,
    /// The most bytes a container's log file holds (CRI-O's key and
    /// meaning): negative is unlimited (the default, -1), otherwise at
    /// least 8192. The monitor starts a new file, renamed over the log,
    /// with the entry that would pass it, so entries stay whole and the
    /// newest output is kept. Containers keep the cap they started with.
    pub log_size_max: i64,
    /// Whether a pod that needs no infra ("pause") container runs without
    /// one (CRI-O's `drop_infra_ctr`, default `true`): its IPC and UTS
    /// namespaces are pinned like its network namespace instead, which
    /// saves a runtime `create`, `start` and `delete` per pod. A pod keeps
    /// its infra container on a sandboxing runtime, with a PID namespace
    /// shared by its containers, with sysctls, or when privileged.
    pub drop_infra_container: bool,
}

impl RuntimeConfig {
    /// The monitor's cap from `log_size_max` (checked by
    /// [`Config::validate`]; an unchecked bad value caps nothing).
    pub fn log_size_max(&self) -> Option<oci_shim::monitor::LogSizeMax> {
        oci_shim::monitor::LogSizeMax::from_config(self.log_size_max)
            .ok()
            .flatten()
    }
}

impl RuntimeConfig {
    /// The trust policy's view of this table.
    pub fn trust_config(&self) -> TrustConfig {
        TrustConfig {
            default_handler: self.default_handler.clone(),
            untrusted_handler: Some(self.untrusted_handler.clone()).filter(|h| !h.is_empty()),
            default_workload_trust: self.default_workload_trust,
            privileged_untrusted: self.privileged_untrusted,
            trusted_images: self.trusted_images,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let mut handlers = BTreeMap::new();
        handlers.insert(
            "runc".to_string(),
            HandlerConfig {
                path: PathBuf::from("/usr/sbin/runc"),
                args: Vec::new(),
                allowed_annotations: Vec::new(),
                timeout_seconds: default_runtime_timeout(),
                runtime_root: None,
                privileged_without_host_devices: false,
            },
        );
        handlers.insert(
            "runsc".to_string(),
            HandlerConfig {
                path: PathBuf::from("/usr/bin/runsc"),
                // gVisor's own network stack and its KVM platform do not work
                // on this kernel; host network and ptrace do. No `--net-raw`:
                // gVisor's host network (2022-12) opens TCP, UDP and Unix
                // sockets only, raw ones not even with it (tried: the same
                // EAFNOSUPPORT), so it would loosen the sandbox for nothing;
                // a container keeping NET_RAW still cannot ping (README,
                // "runsc differences"). `--oci-seccomp` is added to every
                // call whatever these say (RuntimeHandlerConfig::global_args).
                args: vec!["--network=host".into(), "--platform=ptrace".into()],
                allowed_annotations: Vec::new(),
                timeout_seconds: default_runtime_timeout(),
                runtime_root: None,
                privileged_without_host_devices: false,
            },
        );
        RuntimeConfig {
            default_handler: "runc".into(),
            untrusted_handler: "runsc".into(),
            default_workload_trust: WorkloadTrust::Trusted,
            privileged_untrusted: PrivilegedUntrusted::TrustedRuntime,
            trusted_images: TrustedImages::Any,
            handlers,
            cgroup_driver: CgroupDriver::Cgroupfs,
            unclaimed_creation_grace_seconds: crate::creations::DEFAULT_GRACE.as_secs(),
            log_size_max: -1,
            drop_infra_container: true,
        }
    }
}

/// One `[runtime.handlers.NAME]` table: a runc-compatible command-line runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    /// The runtime binary.
    pub path: PathBuf,
    /// Global arguments given before every subcommand.
    #[serde(default)]
    pub args: Vec<String>,
    /// Pod and container annotations passed to this runtime in
    /// `config.json` (CRI-O's key): exact keys, or prefixes ending in `*`
    /// (`"*"` alone passes all). Default: none. Annotations are written by
    /// pod authors and runtimes act on them: runsc's `dev.gvisor.*` change
    /// the sandbox (mounts, flags), `org.systemd.property.*` reach systemd
    /// through runc. The daemon's own annotations (container type, sandbox
    /// id) are always set.
    #[serde(default)]
    pub allowed_annotations: Vec<String>,
    /// How long one runtime command (create, start, kill, delete, state,
    /// update) may take before it is killed and the call fails with
    /// DeadlineExceeded naming the command: a hung runtime never holds a
    /// pod for good. Execs keep their own timeouts.
    #[serde(default = "default_runtime_timeout")]
    pub timeout_seconds: u64,
    /// The runtime's state directory (its `--root`; containerd's and
    /// CRI-O's `runtime_root`). Default: `<state>/runtimes/<handler>`, on
    /// the daemon's own tmpfs-like state. An absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_root: Option<PathBuf>,
    /// Privileged containers on this handler get every privilege but the
    /// host's devices (containerd's key): for VM-based runtimes, where host
    /// devices mean nothing, or nodes that never hand `/dev` to a pod.
    #[serde(default)]
    pub privileged_without_host_devices: bool,
}

fn default_runtime_timeout() -> u64 {
    oci_shim::runtime::DEFAULT_RUNTIME_TIMEOUT.as_secs()
}

impl HandlerConfig {
    /// The parsed `allowed_annotations` (checked by [`Config::validate`]; an
    /// unchecked bad list allows nothing).
    pub fn allow_list(&self) -> cri_spec::annotations::AllowList {
        cri_spec::annotations::AllowList::new(&self.allowed_annotations).unwrap_or_default()
    }
}

/// The `[image]` table.
///
/// Its default is a fresh node's: no registry entries, so every registry is
/// reached directly over TLS and short names resolve to `docker.io`. Mirrors
/// and plain-HTTP registries are the operator's to add.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// The image infra containers run; empty means the built-in pause program,
    /// which needs no pull.
    pub pause_image: String,
    /// How long, in seconds, a pull may go without progress: it fails once,
    /// for that long, fewer than 64 KiB arrived and no request completed
    /// (containerd's `image_pull_progress_timeout`), so a registry that drips
    /// bytes or never answers cannot hold a pull, and the image store's
    /// locks, for good. From 1 to 3600; default 60.
    pub pull_stall_timeout_seconds: PullStallTimeout,
    /// How many layers of one pull are downloaded at once, each unpacked
    /// while it arrives (containerd's key): more overlap a registry's
    /// latency; each costs a connection, a blocking thread and a few MiB of
    /// chunks in flight. Pulls of images that share a layer download it
    /// once whatever this says. From 1 to 32; default 3.
    pub max_concurrent_downloads: MaxConcurrentDownloads,
    /// Platforms (`os/arch[/variant]`) pulled from a multi-platform image
    /// when the index has nothing for this node's own, tried in order
    /// (e.g. `["linux/386"]` on amd64). Default: none, only the node's.
    pub platforms: Vec<String>,
    /// The containers-policy.json(5) every pull is checked against (CRI-O's
    /// key): `sigstoreSigned` (cosign keys), `insecureAcceptAnything` and
    /// `reject`, by scope. A refused image fails its pull
    /// (PermissionDenied) and is not stored; an accepted one records what
    /// vouched for it, which `[runtime] trusted_images = "verified"` reads.
    /// An absolute path, read at start and again on SIGHUP; a policy that
    /// does not load (or asks for what cannot be checked, such as GPG
    /// `signedBy`) stops the daemon from starting. Empty (the default): no
    /// policy, nothing checked.
    pub signature_policy: PathBuf,
    /// Registry credentials stored on the node, in the containers-auth.json
    /// / docker `config.json` format (`{"auths": {"host[/repo]": {"auth":
    /// …}}}`; the longest matching key wins). Each endpoint asked (a mirror
    /// by its own location) gets its entry; kubelet's credentials
    /// (AuthConfig) win for the image's own registry. An absolute path,
    /// read at start and again on SIGHUP: a missing file is no
    /// credentials, a malformed one (or one over 1 MiB) stops the start or
    /// fails the reload. Credential helpers are not run. Empty (the
    /// default): none.
    pub auth_file: PathBuf,
    /// Registry mirrors, insecure and blocked registries, and their TLS
    /// files (`ca_file`, `cert_file`, `key_file`), by reference prefix.
    pub registries: Vec<RegistryConfig>,
}

/// `[image] pull_stall_timeout_seconds`: whole seconds, 60 by default.
///
/// # Examples
///
/// ```
/// use cri_server::config::Config;
///
/// let config: Config = toml::from_str("[image]\npull_stall_timeout_seconds = 30").unwrap();
/// let options = config.image.pull_stall_timeout_seconds.pull_options().unwrap();
/// assert_eq!(options.stall_timeout().as_secs(), 30);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PullStallTimeout(pub u64);

impl Default for PullStallTimeout {
    fn default() -> Self {
        PullStallTimeout(image_store::DEFAULT_STALL_TIMEOUT.as_secs())
    }
}

impl PullStallTimeout {
    /// The image store's pull options with this stall timeout; out of range
    /// (see [`Config::validate`]) is an error.
    pub fn pull_options(self) -> Result<image_store::PullOptions, image_store::PullOptionsError> {
        image_store::PullOptions::default()
            .with_stall_timeout(std::time::Duration::from_secs(self.0))
    }

    /// Why this cannot be a stall timeout, in the config's terms (seconds).
    fn check(self) -> Result<(), String> {
        self.pull_options().map(drop).map_err(|_| {
            format!(
                "must be from {} to {} seconds, not {}",
                image_store::MIN_STALL_TIMEOUT.as_secs(),
                image_store::MAX_STALL_TIMEOUT.as_secs(),
                self.0
            )
        })
    }
}

/// `[image] max_concurrent_downloads`: 3 by default.
///
/// # Examples
///
/// ```
/// use cri_server::config::Config;
///
/// let config: Config = toml::from_str("[image]\nmax_concurrent_downloads = 5").unwrap();
/// let options = config.image.pull_options().unwrap();
/// assert_eq!(options.max_concurrent_downloads(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaxConcurrentDownloads(pub u64);

impl Default for MaxConcurrentDownloads {
    fn default() -> Self {
        MaxConcurrentDownloads(image_store::DEFAULT_CONCURRENT_DOWNLOADS as u64)
    }
}

impl MaxConcurrentDownloads {
    /// `options` with this many downloads at once; out of range (see
    /// [`Config::validate`]) is an error.
    fn apply(
        self,
        options: image_store::PullOptions,
    ) -> Result<image_store::PullOptions, image_store::PullOptionsError> {
        // Past usize is past the maximum too.
        options.with_max_concurrent_downloads(usize::try_from(self.0).unwrap_or(usize::MAX))
    }

    /// Why this cannot be a number of downloads, in the config's terms.
    fn check(self) -> Result<(), String> {
        self.apply(image_store::PullOptions::default())
            .map(drop)
            .map_err(|_| {
                format!(
                    "must be from 1 to {}, not {}",
                    image_store::MAX_CONCURRENT_DOWNLOADS,
                    self.0
                )
            })
    }
}

impl ImageConfig {
    /// The image store's pull options: the stall timeout and the
    /// concurrent downloads. An out-of-range key (see [`Config::validate`])
    /// is an error naming it.
    pub fn pull_options(&self) -> Result<image_store::PullOptions, ConfigError> {
        let invalid = |key: &str, e: image_store::PullOptionsError| ConfigError::Invalid {
            key: key.to_string(),
            message: e.to_string(),
        };
        let options = self
            .pull_stall_timeout_seconds
            .pull_options()
            .map_err(|e| invalid("image.pull_stall_timeout_seconds", e))?;
        let options = self
            .max_concurrent_downloads
            .apply(options)
            .map_err(|e| invalid("image.max_concurrent_downloads", e))?;
        Ok(options.with_platform_fallbacks(self.platform_fallbacks()?))
    }

    /// `platforms`, parsed; the first that is not a platform is an error
    /// naming it.
    pub fn platform_fallbacks(&self) -> Result<Vec<image_store::platform::Platform>, ConfigError> {
        self.platforms
            .iter()
            .map(|p| {
                p.parse().map_err(
                    |e: image_store::platform::PlatformError| ConfigError::Invalid {
                        key: "image.platforms".into(),
                        message: e.to_string(),
                    },
                )
            })
            .collect()
    }
}

/// The `[network]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Where CNI network configurations are read from.
    pub conf_dir: PathBuf,
    /// Where CNI plugin binaries are searched, in order.
    pub plugin_dirs: Vec<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
        }
    }
}

/// The `[streaming]` table: where the Exec/Attach/PortForward URLs point.
///
/// # Examples
///
/// ```
/// use cri_server::config::Config;
///
/// let config: Config = toml::from_str("[streaming]\naddress = \"127.0.0.1:10010\"").unwrap();
/// assert_eq!(config.streaming.address, "127.0.0.1:10010");
/// assert_eq!(config.streaming.token_ttl_seconds, 60);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// `host:port` the server listens on; port 0 picks a free port. The
    /// default stays on loopback: only the local kubelet should reach it.
    pub address: String,
    /// How long a URL handed out by Exec, Attach or PortForward stays valid.
    pub token_ttl_seconds: u64,
    /// PEM certificate chain for TLS; with `tls_key`, URLs become `https`.
    /// Both files are read again when they change (certificate rotation).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
}

impl StreamingConfig {
    /// What the streaming server is started with.
    pub fn server_config(&self) -> cri_streaming::ServerConfig {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(cri_streaming::TlsPaths {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        cri_streaming::ServerConfig {
            address: self.address.clone(),
            token_ttl: std::time::Duration::from_secs(self.token_ttl_seconds),
            tls,
            ..cri_streaming::ServerConfig::default()
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1:0".into(),
            token_ttl_seconds: 60,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The `[metrics]` table: where the daemon serves its own Prometheus
/// metrics (`GET /metrics`). Off unless an address is given.
///
/// # Examples
///
/// ```
/// use cri_server::config::Config;
///
/// assert_eq!(Config::default().metrics.socket_addr(), None);
/// let config: Config = toml::from_str("[metrics]\naddress = \"127.0.0.1:9090\"").unwrap();
/// assert_eq!(config.metrics.socket_addr(), Some("127.0.0.1:9090".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `ip:port` to listen on; empty turns the endpoint off. The address
    /// must be explicit (no wildcard, no host name, no port 0): metrics
    /// name pods and images, and a scraper must know where to look.
    pub address: String,
}

impl MetricsConfig {
    /// The address to serve on, or `None` when the endpoint is off (or the
    /// address does not parse, which [`Config::validate`] refuses).
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        self.address.parse().ok()
    }

    /// Why `address` cannot be served on, if it cannot.
    fn check(&self) -> Result<(), MetricsAddressError> {
        if self.address.is_empty() {
            return Ok(());
        }
        let given = self.address.clone();
        let address: std::net::SocketAddr = self
            .address
            .parse()
            .map_err(|_| MetricsAddressError::NotAnAddress(given.clone()))?;
        if address.ip().is_unspecified() {
            return Err(MetricsAddressError::EveryInterface(given, address.port()));
        }
        if address.port() == 0 {
            return Err(MetricsAddressError::PortZero(given));
        }
        Ok(())
    }
}

/// Why a metrics address cannot be served on.
#[derive(Debug, thiserror::Error)]
pub enum MetricsAddressError {
    /// Not `ip:port`.
    #[error("{0:?} is not an ip:port address (e.g. \"127.0.0.1:9090\"; empty turns metrics off)")]
    NotAnAddress(String),
    /// A wildcard address.
    #[error("{0:?} listens on every interface; give an explicit address such as 127.0.0.1:{1}")]
    EveryInterface(String, u16),
    /// Port 0.
    #[error("{0:?} has port 0; a scraper needs a fixed port")]
    PortZero(String),
}

/// Why a configuration cannot be used. Each message is one line that names
/// the key or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (an unknown key among others).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, folded onto one line.
        message: String,
    },
    /// A key holds a value that is not allowed.
    #[error("config key {key}: {message}")]
    Invalid {
        /// The dotted key, e.g. `runtime.default_handler`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The parser's message folded onto one line: errors are one line each.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Config {
    /// Reads `sources` (the main file, then its drop-ins, over the
    /// embedded default) and validates the result.
    ///
    /// # Examples
    ///
    /// ```
    /// use cri_server::config::{Config, ConfigSources};
    ///
    /// // No main file and no drop-ins: the embedded default.
    /// let dir = tempfile::tempdir().unwrap();
    /// let sources = ConfigSources {
    ///     explicit: false,
    ///     ..ConfigSources::new(Some(dir.path().join("config.toml")), None)
    /// };
    /// assert_eq!(Config::load(&sources).unwrap(), Config::default());
    /// ```
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
        Ok(Config::load_layered(sources)?.config)
    }

    /// [`Config::load`], also saying which file set each key.
    pub fn load_layered(sources: &ConfigSources) -> Result<Layered, ConfigError> {
        let layered = sources::layer(&sources.files()?)?;
        layered.config.validate()?;
        Ok(layered)
    }

    /// Parses TOML text.
    #[cfg(test)]
    fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks what the schema alone cannot: handler names refer to
    /// configured handlers and the default handler's binary exists. Other
    /// handlers with a missing binary are allowed, and reported by Status.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_string(),
            message,
        };
        if !self.log_level.is_empty() {
            tracing_subscriber::EnvFilter::try_new(&self.log_level)
                .map_err(|e| invalid("log_level", e.to_string()))?;
        }
        let runtime = &self.runtime;
        TrustPolicy::new(runtime.trust_config(), runtime.handlers.keys().cloned()).map_err(
            |e| match e {
                trust_policy::ConfigError::UnknownHandler { key, .. } => {
                    invalid(&format!("runtime.{key}"), e.to_string())
                }
                other => invalid("runtime", other.to_string()),
            },
        )?;
        for (name, handler) in &runtime.handlers {
            cri_spec::annotations::AllowList::new(&handler.allowed_annotations).map_err(|e| {
                invalid(
                    &format!("runtime.handlers.{name}.allowed_annotations"),
                    e.to_string(),
                )
            })?;
            if handler
                .runtime_root
                .as_ref()
                .is_some_and(|r| !r.is_absolute())
            {
                return Err(invalid(
                    &format!("runtime.handlers.{name}.runtime_root"),
                    "must be an absolute path".into(),
                ));
            }
            if handler.timeout_seconds == 0 {
                return Err(invalid(
                    &format!("runtime.handlers.{name}.timeout_seconds"),
                    "must be at least 1".into(),
                ));
            }
        }
        oci_shim::monitor::LogSizeMax::from_config(runtime.log_size_max)
            .map_err(|e| invalid("runtime.log_size_max", e.to_string()))?;
        let default_name = &runtime.default_handler;
        if let Some(default) = runtime.handlers.get(default_name) {
            if !default.path.is_file() {
                return Err(invalid(
                    &format!("runtime.handlers.{default_name}.path"),
                    format!("runtime binary {} does not exist", default.path.display()),
                ));
            }
        }
        for key in ["socket", "root", "state"] {
            let path = match key {
                "socket" => &self.socket,
                "root" => &self.root,
                _ => &self.state,
            };
            if !path.is_absolute() {
                return Err(invalid(
                    key,
                    format!("{} is not an absolute path", path.display()),
                ));
            }
        }
        if self
            .streaming
            .address
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(invalid(
                "streaming.address",
                format!("{:?} is not an ip:port address", self.streaming.address),
            ));
        }
        if self.streaming.token_ttl_seconds == 0 {
            return Err(invalid(
                "streaming.token_ttl_seconds",
                "must be at least 1".into(),
            ));
        }
        if self.streaming.tls_cert.is_some() != self.streaming.tls_key.is_some() {
            return Err(invalid(
                "streaming.tls_cert",
                "tls_cert and tls_key go together".into(),
            ));
        }
        self.metrics
            .check()
            .map_err(|e| invalid("metrics.address", e.to_string()))?;
        self.image
            .pull_stall_timeout_seconds
            .check()
            .map_err(|message| invalid("image.pull_stall_timeout_seconds", message))?;
        self.image
            .max_concurrent_downloads
            .check()
            .map_err(|message| invalid("image.max_concurrent_downloads", message))?;
        self.image.platform_fallbacks()?;
        for (key, path) in [
            ("image.signature_policy", &self.image.signature_policy),
            ("image.auth_file", &self.image.auth_file),
        ] {
            if !path.as_os_str().is_empty() && !path.is_absolute() {
                let why = format!("{} is not an absolute path", path.display());
                return Err(invalid(key, why));
            }
        }
        self.tracing
            .check()
            .map_err(|e| invalid(e.key(), e.to_string()))
    }

    /// The configuration as TOML, as `cri-server config` prints it.
    pub fn to_toml(&self) -> String {
        // Serializing plain structs of strings, paths and maps cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_default_reaches_registries_directly() {
        // The embedded default is a production node's: no test registry, no
        // mirror, no plain HTTP.
        let config = Config::default();
        assert!(config.image.registries.is_empty());
        let text = config.to_toml();
        assert!(text.contains("registries = []"), "{text}");
        assert!(!text.contains("127.0.0.1:5000"), "{text}");
    }

    #[test]
    fn no_annotation_reaches_a_runtime_by_default() {
        let config = Config::default();
        for (name, handler) in &config.runtime.handlers {
            assert!(handler.allowed_annotations.is_empty(), "{name}");
        }
        let text = config.to_toml();
        assert!(text.contains("allowed_annotations = []"), "{text}");
    }

    #[test]
    fn allowed_annotations_parse_and_bad_entries_name_the_key() {
        let runc = "[runtime]\nuntrusted_handler = \"\"\n\
                    [runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n";
        let config = Config::parse(&format!(
            "{runc}allowed_annotations = [\"a.b/c\", \"team/*\"]\n"
        ))
        .unwrap();
        let allow = config.runtime.handlers["runc"].allow_list();
        assert!(
            allow.allows("a.b/c")
                && allow.allows("team/x")
                && !allow.allows("org.systemd.property.X")
        );
        let config =
            Config::parse(&format!("{runc}allowed_annotations = [\"dev.*.x\"]\n")).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("runtime.handlers.runc.allowed_annotations"),
            "{err}"
        );
        assert!(err.contains("dev.*.x"), "{err}");
    }

    #[test]
    fn default_round_trips_through_toml() {
        let text = Config::default().to_toml();
        assert_eq!(Config::parse(&text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_runtime_key_is_refused_naming_it() {
        let err = Config::parse("[runtime]\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused_naming_it() {
        let err = one_line(
            &Config::parse("[runtime]\ndefault_handlr = \"runc\"\n")
                .unwrap_err()
                .to_string(),
        );
        assert!(err.contains("default_handlr"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn unknown_default_handler_is_refused() {
        let mut config = Config::default();
        config.runtime.default_handler = "kata".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("runtime.default_handler"), "{err}");
        assert!(err.contains("runc, runsc"), "{err}");
    }

    #[test]
    fn missing_default_runtime_binary_is_refused() {
        let mut config = Config::default();
        config.runtime.handlers.get_mut("runc").unwrap().path = "/nonexistent/runc".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("runtime.handlers.runc.path"), "{err}");
    }

    #[test]
    fn missing_untrusted_binary_is_allowed() {
        let mut config = Config::default();
        if !config.runtime.handlers["runc"].path.is_file() {
            return; // needs `cargo xtask setup`; covered by CI.
        }
        config.runtime.handlers.get_mut("runsc").unwrap().path = "/nonexistent/runsc".into();
        config.validate().unwrap();
    }

    #[test]
    fn runtime_timeouts_default_to_two_minutes_and_zero_is_refused() {
        let config = Config::parse("[runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n").unwrap();
        assert_eq!(config.runtime.handlers["runc"].timeout_seconds, 120);
        let mut config = Config::default();
        config
            .runtime
            .handlers
            .get_mut("runsc")
            .unwrap()
            .timeout_seconds = 0;
        let err = config.validate().unwrap_err().to_string();
        if !err.contains("runtime.handlers.runc.path") {
            assert!(
                err.contains("runtime.handlers.runsc.timeout_seconds"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_trust_values_are_refused() {
        let err = Config::parse("[runtime]\ndefault_workload_trust = \"maybe\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn streaming_defaults_and_bad_values() {
        let config = Config::parse("[streaming]\ntoken_ttl_seconds = 5\n").unwrap();
        assert_eq!(config.streaming.address, "127.0.0.1:0");
        assert_eq!(config.streaming.token_ttl_seconds, 5);
        let err = Config::parse("[streaming]\nadress = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("adress"), "{err}");
        let mut config = Config::default();
        config.streaming.address = "localhost".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("streaming.address"), "{err}");
        let mut config = Config::default();
        config.streaming.tls_cert = Some("/x.pem".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("streaming.tls_cert"), "{err}");
    }

    #[test]
    fn metrics_are_off_by_default_and_need_an_explicit_address() {
        let config = Config::default();
        assert_eq!(config.metrics.address, "");
        assert!(config.to_toml().contains("[metrics]"));
        let config = Config::parse("[metrics]\naddress = \"127.0.0.1:9090\"\n").unwrap();
        assert!(config.metrics.check().is_ok());
        assert_eq!(
            config.metrics.socket_addr(),
            Some("127.0.0.1:9090".parse().unwrap())
        );
        for (bad, why) in [
            ("localhost:9090", "not an ip:port"),
            ("127.0.0.1", "not an ip:port"),
            ("0.0.0.0:9090", "every interface"),
            ("[::]:9090", "every interface"),
            ("127.0.0.1:0", "port 0"),
        ] {
            let mut config = Config::default();
            config.metrics.address = bad.into();
            let err = match config.validate() {
                Err(e) => e.to_string(),
                // Without runc installed validation stops earlier.
                Ok(()) => panic!("{bad} accepted"),
            };
            if err.contains("runtime.") {
                continue;
            }
            assert!(err.contains("metrics.address"), "{err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = Config::parse("[metrics]\nadress = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn signature_policy_is_off_by_default_and_must_be_absolute() {
        assert!(Config::default()
            .image
            .signature_policy
            .as_os_str()
            .is_empty());
        let config = Config::parse("[image]\nsignature_policy = \"/etc/p.json\"\n").unwrap();
        assert_eq!(config.image.signature_policy, Path::new("/etc/p.json"));
        let relative = Config::parse("[image]\nsignature_policy = \"p.json\"\n").unwrap();
        let err = relative.validate().unwrap_err().to_string();
        // Without runc installed validation stops earlier.
        if !err.contains("runtime.") {
            assert!(
                err.contains("image.signature_policy") && err.contains("absolute"),
                "{err}"
            );
        }
    }

    #[test]
    fn auth_file_is_off_by_default_and_must_be_absolute() {
        let config = Config::default();
        assert!(config.image.auth_file.as_os_str().is_empty());
        assert!(config.to_toml().contains("auth_file = \"\""));
        let relative = Config::parse("[image]\nauth_file = \"auth.json\"\n").unwrap();
        let err = relative.validate().unwrap_err().to_string();
        // Without runc installed validation stops earlier.
        if !err.contains("runtime.") {
            assert!(
                err.contains("image.auth_file") && err.contains("absolute"),
                "{err}"
            );
        }
    }

    #[test]
    fn registry_entries_take_blocked_and_tls_files() {
        let config = Config::parse(
            "[[image.registries]]\nprefix = \"quay.io/x\"\nblocked = true\n\
             [[image.registries]]\nprefix = \"r.example\"\nca_file = \"/etc/ca.pem\"\n\
             cert_file = \"/etc/c.pem\"\nkey_file = \"/etc/k.pem\"\n",
        )
        .unwrap();
        let [blocked, tls] = &config.image.registries[..] else {
            panic!("{:?}", config.image.registries);
        };
        assert!(blocked.blocked && blocked.ca_file.is_none());
        assert_eq!(tls.key_file.as_deref(), Some(Path::new("/etc/k.pem")));
        // Unset files are left out of the printed configuration.
        let text = config.to_toml();
        assert_eq!(text.matches("ca_file").count(), 1, "{text}");
    }

    #[test]
    fn pull_stall_timeout_defaults_to_a_minute_and_bounds_are_enforced() {
        let config = Config::default();
        assert_eq!(config.image.pull_stall_timeout_seconds.0, 60);
        assert!(config.to_toml().contains("pull_stall_timeout_seconds = 60"));
        let config = Config::parse("[image]\npull_stall_timeout_seconds = 5\n").unwrap();
        let options = config.image.pull_stall_timeout_seconds.pull_options();
        assert_eq!(options.unwrap().stall_timeout().as_secs(), 5);
        for (seconds, ok) in [
            (0, false),
            (1, true),
            (3600, true),
            (3601, false),
            (u64::MAX, false),
        ] {
            let text = format!("[image]\npull_stall_timeout_seconds = {seconds}\n");
            let parsed = match Config::parse(&text) {
                Ok(config) => config,
                // Past TOML's integers: refused while parsing.
                Err(e) => {
                    assert!(
                        !ok && e.to_string().contains("pull_stall_timeout_seconds"),
                        "{e}"
                    );
                    continue;
                }
            };
            let checked = parsed.image.pull_stall_timeout_seconds.check();
            assert_eq!(checked.is_ok(), ok, "{seconds}: {checked:?}");
            let mut config = Config::default();
            config.image.pull_stall_timeout_seconds = PullStallTimeout(seconds);
            match config.validate() {
                // Without runc installed validation stops earlier.
                Err(e) if e.to_string().contains("runtime.") => {}
                Err(e) => {
                    let e = e.to_string();
                    assert!(!ok, "{seconds}: {e}");
                    assert!(
                        e.contains("config key image.pull_stall_timeout_seconds"),
                        "{e}"
                    );
                    assert!(e.contains("must be from 1 to 3600 seconds"), "{e}");
                }
                Ok(()) => assert!(ok, "{seconds} accepted"),
            }
        }
        let err = Config::parse("[image]\npull_stall_timeout_seconds = -1\n").unwrap_err();
        assert!(
            err.to_string().contains("pull_stall_timeout_seconds"),
            "{err}"
        );
    }

    #[test]
    fn platform_fallbacks_are_checked_at_load_and_follow_the_host() {
        let config: Config = toml::from_str("[image]\nplatforms = [\"linux/386\"]\n").unwrap();
        config.validate().unwrap();
        let options = config.image.pull_options().unwrap();
        let wanted: Vec<String> = options
            .platforms()
            .wanted()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            wanted[0],
            image_store::platform::Platform::host().to_string()
        );
        assert_eq!(wanted.last().map(String::as_str), Some("linux/386"));
        let bad: Config = toml::from_str("[image]\nplatforms = [\"linux\"]\n").unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("image.platforms") && err.contains("\"linux\""),
            "{err}"
        );
    }

    #[test]
    fn max_concurrent_downloads_defaults_to_three_and_bounds_are_enforced() {
        let config = Config::default();
        assert_eq!(config.image.max_concurrent_downloads.0, 3);
        assert!(config.to_toml().contains("max_concurrent_downloads = 3"));
        assert_eq!(
            config
                .image
                .pull_options()
                .unwrap()
                .max_concurrent_downloads(),
            3
        );
        for (downloads, ok) in [
            (0, false),
            (1, true),
            (32, true),
            (33, false),
            (u64::MAX, false),
        ] {
            let mut config = Config::default();
            config.image.max_concurrent_downloads = MaxConcurrentDownloads(downloads);
            let options = config.image.pull_options();
            assert_eq!(options.is_ok(), ok, "{downloads}");
            if let Err(e) = options {
                assert!(
                    e.to_string().contains("image.max_concurrent_downloads"),
                    "{e}"
                );
            }
            match config.validate() {
                // Without runc installed validation stops earlier.
                Err(e) if e.to_string().contains("runtime.") => {}
                Err(e) => {
                    let e = e.to_string();
                    assert!(!ok, "{downloads}: {e}");
                    assert!(
                        e.contains("config key image.max_concurrent_downloads"),
                        "{e}"
                    );
                    assert!(e.contains("must be from 1 to 32"), "{e}");
                }
                Ok(()) => assert!(ok, "{downloads} accepted"),
            }
        }
        let err = Config::parse("[image]\nmax_concurrent_downloads = -1\n").unwrap_err();
        assert!(
            err.to_string().contains("max_concurrent_downloads"),
            "{err}"
        );
    }

    #[test]
    fn a_runtime_root_must_be_absolute() {
        let config = Config::parse(
            "[runtime]\nuntrusted_handler = \"\"\n[runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\nruntime_root = \"rel\"\n",
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("runtime.handlers.runc.runtime_root"), "{err}");
        let config = Config::parse(
            "[runtime]\nuntrusted_handler = \"\"\n[runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\nruntime_root = \"/run/x\"\n",
        )
        .unwrap();
        assert_eq!(
            config.runtime.handlers["runc"].runtime_root.as_deref(),
            Some(Path::new("/run/x"))
        );
    }

    #[test]
    fn log_size_max_follows_crio() {
        let with = |value: i64| {
            let config = Config::parse(&format!("[runtime]\nlog_size_max = {value}\n")).unwrap();
            (config.validate(), config.runtime.log_size_max())
        };
        assert!(matches!(with(-1), (Ok(()), None)));
        let (ok, cap) = with(65536);
        assert!(ok.is_ok());
        assert_eq!(cap.map(|c| c.bytes()), Some(65536));
        for too_small in [0, 100, 8191] {
            let err = with(too_small).0.unwrap_err().to_string();
            assert!(err.contains("runtime.log_size_max"), "{err}");
            assert!(err.contains("8192"), "{err}");
        }
        assert_eq!(Config::default().runtime.log_size_max, -1);
    }

    #[test]
    fn tracing_is_off_by_default_and_bad_keys_are_named() {
        let config = Config::default();
        assert!(!config.tracing.enabled());
        let text = config.to_toml();
        assert!(text.contains("[tracing]\nendpoint = \"\""), "{text}");
        let config = Config::parse(
            "[tracing]\nendpoint = \"http://127.0.0.1:4317\"\nsampling_ratio = 0.5\n",
        )
        .unwrap();
        assert_eq!(config.tracing.endpoint, "http://127.0.0.1:4317");
        assert_eq!(config.tracing.sampling_ratio, 0.5);
        for (text, key, why) in [
            (
                "endpoint = \"127.0.0.1:4317\"",
                "config key tracing.endpoint",
                "127.0.0.1:4317",
            ),
            (
                "endpoint = \"https://collector:4317\"",
                "config key tracing.endpoint",
                "https",
            ),
            (
                "sampling_ratio = 1.5",
                "config key tracing.sampling_ratio",
                "1.5",
            ),
            (
                "sampling_ratio = -1",
                "config key tracing.sampling_ratio",
                "-1",
            ),
        ] {
            let config = Config::parse(&format!("[tracing]\n{text}\n")).unwrap();
            let err = config.validate().unwrap_err().to_string();
            // Without runc installed validation stops earlier.
            if err.contains("runtime.") {
                continue;
            }
            assert!(err.contains(key) && err.contains(why), "{text}: {err}");
        }
        let err = Config::parse("[tracing]\nendpont = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("endpont"), "{err}");
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let sources = ConfigSources::new(Some("/nonexistent/cri.toml".into()), None);
        let err = Config::load(&sources).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cri.toml"));
    }
}
