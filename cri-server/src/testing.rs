//! A daemon built from doubles, for the verbs' unit tests: temporary
//! directories, the netns recording syscall double, and mockall mocks of
//! the runtime, the monitors, the image store and the pod network. Nothing
//! here needs root, a runtime or a network.
//!
//! A test sets the expectations it cares about on [`Doubles`] before it
//! builds the daemon; a call nobody expected fails the test, which is how
//! "undone exactly once" is checked.

use crate::config::Config;
use crate::daemon::{Daemon, Parts};
use crate::handlers::{Handler, HandlerSet};
use crate::records::RecordDir;
use cni::MockPodNetwork;
use cri_api::v1 as cri;
use image_store::MockContainerImages;
use netns::syscall::RecordingSyscall;
use netns::PinDir;
use oci_shim::monitor::protocol::ExitRecord;
use oci_shim::monitor::{MockMonitorLauncher, MockPendingLaunch, Monitor};
use oci_shim::runtime::{MockOciRuntime, OciRuntime, RuntimeHandlerConfig};
use std::sync::Arc;

/// The doubles a test daemon is made of; set expectations, then [`build`].
///
/// [`build`]: Doubles::build
pub struct Doubles {
    /// The `runc` handler's runtime.
    pub runc: MockOciRuntime,
    /// The `runsc` (gVisor) handler's runtime, for tests of what differs on
    /// gVisor; without it the daemon has only the `runc` handler.
    pub runsc: Option<MockOciRuntime>,
    /// Monitor launching and exit watching.
    pub monitors: MockMonitorLauncher,
    /// A hand-written monitor double used instead of `monitors`, for what a
    /// mock cannot do (a wait that stays pending until something happens).
    pub monitors_instead: Option<Arc<dyn oci_shim::monitor::MonitorLauncher>>,
    /// The image store.
    pub images: MockContainerImages,
    /// The pod network.
    pub network: MockPodNetwork,
    /// A hand-written network double used instead of `network`, for what a
    /// mock cannot do (an ADD that takes time without holding a thread).
    pub network_instead: Option<Arc<dyn cni::PodNetwork>>,
    /// `[runtime] trusted_images` of the daemon's configuration.
    pub trusted_images: trust_policy::TrustedImages,
    /// `[runtime] drop_infra_container` of the daemon's configuration.
    pub drop_infra_container: bool,
}

/// A daemon of doubles, with what a test inspects afterwards.
pub struct TestDaemon {
    /// The daemon under test.
    pub daemon: Arc<Daemon>,
    /// The network namespace syscalls the daemon made.
    pub netns: Arc<RecordingSyscall>,
    /// Root and state live here; removed on drop.
    pub dir: tempfile::TempDir,
}

impl Doubles {
    /// Doubles that expect nothing but their names being asked, and a
    /// network that is ready.
    pub fn new() -> Doubles {
        let mut runc = MockOciRuntime::new();
        runc.expect_name().return_const("runc".to_string());
        let mut network = MockPodNetwork::new();
        network.expect_status().returning(|| Ok(()));
        let mut monitors = MockMonitorLauncher::new();
        // Removals retire a monitor that outlived its container; the
        // doubles' containers leave none.
        monitors.expect_retire().returning(|_, _| false);
        Doubles {
            runc,
            runsc: None,
            monitors,
            monitors_instead: None,
            images: MockContainerImages::new(),
            network,
            network_instead: None,
            trusted_images: trust_policy::TrustedImages::Any,
            drop_infra_container: true,
        }
    }

    /// Builds the daemon on a fresh temporary directory.
    pub async fn build(self) -> TestDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            root: dir.path().join("root"),
            state: dir.path().join("state"),
            socket: dir.path().join("cri.sock"),
            ..Config::default()
        };
        config.runtime.trusted_images = self.trusted_images;
        config.runtime.drop_infra_container = self.drop_infra_container;
        let layout = crate::layout::Layout::new(&config.root, &config.state);
        let netns = Arc::new(RecordingSyscall::new());
        let pins = PinDir::unmanaged_with(Arc::clone(&netns) as _, layout.netns())
            .expect("pin dir over the recording double");
        let mut handlers = vec![(
            "runc".to_string(),
            Handler {
                settings: config.runtime.handlers["runc"].clone(),
                runtime_config: RuntimeHandlerConfig::runc(layout.runtime_root("runc")),
                runtime: Arc::new(self.runc) as Arc<dyn OciRuntime>,
                features: Default::default(),
            },
        )];
        if let Some(runsc) = self.runsc {
            handlers.push((
                "runsc".to_string(),
                Handler {
                    settings: config.runtime.handlers["runsc"].clone(),
                    runtime_config: RuntimeHandlerConfig::runsc(layout.runtime_root("runsc")),
                    runtime: Arc::new(runsc) as Arc<dyn OciRuntime>,
                    features: Default::default(),
                },
            ));
        }
        let parts = Parts {
            handlers: HandlerSet::new(handlers),
            monitors: self
                .monitors_instead
                .unwrap_or_else(|| Arc::new(self.monitors)),
            pins,
            sandbox_records: RecordDir::open(layout.sandbox_records()).expect("records"),
            container_records: RecordDir::open(layout.container_records()).expect("records"),
            images: Arc::new(self.images),
            network: self
                .network_instead
                .unwrap_or_else(|| Arc::new(self.network)),
            host: oci_shim::spec::HostLimits::of_current_process().expect("host limits"),
            pause_rootfs: dir.path().join("pause"),
            monitor_binary: dir.path().join("oci-monitor"),
            rootfs_tree: None,
            streaming: cri_streaming::StreamingServer::bind(
                &crate::config::StreamingConfig::default().server_config(),
            )
            .await
            .expect("streaming server on 127.0.0.1:0"),
            pod_calls: Arc::new(crate::quiet::Quiet::new(crate::daemon::POD_CALLS_QUIET)),
        };
        let daemon = Daemon::new(config, parts).expect("a daemon of doubles");
        TestDaemon {
            daemon: Arc::new(daemon),
            netns,
            dir,
        }
    }
}

impl Default for Doubles {
    fn default() -> Self {
        Doubles::new()
    }
}

/// Waits (at most 5 s) until every removed pod's network release has
/// finished: RemovePodSandbox does not wait for it (`pod::release`).
pub async fn removals_released(daemon: &Daemon) {
    for _ in 0..500 {
        if daemon.pins.list().unwrap_or_default().is_empty()
            && daemon.removed_pods.list().is_empty()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("a removed pod's network was never released");
}

/// A monitor double's launch that creates the container (init pid 4242).
pub fn launch_ok() -> Box<MockPendingLaunch> {
    let mut pending = MockPendingLaunch::new();
    pending
        .expect_create()
        .times(1)
        .returning(|| Ok(Monitor::new("c", std::path::Path::new("/m"), 4242, 4243)));
    Box::new(pending)
}

/// A monitor double's launch whose runtime fails to create the container.
pub fn launch_failing() -> Box<MockPendingLaunch> {
    let mut pending = MockPendingLaunch::new();
    pending.expect_create().times(1).returning(|| {
        Err(oci_shim::Error::Monitor {
            id: "c".into(),
            reason: "runc create: exec format error".into(),
        })
    });
    Box::new(pending)
}

/// An exit record of `code`.
pub fn exit(code: i32) -> ExitRecord {
    ExitRecord {
        exit_code: code,
        signal: 0,
        finished_at_unix_nanos: 1_700_000_000_000_000_000,
    }
}

/// A RunPodSandbox request for pod `name`.
pub fn pod_request(name: &str) -> cri::RunPodSandboxRequest {
    cri::RunPodSandboxRequest {
        config: Some(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("{name}-uid"),
                namespace: "test".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            linux: Some(cri::LinuxPodSandboxConfig::default()),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    }
}

/// A CNI result with one address.
pub fn network_status() -> cni::NetworkStatus {
    let result: cni::CniResult = serde_json::from_value(serde_json::json!({
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.88.0.7/16"}]
    }))
    .expect("a CNI result");
    cni::NetworkStatus {
        network: "test".into(),
        ips: vec!["10.88.0.7".parse().expect("an address")],
        interfaces: vec!["eth0".into()],
        result,
        raw_result: serde_json::Value::Null,
    }
}

/// Puts a ready pod named `name` (handler runc, host network: no pin) in
/// `daemon`'s stores, as a finished RunPodSandbox would, and returns its id.
pub fn ready_pod(daemon: &Daemon, name: &str) -> String {
    let id = sandbox_core::id::generate().expect("an id");
    let mut pod = sandbox_core::Sandbox::new(
        id.clone(),
        sandbox_core::PodMetadata::new(name, "test", format!("{name}-uid"), 0),
    );
    pod.runtime_handler = "runc".into();
    pod.trusted = true;
    pod.namespace_options.network = sandbox_core::NamespaceMode::Node;
    pod.mark_ready(sandbox_core::timestamp::now())
        .expect("a new pod becomes ready");
    daemon
        .pod_names
        .reserve(&pod.name, &id)
        .expect("a free name");
    daemon.save_sandbox(&pod).expect("a record");
    daemon.sandboxes.add(pod).expect("a new pod");
    id
}

/// A ready pod with a pinned network namespace and a running infra
/// container (pid 4242), as RunPodSandbox leaves it; returns its id.
pub fn networked_pod(daemon: &Daemon, name: &str) -> String {
    let id = ready_pod(daemon, name);
    let pin = daemon.pins.create(&id).expect("a pin");
    daemon
        .sandboxes
        .update(&id, |s| {
            s.namespace_options.network = sandbox_core::NamespaceMode::Pod;
            s.netns_path = Some(pin.path().to_path_buf());
            let mut infra = sandbox_core::Container::new(
                id.clone(),
                s,
                sandbox_core::ContainerMetadata::new("POD", 0),
            );
            infra.mark_started(1, 4242).expect("a created infra starts");
            s.infra_container = Some(infra);
        })
        .expect("the pod just added");
    id
}

/// A busybox-like image whose root filesystem is `rootfs`.
pub fn image(id: &str) -> image_store::Image {
    image_store::Image {
        id: id.into(),
        repo_tags: vec!["registry.test/busybox:1".into()],
        repo_digests: Vec::new(),
        size: 1,
        uid: None,
        username: String::new(),
        config_json: r#"{"config":{"Cmd":["sh"],"Env":["PATH=/bin"]}}"#.into(),
        evidence: Vec::new(),
    }
}

/// A CreateContainer request for container `name` of `image` in `pod`.
pub fn container_request(pod: &str, name: &str) -> cri::CreateContainerRequest {
    cri::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "registry.test/busybox:1".into(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "600".into()],
            linux: Some(cri::LinuxContainerConfig::default()),
            ..Default::default()
        }),
        sandbox_config: None,
    }
}

/// Expects one root filesystem for a container of `image`, made as a
/// directory under `dir` (no overlay, no root needed).
pub fn expect_rootfs(images: &mut MockContainerImages, dir: &std::path::Path) {
    let image = image("sha256:aaaa");
    images
        .expect_status()
        .returning(move |_| Ok(Some(image.clone())));
    let dir = dir.to_path_buf();
    images
        .expect_create_rootfs()
        .times(1)
        .returning(move |image_id, container_id, readonly| {
            let path = dir.join(container_id);
            std::fs::create_dir_all(path.join("etc")).expect("rootfs dir");
            Ok(image_store::RootFs {
                container_id: container_id.into(),
                image_id: image_id.into(),
                path,
                readonly,
            })
        });
}

/// Puts a running container `name` (pid 4242, handler runc) of `pod` in
/// `daemon`'s stores, as CreateContainer and StartContainer would.
pub fn running_container(daemon: &Daemon, pod: &str, name: &str) -> String {
    let sandbox = daemon.sandboxes.get(pod).expect("the pod");
    let id = sandbox_core::id::generate().expect("an id");
    let mut container = sandbox_core::Container::new(
        id.clone(),
        &sandbox,
        sandbox_core::ContainerMetadata::new(name, 0),
    );
    container.runtime_handler = "runc".into();
    container.stop_signal = "SIGTERM".into();
    container
        .mark_started(sandbox_core::timestamp::now(), 4242)
        .expect("a created container starts");
    daemon
        .container_names
        .reserve(&container.name, &id)
        .expect("a free name");
    daemon.save_container(&container).expect("a record");
    daemon.containers.add(container).expect("a new container");
    id
}
