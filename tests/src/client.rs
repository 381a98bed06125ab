//! The CRI calls end-to-end tests make again and again, as methods on
//! [`Daemon`]: each panics with the daemon's log when the call fails, so a
//! test states only what it checks.

use crate::daemon::Daemon;
use crate::fixtures::image_spec;
use cri_api::v1 as cri;

impl Daemon {
    /// The runtime's Status (not verbose).
    pub async fn status(&self) -> cri::StatusResponse {
        self.runtime()
            .await
            .status(cri::StatusRequest { verbose: false })
            .await
            .unwrap_or_else(|e| panic!("Status: {e}\n{}", self.log()))
            .into_inner()
    }

    /// Pulls `image` (from the fixture registry through the mirror config).
    pub async fn pull(&self, image: &str) -> String {
        self.images()
            .await
            .pull_image(cri::PullImageRequest {
                image: image_spec(image),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("pull {image}: {e} (is `cargo xtask fixtures` up?)"))
            .into_inner()
            .image_ref
    }

    /// Runs a pod on `handler` (empty: the trust policy decides) and returns
    /// its id.
    pub async fn run_pod(&self, config: cri::PodSandboxConfig, handler: &str) -> String {
        self.runtime()
            .await
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: handler.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", self.log()))
            .into_inner()
            .pod_sandbox_id
    }

    /// Every pod the daemon lists, unfiltered.
    pub async fn list_pods(&self) -> Vec<cri::PodSandbox> {
        self.runtime()
            .await
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .unwrap_or_else(|e| panic!("ListPodSandbox: {e}\n{}", self.log()))
            .into_inner()
            .items
    }

    /// The status of pod `id`.
    pub async fn pod_status(&self, id: &str, verbose: bool) -> cri::PodSandboxStatusResponse {
        self.runtime()
            .await
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose,
            })
            .await
            .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}\n{}", self.log()))
            .into_inner()
    }

    /// Creates a container from `config` in pod `pod` and returns its id.
    pub async fn create(&self, pod: &str, config: cri::ContainerConfig) -> String {
        self.runtime()
            .await
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.to_string(),
                config: Some(config),
                sandbox_config: None,
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", self.log()))
            .into_inner()
            .container_id
    }

    /// Creates and starts a container from `config` in pod `pod`.
    pub async fn create_started(&self, pod: &str, config: cri::ContainerConfig) -> String {
        let id = self.create(pod, config).await;
        self.runtime()
            .await
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", self.log()));
        id
    }

    /// Runs `argv` in container `id` (10 s timeout).
    pub async fn exec(&self, id: &str, argv: &[&str]) -> cri::ExecSyncResponse {
        self.runtime()
            .await
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.to_string(),
                cmd: argv.iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync {argv:?}: {e}\n{}", self.log()))
            .into_inner()
    }

    /// Runs `sh -c script` in container `id` and returns its exit code and
    /// stdout followed by stderr.
    pub async fn sh(&self, id: &str, script: &str) -> (i32, String) {
        let out = self.exec(id, &["sh", "-c", script]).await;
        (
            out.exit_code,
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// PodSandboxStats of pod `id`.
    pub async fn pod_stats(&self, id: &str) -> cri::PodSandboxStats {
        self.runtime()
            .await
            .pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("PodSandboxStats {id}: {e}\n{}", self.log()))
            .into_inner()
            .stats
            .expect("stats")
    }

    /// The status of container `id`.
    pub async fn container_status(&self, id: &str) -> cri::ContainerStatus {
        self.runtime()
            .await
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}\n{}", self.log()))
            .into_inner()
            .status
            .expect("a status")
    }

    /// Waits (up to 10 s) until container `id` has exited; its status then.
    pub async fn wait_exited(&self, id: &str) -> cri::ContainerStatus {
        for _ in 0..100 {
            let status = self.container_status(id).await;
            if status.state == cri::ContainerState::ContainerExited as i32 {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("container {id} did not exit within 10 s\n{}", self.log())
    }

    /// Stops pod `id` (StopPodSandbox).
    pub async fn stop_pod(&self, id: &str) {
        self.runtime()
            .await
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e}\n{}", self.log()));
    }

    /// Stops container `id` with `timeout` seconds for its stop signal,
    /// failing the test with the daemon's log if StopContainer fails.
    pub async fn stop_container(&self, id: &str, timeout: i64) {
        self.runtime()
            .await
            .stop_container(cri::StopContainerRequest {
                container_id: id.to_string(),
                timeout,
            })
            .await
            .unwrap_or_else(|e| panic!("StopContainer {id}: {e}\n{}", self.log()));
    }

    /// Removes container `id`, failing the test with the daemon's log if
    /// RemoveContainer fails.
    pub async fn remove_container(&self, id: &str) {
        self.runtime()
            .await
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemoveContainer {id}: {e}\n{}", self.log()));
    }

    /// Removes pod `id` with its containers, then waits (up to 10 s) until
    /// its network is released too: RemovePodSandbox does not wait for the
    /// CNI DEL its stop started, so tests that check the host afterwards
    /// would race it.
    pub async fn remove_pod(&self, id: &str) {
        self.runtime()
            .await
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e}\n{}", self.log()));
        self.wait_released(id).await;
    }

    /// Waits (up to 10 s) until pod `id`'s CNI attachment record and
    /// namespace pins are gone.
    pub async fn wait_released(&self, id: &str) {
        let attachment = self.dir().join("root/cni").join(id);
        let pins = self.dir().join("state/netns");
        let held = || {
            attachment.exists()
                || std::fs::read_dir(&pins).is_ok_and(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with(id))
                })
        };
        for _ in 0..100 {
            if !held() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("pod {id}: network not released within 10 s\n{}", self.log())
    }
}
