//! What a CRI message says about the objects a call is about, as span
//! attributes: the pod sandbox, the container, the image, and the pod's
//! and container's Kubernetes names. Read from the message bytes the
//! layer kept, so no verb knows about spans.
//!
//! Keys follow OpenTelemetry's semantic conventions where one exists
//! (`k8s.pod.uid`, `k8s.pod.name`, `k8s.namespace.name`,
//! `k8s.container.name`, `container.id`, `container.image.name`); the pod
//! sandbox id, which has none, is `cri.pod_sandbox.id`. Credentials
//! (PullImage's `auth`) are never read.

use cri_api::v1 as cri;
use opentelemetry::KeyValue;
use prost::Message;

/// The pod sandbox a call is about.
pub const POD_SANDBOX_ID: &str = "cri.pod_sandbox.id";
/// The container a call is about.
pub const CONTAINER_ID: &str = "container.id";
/// The image a call is about, as the request names it.
pub const IMAGE: &str = "container.image.name";
/// The pod's uid, from the sandbox config's metadata.
pub const POD_UID: &str = "k8s.pod.uid";
/// The pod's name.
pub const POD_NAME: &str = "k8s.pod.name";
/// The pod's namespace.
pub const POD_NAMESPACE: &str = "k8s.namespace.name";
/// The container's name, from its config's metadata.
pub const CONTAINER_NAME: &str = "k8s.container.name";
/// The RuntimeClass handler RunPodSandbox asked for.
pub const RUNTIME_HANDLER: &str = "cri.runtime_handler";

/// The attributes of a `method` request (its bare name, such as
/// `RunPodSandbox`) encoded in `message`; none when the method names no
/// object or the bytes do not decode.
pub fn of_request(method: &str, message: &[u8]) -> Vec<KeyValue> {
    request_attributes(method, message).unwrap_or_default()
}

/// The attributes of a `method` response: the id RunPodSandbox and
/// CreateContainer made.
pub fn of_response(method: &str, message: &[u8]) -> Vec<KeyValue> {
    let id = match method {
        "RunPodSandbox" => decode::<cri::RunPodSandboxResponse>(message)
            .map(|r| non_empty(POD_SANDBOX_ID, r.pod_sandbox_id)),
        "CreateContainer" => decode::<cri::CreateContainerResponse>(message)
            .map(|r| non_empty(CONTAINER_ID, r.container_id)),
        _ => None,
    };
    id.flatten().into_iter().collect()
}

/// Whether [`of_response`] reads anything of `method`'s responses, so that
/// other responses are not kept.
pub fn response_has_attributes(method: &str) -> bool {
    matches!(method, "RunPodSandbox" | "CreateContainer")
}

fn request_attributes(method: &str, m: &[u8]) -> Option<Vec<KeyValue>> {
    let pod = |id: String| Some(ids([(POD_SANDBOX_ID, id)]));
    let container = |id: String| Some(ids([(CONTAINER_ID, id)]));
    match method {
        "RunPodSandbox" => decode::<cri::RunPodSandboxRequest>(m).map(run_pod_sandbox),
        "CreateContainer" => decode::<cri::CreateContainerRequest>(m).map(create_container),
        "StopPodSandbox" => pod(decode::<cri::StopPodSandboxRequest>(m)?.pod_sandbox_id),
        "RemovePodSandbox" => pod(decode::<cri::RemovePodSandboxRequest>(m)?.pod_sandbox_id),
        "PodSandboxStatus" => pod(decode::<cri::PodSandboxStatusRequest>(m)?.pod_sandbox_id),
        "PodSandboxStats" => pod(decode::<cri::PodSandboxStatsRequest>(m)?.pod_sandbox_id),
        "PortForward" => pod(decode::<cri::PortForwardRequest>(m)?.pod_sandbox_id),
        "UpdatePodSandboxResources" => {
            pod(decode::<cri::UpdatePodSandboxResourcesRequest>(m)?.pod_sandbox_id)
        }
        "StartContainer" => container(decode::<cri::StartContainerRequest>(m)?.container_id),
        "StopContainer" => container(decode::<cri::StopContainerRequest>(m)?.container_id),
        "RemoveContainer" => container(decode::<cri::RemoveContainerRequest>(m)?.container_id),
        "ContainerStatus" => container(decode::<cri::ContainerStatusRequest>(m)?.container_id),
        "ContainerStats" => container(decode::<cri::ContainerStatsRequest>(m)?.container_id),
        "UpdateContainerResources" => {
            container(decode::<cri::UpdateContainerResourcesRequest>(m)?.container_id)
        }
        "ReopenContainerLog" => {
            container(decode::<cri::ReopenContainerLogRequest>(m)?.container_id)
        }
        "ExecSync" => container(decode::<cri::ExecSyncRequest>(m)?.container_id),
        "Exec" => container(decode::<cri::ExecRequest>(m)?.container_id),
        "Attach" => container(decode::<cri::AttachRequest>(m)?.container_id),
        "CheckpointContainer" => {
            container(decode::<cri::CheckpointContainerRequest>(m)?.container_id)
        }
        "PullImage" => decode::<cri::PullImageRequest>(m).map(pull_image),
        "ImageStatus" => Some(image(decode::<cri::ImageStatusRequest>(m)?.image)),
        "RemoveImage" => Some(image(decode::<cri::RemoveImageRequest>(m)?.image)),
        _ => None,
    }
}

fn run_pod_sandbox(request: cri::RunPodSandboxRequest) -> Vec<KeyValue> {
    let mut attributes = pod_metadata(request.config.and_then(|c| c.metadata));
    attributes.extend(non_empty(RUNTIME_HANDLER, request.runtime_handler));
    attributes
}

fn create_container(request: cri::CreateContainerRequest) -> Vec<KeyValue> {
    let mut attributes = ids([(POD_SANDBOX_ID, request.pod_sandbox_id)]);
    attributes.extend(pod_metadata(
        request.sandbox_config.and_then(|c| c.metadata),
    ));
    if let Some(config) = request.config {
        let name = config.metadata.map(|m| m.name).unwrap_or_default();
        attributes.extend(non_empty(CONTAINER_NAME, name));
        attributes.extend(image(config.image));
    }
    attributes
}

fn pull_image(request: cri::PullImageRequest) -> Vec<KeyValue> {
    let mut attributes = image(request.image);
    attributes.extend(pod_metadata(
        request.sandbox_config.and_then(|c| c.metadata),
    ));
    attributes
}

fn pod_metadata(metadata: Option<cri::PodSandboxMetadata>) -> Vec<KeyValue> {
    let Some(metadata) = metadata else {
        return Vec::new();
    };
    ids([
        (POD_UID, metadata.uid),
        (POD_NAME, metadata.name),
        (POD_NAMESPACE, metadata.namespace),
    ])
}

fn image(spec: Option<cri::ImageSpec>) -> Vec<KeyValue> {
    ids([(IMAGE, spec.map(|s| s.image).unwrap_or_default())])
}

/// The pairs whose value is not empty: an unset field is no attribute.
fn ids<const N: usize>(pairs: [(&'static str, String); N]) -> Vec<KeyValue> {
    pairs
        .into_iter()
        .filter_map(|(key, value)| non_empty(key, value))
        .collect()
}

fn non_empty(key: &'static str, value: String) -> Option<KeyValue> {
    (!value.is_empty()).then(|| KeyValue::new(key, value))
}

fn decode<M: Message + Default>(message: &[u8]) -> Option<M> {
    M::decode(message).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn map(attributes: Vec<KeyValue>) -> BTreeMap<String, String> {
        attributes
            .into_iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    fn pod_config() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u-1".into(),
                namespace: "prod".into(),
                attempt: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn run_pod_sandbox_names_the_pod_and_its_new_id() {
        let request = cri::RunPodSandboxRequest {
            config: Some(pod_config()),
            runtime_handler: "runsc".into(),
        };
        let got = map(of_request("RunPodSandbox", &request.encode_to_vec()));
        assert_eq!(got[POD_NAME], "web");
        assert_eq!(got[POD_UID], "u-1");
        assert_eq!(got[POD_NAMESPACE], "prod");
        assert_eq!(got[RUNTIME_HANDLER], "runsc");
        let response = cri::RunPodSandboxResponse {
            pod_sandbox_id: "abc".into(),
        };
        let got = map(of_response("RunPodSandbox", &response.encode_to_vec()));
        assert_eq!(got[POD_SANDBOX_ID], "abc");
        assert!(response_has_attributes("RunPodSandbox"));
        assert!(!response_has_attributes("Version"));
    }

    #[test]
    fn create_container_names_pod_container_and_image() {
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: "p1".into(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: "busybox:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(pod_config()),
        };
        let got = map(of_request("CreateContainer", &request.encode_to_vec()));
        assert_eq!(got[POD_SANDBOX_ID], "p1");
        assert_eq!(got[CONTAINER_NAME], "app");
        assert_eq!(got[IMAGE], "busybox:1");
        assert_eq!(got[POD_NAME], "web");
    }

    #[test]
    fn ids_of_other_verbs_and_nothing_of_credentials() {
        let status = cri::ContainerStatusRequest {
            container_id: "c1".into(),
            verbose: false,
        };
        let got = map(of_request("ContainerStatus", &status.encode_to_vec()));
        assert_eq!(got, BTreeMap::from([(CONTAINER_ID.into(), "c1".into())]));
        let pull = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            auth: Some(cri::AuthConfig {
                password: "secret".into(),
                ..Default::default()
            }),
            sandbox_config: None,
        };
        let got = map(of_request("PullImage", &pull.encode_to_vec()));
        assert_eq!(got, BTreeMap::from([(IMAGE.into(), "busybox".into())]));
    }

    #[test]
    fn empty_fields_unknown_methods_and_garbage_give_nothing() {
        let stop = cri::StopPodSandboxRequest::default();
        assert!(of_request("StopPodSandbox", &stop.encode_to_vec()).is_empty());
        assert!(of_request("Version", &[]).is_empty());
        assert!(of_request("StopPodSandbox", &[0xff, 0xff, 0xff]).is_empty());
        assert!(of_response("CreateContainer", &[0x0a, 0x10]).is_empty());
    }
}
