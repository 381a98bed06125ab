//! The crate's pieces used together the way a CRI server uses them: name
//! reservation against kubelet retries, stores kept consistent with the
//! registrar and with each other, and a save/restore through JSON.

use sandbox_core::{
    id, kube_name, All, Container, ContainerFilter, ContainerMetadata, ContainerState,
    ContainerStore, Error, NameRegistrar, PodMetadata, Sandbox, SandboxFilter, SandboxState,
    SandboxStore,
};
use std::sync::{Arc, Barrier};
use std::thread;

/// What a `RunPodSandbox` handler does before touching the kernel: reserve
/// the pod's name, or report the sandbox already holding it.
fn run_pod_sandbox(
    names: &NameRegistrar,
    sandboxes: &SandboxStore,
    metadata: PodMetadata,
) -> Result<String, Error> {
    let id = id::generate()?;
    match names.reserve(&kube_name::pod_name(&metadata), &id) {
        Ok(()) => {}
        Err(Error::NameReserved { holder, .. }) => return Ok(holder),
        Err(other) => return Err(other),
    }
    let mut sandbox = Sandbox::new(id.clone(), metadata);
    sandbox.trusted = true;
    sandboxes.add(sandbox)?;
    sandboxes.try_update(&id, |s| s.mark_ready(sandbox_core::timestamp::now()))?;
    Ok(id)
}

fn create_container(
    names: &NameRegistrar,
    sandboxes: &SandboxStore,
    containers: &ContainerStore,
    sandbox_prefix: &str,
    metadata: ContainerMetadata,
) -> Result<String, Error> {
    let sandbox = sandboxes.get(sandbox_prefix)?;
    let id = id::generate()?;
    let container = Container::new(id.clone(), &sandbox, metadata);
    names.reserve(&container.name, &id)?;
    containers.add(container)?;
    Ok(id)
}

fn remove_pod_sandbox(
    names: &NameRegistrar,
    sandboxes: &SandboxStore,
    containers: &ContainerStore,
    sandbox_id: &str,
) -> Result<(), Error> {
    let sandbox = sandboxes.remove(sandbox_id)?;
    let filter = ContainerFilter {
        sandbox_id_prefix: Some(sandbox.id.clone()),
        ..ContainerFilter::default()
    };
    for c in containers.list(&filter) {
        if c.sandbox_id == sandbox.id {
            containers.remove(&c.id)?;
            names.release_by_id(&c.id);
        }
    }
    names.release_by_id(&sandbox.id);
    Ok(())
}

#[test]
fn concurrent_kubelet_retries_share_one_sandbox() {
    let names = Arc::new(NameRegistrar::new());
    let sandboxes = Arc::new(SandboxStore::new());
    let start = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (names, sandboxes, start) = (
                Arc::clone(&names),
                Arc::clone(&sandboxes),
                Arc::clone(&start),
            );
            thread::spawn(move || {
                start.wait();
                run_pod_sandbox(
                    &names,
                    &sandboxes,
                    PodMetadata::new("web", "default", "u1", 0),
                )
            })
        })
        .collect();
    let ids: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(
        names.get("k8s_POD_web_default_u1_0").as_deref(),
        Some(ids[0].as_str())
    );
}

#[test]
fn removing_a_pod_frees_its_names_and_containers() {
    let names = NameRegistrar::new();
    let sandboxes = SandboxStore::new();
    let containers = ContainerStore::new();
    let pod = PodMetadata::new("web", "default", "u1", 0);
    let sandbox_id = run_pod_sandbox(&names, &sandboxes, pod.clone()).unwrap();
    let nginx = create_container(
        &names,
        &sandboxes,
        &containers,
        &sandbox_id[..10],
        ContainerMetadata::new("nginx", 0),
    )
    .unwrap();
    let err = create_container(
        &names,
        &sandboxes,
        &containers,
        &sandbox_id,
        ContainerMetadata::new("nginx", 0),
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::NameReserved {
            name: "k8s_nginx_web_default_u1_0".into(),
            holder: nginx.clone()
        }
    );

    let in_pod = ContainerFilter {
        sandbox_id_prefix: Some(sandbox_id.clone()),
        ..Default::default()
    };
    assert_eq!(containers.list(&in_pod).len(), 1);
    assert_eq!(containers.get(&nginx).unwrap().sandbox_id, sandbox_id);

    remove_pod_sandbox(&names, &sandboxes, &containers, &sandbox_id).unwrap();
    assert!(sandboxes.is_empty() && containers.is_empty());
    assert_eq!(names.get("k8s_nginx_web_default_u1_0"), None);
    // The same pod can now be run again under a new id.
    let again = run_pod_sandbox(&names, &sandboxes, pod).unwrap();
    assert_ne!(again, sandbox_id);
}

#[test]
fn stores_survive_a_json_round_trip() {
    let names = NameRegistrar::new();
    let sandboxes = SandboxStore::new();
    let containers = ContainerStore::new();
    for pod in ["a", "b", "c"] {
        let sandbox_id =
            run_pod_sandbox(&names, &sandboxes, PodMetadata::new(pod, "ns", pod, 0)).unwrap();
        let c = create_container(
            &names,
            &sandboxes,
            &containers,
            &sandbox_id,
            ContainerMetadata::new("app", 0),
        )
        .unwrap();
        containers
            .try_update(&c, |c| c.mark_started(sandbox_core::timestamp::now(), 100))
            .unwrap();
    }
    let saved_sandboxes = serde_json::to_string(
        &sandboxes
            .list(&All)
            .iter()
            .map(|s| (**s).clone())
            .collect::<Vec<Sandbox>>(),
    )
    .unwrap();
    let saved_containers = serde_json::to_string(
        &containers
            .list(&All)
            .iter()
            .map(|c| (**c).clone())
            .collect::<Vec<Container>>(),
    )
    .unwrap();

    let restored_sandboxes =
        SandboxStore::restore(serde_json::from_str::<Vec<Sandbox>>(&saved_sandboxes).unwrap())
            .unwrap();
    let restored_containers =
        ContainerStore::restore(serde_json::from_str::<Vec<Container>>(&saved_containers).unwrap())
            .unwrap();

    let ready = SandboxFilter {
        state: Some(SandboxState::Ready),
        ..Default::default()
    };
    assert_eq!(restored_sandboxes.list(&ready), sandboxes.list(&ready));
    let running = ContainerFilter {
        state: Some(ContainerState::Running),
        ..Default::default()
    };
    assert_eq!(restored_containers.list(&running).len(), 3);
    assert_eq!(restored_containers.list(&All), containers.list(&All));
}
