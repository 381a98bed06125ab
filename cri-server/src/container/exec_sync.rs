//! ExecSync: a command in a running container, output captured (16 MiB per
//! stream), killed with all its children when the timeout passes.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use cri_api::v1 as cri;
use sandbox_core::ContainerState;
use std::sync::Arc;
use std::time::Duration;

/// Without a timeout an exec may run this long; kubelet always sends one.
const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Runs `request.cmd` in `request.container_id`.
pub async fn exec_sync(
    daemon: &Arc<Daemon>,
    request: cri::ExecSyncRequest,
) -> Result<cri::ExecSyncResponse> {
    if request.cmd.is_empty() {
        return Err(Error::InvalidArgument("ExecSync: cmd is empty".into()));
    }
    let container = daemon.containers.get(&request.container_id)?;
    if container.state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {} is not running",
            container.id
        )));
    }
    let timeout = if request.timeout > 0 {
        Duration::from_secs(request.timeout as u64)
    } else {
        NO_TIMEOUT
    };
    let runtime = daemon.runtime(&container.runtime_handler)?;
    let result = runtime
        .exec_sync(&container.id, &request.cmd, timeout)
        .await?;
    if result.timed_out {
        return Err(Error::DeadlineExceeded(format!(
            "container {}: command {:?} timed out after {}s",
            container.id,
            request.cmd,
            timeout.as_secs()
        )));
    }
    Ok(cri::ExecSyncResponse {
        stdout: result.stdout,
        stderr: result.stderr,
        exit_code: result.exit_code,
    })
}

#[cfg(test)]
mod verb_tests {
    use super::*;
    use crate::testing::{ready_pod, running_container, Doubles};
    use oci_shim::runtime::ExecSyncResult;

    fn request(id: &str, timeout: i64) -> cri::ExecSyncRequest {
        cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sleep".into(), "4321".into()],
            timeout,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_timed_out_command_is_deadline_exceeded_naming_it() {
        let mut d = Doubles::new();
        d.runc
            .expect_exec_sync()
            .withf(|_, args, timeout| args[0] == "sleep" && *timeout == Duration::from_secs(2))
            .times(1)
            .returning(|_, _, _| {
                Ok(ExecSyncResult {
                    timed_out: true,
                    exit_code: 137,
                    ..Default::default()
                })
            });
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let id = running_container(&t.daemon, &pod, "app");

        let err = exec_sync(&t.daemon, request(&id, 2)).await.unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(status.message().contains("4321"), "{status}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn output_and_exit_code_come_back_and_a_stopped_container_is_refused() {
        let mut d = Doubles::new();
        d.runc.expect_exec_sync().times(1).returning(|_, _, _| {
            Ok(ExecSyncResult {
                stdout: b"out".to_vec(),
                stderr: b"err".to_vec(),
                exit_code: 3,
                timed_out: false,
            })
        });
        let t = d.build().await;
        let pod = ready_pod(&t.daemon, "web");
        let id = running_container(&t.daemon, &pod, "app");

        let answer = exec_sync(&t.daemon, request(&id, 0)).await.unwrap();
        assert_eq!(
            (answer.stdout, answer.stderr),
            (b"out".to_vec(), b"err".to_vec())
        );
        assert_eq!(answer.exit_code, 3);
        t.daemon
            .containers
            .update(&id, |c| c.mark_unknown("gone"))
            .unwrap();
        let err = exec_sync(&t.daemon, request(&id, 1)).await.unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    }
}
