//! The CRI of Kubernetes 1.36 (cri-api v0.36.3, vendored in `cri-api`):
//! every field and RPC that arrived after the `k8s-cri` bindings either
//! works or is refused on purpose. The Stream* RPCs answer what their List*
//! twins answer; `stop_signal` decides how StopContainer stops; a non-UTF-8
//! environment value and mount features the runtime lacks are refused with
//! InvalidArgument naming the field, and leave no container behind.

use cri_api::v1 as cri;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, pod_config, BUSYBOX};
use tokio_stream::StreamExt;
use tonic::Code;

/// Every item of a server stream, checking each message is non-empty.
async fn collect<R, T>(
    stream: tonic::Response<tonic::Streaming<R>>,
    items: impl Fn(R) -> Vec<T>,
) -> Vec<T> {
    let mut stream = stream.into_inner();
    let mut out = Vec::new();
    while let Some(message) = stream.next().await {
        let batch = items(message.expect("stream message"));
        assert!(!batch.is_empty(), "a stream message without items");
        out.extend(batch);
    }
    out
}

#[tokio::test]
async fn stream_rpcs_answer_what_list_rpcs_answer() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(pod_config("stream-list"), "").await;
    let running = daemon
        .create_started(
            &pod,
            container_config("sleeper", BUSYBOX, &["sleep", "600"]),
        )
        .await;
    let mut rt = daemon.runtime().await;
    let mut images = daemon.images().await;

    let pods = collect(
        rt.stream_pod_sandboxes(cri::StreamPodSandboxesRequest::default())
            .await
            .unwrap(),
        |r| r.pod_sandboxes,
    )
    .await;
    assert_eq!(pods.iter().map(|p| &p.id).collect::<Vec<_>>(), [&pod]);

    let containers = collect(
        rt.stream_containers(cri::StreamContainersRequest::default())
            .await
            .unwrap(),
        |r| r.containers,
    )
    .await;
    assert_eq!(
        containers.iter().map(|c| &c.id).collect::<Vec<_>>(),
        [&running]
    );

    let stats = collect(
        rt.stream_container_stats(cri::StreamContainerStatsRequest::default())
            .await
            .unwrap(),
        |r| r.container_stats,
    )
    .await;
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].attributes.as_ref().unwrap().id, running);

    let pod_stats = collect(
        rt.stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest::default())
            .await
            .unwrap(),
        |r| r.pod_sandbox_stats,
    )
    .await;
    assert_eq!(pod_stats.len(), 1);

    let metrics = collect(
        rt.stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest::default())
            .await
            .unwrap(),
        |r| r.pod_sandbox_metrics,
    )
    .await;
    let listed = rt
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    assert_eq!(metrics.len(), listed.len());

    let streamed_images = collect(
        images
            .stream_images(cri::StreamImagesRequest::default())
            .await
            .unwrap(),
        |r| r.images,
    )
    .await;
    let listed_images = images
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(streamed_images, listed_images);

    // A filter that matches nothing: the stream ends with no message.
    let none = collect(
        rt.stream_containers(cri::StreamContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: "nosuchcontainer".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap(),
        |r| r.containers,
    )
    .await;
    assert!(none.is_empty());

    // UpdatePodSandboxResources: acknowledged for a pod, NotFound otherwise.
    rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod.clone(),
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        }),
        overhead: None,
    })
    .await
    .unwrap();
    let err = rt
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "0123456789abcdef".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    daemon.remove_pod(&pod).await;
}

#[tokio::test]
async fn stop_signal_from_the_request_stops_the_container() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(pod_config("stop-signal"), "").await;
    // The shell ignores SIGTERM; only SIGUSR1 ends it, with status 42.
    let mut config = container_config(
        "usr1",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "trap '' TERM; trap 'exit 42' USR1; touch /tmp/trapped; while :; do sleep 0.1; done",
        ],
    );
    config.stop_signal = cri::Signal::Sigusr1 as i32;
    let id = daemon.create_started(&pod, config).await;
    // A signal sent before the shell installs its trap kills it (status 138),
    // which says nothing about the stop signal: wait for the trap first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while daemon
        .exec(&id, &["test", "-f", "/tmp/trapped"])
        .await
        .exit_code
        != 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the shell never set its traps"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let status = daemon.container_status(&id).await;
    assert_eq!(status.stop_signal, cri::Signal::Sigusr1 as i32);

    let started = std::time::Instant::now();
    daemon.stop_container(&id, 30).await;
    // SIGTERM would have waited out the 30 s grace period and SIGKILLed.
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    let status = daemon.container_status(&id).await;
    assert_eq!(status.exit_code, 42, "{status:?}");

    // The default: the image names none, so SIGTERM.
    let plain = daemon
        .create(&pod, container_config("plain", BUSYBOX, &["sleep", "600"]))
        .await;
    let status = daemon.container_status(&plain).await;
    assert_eq!(status.stop_signal, cri::Signal::Sigterm as i32);
    daemon.remove_pod(&pod).await;
}

#[tokio::test]
async fn fields_the_runtime_cannot_honour_are_refused() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(pod_config("refusals"), "").await;
    let mut rt = daemon.runtime().await;

    let mut bad_env = container_config("bad-env", BUSYBOX, &["true"]);
    bad_env.envs.push(cri::KeyValue {
        key: "BINARY".into(),
        value: vec![0xff, 0xfe, b'x'],
    });
    let mut image_volume = container_config("image-volume", BUSYBOX, &["true"]);
    image_volume.mounts.push(cri::Mount {
        container_path: "/data".into(),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut bad_signal = container_config("bad-signal", BUSYBOX, &["true"]);
    bad_signal.stop_signal = 4242;

    for (config, expected) in [
        (bad_env, "BINARY"),
        (image_volume, "image volume"),
        (bad_signal, "stop_signal 4242"),
    ] {
        let err = rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(config),
                sandbox_config: Some(pod_config("refusals")),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(expected), "{err:?}");
    }
    let left = rt
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(left.is_empty(), "{left:?}");

    // A valid UTF-8 value still arrives byte for byte.
    let mut env = container_config("env", BUSYBOX, &["sleep", "600"]);
    env.envs.push(cri::KeyValue {
        key: "GREETING".into(),
        value: "grüße".as_bytes().to_vec(),
    });
    let id = daemon.create_started(&pod, env).await;
    let out = daemon
        .exec(&id, &["sh", "-c", "printf %s \"$GREETING\""])
        .await;
    assert_eq!(out.stdout, "grüße".as_bytes());
    daemon.remove_pod(&pod).await;
}

/// Unmounts the tmpfs a test put under a volume, whatever the test did.
struct Submount(std::path::PathBuf);

impl Drop for Submount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn recursive_read_only_reaches_submounts_on_runc() {
    let daemon = Daemon::start("").await;
    daemon.pull(BUSYBOX).await;
    let pod = daemon.run_pod(pod_config("rro"), "").await;
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let _submount = Submount(sub.clone());
    let mount = |recursive_read_only: bool, path: &str| cri::Mount {
        container_path: path.into(),
        host_path: host.path().to_string_lossy().into_owned(),
        readonly: true,
        recursive_read_only,
        ..Default::default()
    };
    let mut config = container_config("rro", BUSYBOX, &["sleep", "600"]);
    config.mounts = vec![mount(true, "/all-ro"), mount(false, "/top-ro")];
    let id = daemon.create_started(&pod, config).await;
    // Plain read-only leaves the submount writable; rro does not.
    let (code, _) = daemon.sh(&id, "touch /top-ro/sub/plain").await;
    assert_eq!(code, 0, "a plain ro bind keeps submounts writable");
    let (code, out) = daemon.sh(&id, "touch /all-ro/sub/recursive 2>&1").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!sub.join("recursive").exists());
    daemon.remove_pod(&pod).await;
}

/// A fixture whose `User=app` (1500) is, by the image's `/etc/group`, in
/// audio (29), video (44) and staff (50).
const USER_GROUPS: &str = "registry.k8s.io/user-groups:latest";

#[tokio::test]
async fn strict_supplemental_groups_and_the_reported_user() {
    let daemon = Daemon::start("").await;
    daemon.pull(USER_GROUPS).await;
    let features = daemon.status().await.features.unwrap();
    assert!(features.supplemental_groups_policy);
    let pod = daemon.run_pod(pod_config("groups"), "").await;
    let run = |name: &str, policy: cri::SupplementalGroupsPolicy| {
        let mut config = container_config(name, USER_GROUPS, &["sleep", "600"]);
        config.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                supplemental_groups: vec![4242],
                supplemental_groups_policy: policy as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
        config
    };
    let groups_of = |out: String| {
        let mut groups: Vec<u32> = out
            .split_whitespace()
            .filter_map(|g| g.parse().ok())
            .collect();
        groups.sort_unstable();
        groups
    };
    let merge = daemon
        .create_started(&pod, run("merge", cri::SupplementalGroupsPolicy::Merge))
        .await;
    let (_, out) = daemon.sh(&merge, "id -G").await;
    assert_eq!(groups_of(out), [29, 44, 50, 1500, 4242]);

    // Strict: what the image's /etc/group says is left out.
    let strict = daemon
        .create_started(&pod, run("strict", cri::SupplementalGroupsPolicy::Strict))
        .await;
    let (_, out) = daemon.sh(&strict, "id -G").await;
    assert_eq!(groups_of(out), [1500, 4242]);

    let user = daemon
        .container_status(&strict)
        .await
        .user
        .unwrap()
        .linux
        .unwrap();
    assert_eq!((user.uid, user.gid), (1500, 1500));
    assert_eq!(user.supplemental_groups, [4242]);
    let merged = daemon
        .container_status(&merge)
        .await
        .user
        .unwrap()
        .linux
        .unwrap();
    let mut reported = merged.supplemental_groups.clone();
    reported.sort_unstable();
    assert_eq!(reported, [29, 44, 50, 4242]);
    daemon.remove_pod(&pod).await;
}
