//! critest "PodSandbox" and "Container runtime ... basic operations" on both
//! handlers: run, status, list, stop, remove; create, start, exec, stop,
//! remove.

use cri_api::v1 as cri;
use tests::daemon::Daemon;
use tests::fixtures::{container_config, image_spec, pod_config, BUSYBOX};
use tonic::Code;

async fn pull(daemon: &Daemon, image: &str) {
    daemon
        .images()
        .await
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e} (is `cargo xtask fixtures` up?)"));
}

#[tokio::test]
async fn pod_and_container_lifecycle_on_runc() {
    pod_and_container_lifecycle("runc").await;
}

#[tokio::test]
async fn pod_and_container_lifecycle_on_runsc() {
    pod_and_container_lifecycle("runsc").await;
}

async fn pod_and_container_lifecycle(handler: &str) {
    let daemon = Daemon::start("").await;
    let mut rt = daemon.runtime().await;
    pull(&daemon, BUSYBOX).await;

    let logs = tempfile::tempdir().unwrap();
    let mut pod_config = pod_config("lifecycle");
    pod_config.log_directory = logs.path().to_string_lossy().into_owned();
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: handler.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", daemon.log()))
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(pod.len(), 64);

    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod[..12].to_string(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let s = status.status.unwrap();
    assert_eq!(s.id, pod);
    assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(s.runtime_handler, handler);
    let trusted = format!("\"trusted\":{}", handler == "runc");
    assert!(status.info["trust"].contains(&trusted), "{:?}", status.info);

    let listed = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: [("test".to_string(), "lifecycle".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(listed.len(), 1);

    // A live duplicate name is refused.
    let dup = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: handler.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup}");

    let ctr = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config(
                "sleeper",
                BUSYBOX,
                &["sh", "-c", "echo hello; exec sleep 600"],
            )),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", daemon.log()))
        .into_inner()
        .container_id;
    let state = |s: &cri::ContainerStatusResponse| s.status.as_ref().unwrap().state;
    let created = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(&created),
        cri::ContainerState::ContainerCreated as i32
    );

    rt.start_container(cri::StartContainerRequest {
        container_id: ctr[..10].to_string(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", daemon.log()));

    let exec = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "hostname; echo err >&2; exit 3".into(),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exec.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), "lifecycle");
    assert_eq!(String::from_utf8_lossy(&exec.stderr).trim(), "err");

    let running = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(running.len(), 1);

    rt.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    let stopped = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    let st = stopped.status.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 143, "sleep dies of SIGTERM");
    assert_eq!(st.reason, "Error");
    assert_eq!(
        st.log_path,
        logs.path().join("sleeper.log").to_string_lossy()
    );
    let log = std::fs::read_to_string(&st.log_path).unwrap();
    assert!(log.contains(" stdout F hello"), "{log}");

    // Idempotent stop and remove, for containers and pods.
    rt.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let s = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(s.state, cri::PodSandboxState::SandboxNotready as i32);
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let gone = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert!(rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
        .is_empty());
}

#[tokio::test]
async fn bad_ids_get_the_right_codes() {
    let daemon = Daemon::start("").await;
    let mut rt = daemon.runtime().await;
    let empty = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty}");
    let unknown = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: "abcdef".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown}");
    let no_config = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest::default())
        .await
        .unwrap_err();
    assert_eq!(no_config.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_stopped_pod_holding_the_name_is_replaced() {
    let daemon = Daemon::start("").await;
    let mut rt = daemon.runtime().await;
    let config = pod_config("stale");
    let run = || cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    };
    let first = rt
        .run_pod_sandbox(run())
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: first.clone(),
    })
    .await
    .unwrap();
    let second = rt
        .run_pod_sandbox(run())
        .await
        .unwrap_or_else(|e| panic!("the stale pod must give way: {e}\n{}", daemon.log()))
        .into_inner()
        .pod_sandbox_id;
    assert_ne!(first, second);
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1, "the stale pod is removed");
    assert_eq!(pods[0].id, second);
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: second,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_device_is_usable_and_a_bad_one_refused() {
    let daemon = Daemon::start("").await;
    let mut rt = daemon.runtime().await;
    pull(&daemon, BUSYBOX).await;
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("devices")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut config = container_config("dev", BUSYBOX, &["sleep", "600"]);
    config.devices = vec![cri::Device {
        container_path: "/dev/mynull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let ctr = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(config.clone()),
            sandbox_config: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()))
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .unwrap();
    let out = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: ctr,
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo x > /dev/mynull && ls -l /dev/mynull".into(),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with('c'));

    config.metadata.as_mut().unwrap().name = "baddev".into();
    config.devices[0].host_path = "/etc/hostname".into();
    let err = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pause_image_is_pulled_and_used_for_the_infra_container() {
    let daemon = Daemon::start(&format!("[image]\npause_image = \"{BUSYBOX}\"\n")).await;
    let mut rt = daemon.runtime().await;
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("pauseimage")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()))
        .into_inner()
        .pod_sandbox_id;
    let image = daemon
        .images()
        .await
        .image_status(cri::ImageStatusRequest {
            image: image_spec(BUSYBOX),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image;
    assert!(image.is_some(), "RunPodSandbox pulled the pause image");
    let info = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    // The image's command (busybox's `sh`), not the built-in /pause.
    assert!(
        info["info"].contains("\"command\":[\"sh\"]"),
        "{}",
        info["info"]
    );
    // While a container uses it as its root, the image cannot be removed.
    let err = daemon
        .images()
        .await
        .remove_image(cri::RemoveImageRequest {
            image: image_spec(BUSYBOX),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    daemon
        .images()
        .await
        .remove_image(cri::RemoveImageRequest {
            image: image_spec(BUSYBOX),
        })
        .await
        .unwrap();
}
