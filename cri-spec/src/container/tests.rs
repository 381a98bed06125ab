//! Table tests of [`build`], in the manner of containerd's
//! `container_create_linux_test.go`: one request field at a time, the spec
//! it must produce.

use super::*;
use crate::image_config::ImageConfig;
use oci_shim::spec::NamespaceKind;
use std::collections::BTreeMap;

fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
    let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    ImageConfig {
        entrypoint: strings(entrypoint),
        cmd: strings(cmd),
        env: Some(vec!["PATH=/usr/bin".into(), "IMAGE=1".into()]),
        working_dir: Some("/srv".into()),
        ..Default::default()
    }
}

fn request() -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// The request's security context, created if missing.
fn security(r: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    r.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// Builds with a pod of its own network namespace and infra pid 7.
fn build_with(
    request: &cri::ContainerConfig,
    image: &ImageConfig,
    edit: impl FnOnce(&mut ContainerInputs<'_>),
) -> Result<BuiltContainer, ContainerSpecError> {
    build_with_volumes(request, image, &[], edit)
}

fn build_with_volumes(
    request: &cri::ContainerConfig,
    image: &ImageConfig,
    volumes: &[Mount],
    edit: impl FnOnce(&mut ContainerInputs<'_>),
) -> Result<BuiltContainer, ContainerSpecError> {
    let allow = AllowList::new(&["allowed.io/*".into()]).unwrap();
    let annotations = BTreeMap::from([
        ("allowed.io/x".to_string(), "1".to_string()),
        ("dev.gvisor.spec.mount.x".to_string(), "evil".to_string()),
    ]);
    let files = [(PathBuf::from("/pods/p1/hosts"), "/etc/hosts")];
    let mut inputs = ContainerInputs {
        request,
        image,
        rootfs: Path::new("/rootfs"),
        user: None,
        volumes,
        pod_files: &files,
        pod: PodNamespaces {
            netns: Some("/run/netns/p1".into()),
            infra_pid: Some(7),
            ..Default::default()
        },
        pod_id: "p1",
        target_pid: None,
        cgroups_path: "/kubepods/p1/c1".into(),
        allowed_annotations: &allow,
        annotations: &annotations,
        apparmor_enabled: false,
        privileged_without_host_devices: false,
    };
    edit(&mut inputs);
    build(&inputs)
}

fn ns_path(spec: &ContainerSpec, kind: NamespaceKind) -> Option<Option<String>> {
    spec.namespaces
        .iter()
        .find(|n| n.kind == kind)
        .map(|n| n.path.as_ref().map(|p| p.display().to_string()))
}

#[test]
fn argv_follows_kubelet_and_docker_rules() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // (image entrypoint, image cmd, request command, request args) → argv
    // (image entrypoint, image cmd, request command, request args, argv)
    type Row<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
    );
    let table: [Row; 5] = [
        (&["/ep"], &["a"], &[], &[], &["/ep", "a"]),
        (&["/ep"], &["a"], &[], &["b"], &["/ep", "b"]),
        (&["/ep"], &["a"], &["/cmd"], &[], &["/cmd"]),
        (&["/ep"], &["a"], &["/cmd"], &["b"], &["/cmd", "b"]),
        (&[], &["sh"], &[], &[], &["sh"]),
    ];
    for (entrypoint, cmd, command, args, want) in table {
        let mut r = request();
        r.command = s(command);
        r.args = s(args);
        let built = build_with(&r, &image(entrypoint, cmd), |_| {}).unwrap();
        assert_eq!(
            built.spec.process.args,
            s(want),
            "{entrypoint:?} {cmd:?} {command:?} {args:?}"
        );
    }
    let err = build_with(&request(), &image(&[], &[]), |_| {}).unwrap_err();
    assert!(matches!(err, ContainerSpecError::NoCommand));
}

#[test]
fn environment_and_working_directory_merge_with_the_image() {
    let mut r = request();
    r.envs = vec![cri::KeyValue {
        key: "IMAGE".into(),
        value: "2".into(),
    }];
    let built = build_with(&r, &image(&["/ep"], &[]), |_| {}).unwrap();
    assert!(built.spec.process.env.contains(&"IMAGE=2".to_string()));
    assert!(built
        .spec
        .process
        .env
        .contains(&"PATH=/usr/bin".to_string()));
    assert_eq!(built.spec.process.cwd, "/srv");
    r.working_dir = "/work".into();
    let built = build_with(&r, &image(&["/ep"], &[]), |_| {}).unwrap();
    assert_eq!(built.spec.process.cwd, "/work");
}

#[test]
fn which_user_is_looked_up() {
    let ctx =
        |uid: Option<i64>, name: &str, group: Option<i64>| cri::LinuxContainerSecurityContext {
            run_as_user: uid.map(|value| cri::Int64Value { value }),
            run_as_username: name.into(),
            run_as_group: group.map(|value| cri::Int64Value { value }),
            ..Default::default()
        };
    let table = [
        (ctx(None, "", None), Some("33"), Ok(Some("33"))),
        (ctx(None, "", None), None, Ok(None)),
        (ctx(Some(1000), "", None), Some("33"), Ok(Some("1000"))),
        (ctx(None, "app", Some(5)), Some("33"), Ok(Some("app"))),
        (ctx(None, "", Some(5)), Some("33"), Err("run_as_group")),
        (ctx(Some(-1), "", None), None, Err("out of range")),
        (ctx(Some(1 << 33), "", None), None, Err("out of range")),
    ];
    for (security, image_user, want) in table {
        let got = user_to_resolve(&security, image_user);
        match (got, want) {
            (Ok(got), Ok(want)) => assert_eq!(got.as_deref(), want),
            (Err(e), Err(words)) => assert!(e.to_string().contains(words), "{e}"),
            (got, want) => panic!("{security:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn the_resolved_user_takes_run_as_group_and_supplemental_groups() {
    let mut r = request();
    security(&mut r).run_as_group = Some(cri::Int64Value { value: 50 });
    security(&mut r).supplemental_groups = vec![20, 30];
    let built = build_with(&r, &image(&["/ep"], &[]), |i| {
        i.user = Some(ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![20],
        })
    })
    .unwrap();
    let user = &built.spec.process.user;
    assert_eq!((user.uid, user.gid), (1000, 50));
    assert_eq!(user.additional_gids, [20, 30]);
    // Without a user to resolve, the supplemental groups still apply.
    let mut r = request();
    security(&mut r).supplemental_groups = vec![7];
    let built = build_with(&r, &image(&["/ep"], &[]), |_| {}).unwrap();
    assert_eq!(built.spec.process.user.additional_gids, [7]);
}

#[test]
fn strict_supplemental_groups_leave_the_images_groups_out() {
    let resolved = |i: &mut ContainerInputs<'_>| {
        i.user = Some(ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10, 20],
        })
    };
    let mut r = request();
    security(&mut r).supplemental_groups = vec![30];
    let merged = build_with(&r, &image(&["/ep"], &[]), resolved).unwrap();
    assert_eq!(merged.spec.process.user.additional_gids, [10, 20, 30]);
    security(&mut r).supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
    let strict = build_with(&r, &image(&["/ep"], &[]), resolved).unwrap();
    assert_eq!(strict.spec.process.user.additional_gids, [30]);
    assert_eq!(strict.spec.process.user.gid, 1000);
    security(&mut r).supplemental_groups_policy = 7;
    let err = build_with(&r, &image(&["/ep"], &[]), resolved).unwrap_err();
    assert!(
        err.to_string().contains("supplemental_groups_policy 7"),
        "{err}"
    );
}

#[test]
fn namespaces_join_the_pod_or_follow_the_request() {
    use sandbox_core::NamespaceMode as M;
    let pid_mode = |mode: M| {
        let mut r = request();
        security(&mut r).namespace_options = Some(cri::NamespaceOption {
            pid: crate::convert::cri_namespace_mode(mode),
            target_id: "c0".into(),
            ..Default::default()
        });
        r
    };
    let joined = |kind: &str| Some(Some(format!("/proc/7/ns/{kind}")));
    // (request's PID mode, target's pid) → the PID namespace
    let table = [
        (M::Pod, None, joined("pid")),
        (M::Container, None, Some(None)),
        (M::Node, None, None),
        (M::Target, Some(42), Some(Some("/proc/42/ns/pid".into()))),
    ];
    for (mode, target, want) in table {
        let built = build_with(&pid_mode(mode), &image(&["/ep"], &[]), |i| {
            i.target_pid = target
        })
        .unwrap();
        let spec = &built.spec;
        assert_eq!(ns_path(spec, NamespaceKind::Pid), want, "{mode:?}");
        assert_eq!(
            ns_path(spec, NamespaceKind::Network),
            Some(Some("/run/netns/p1".into()))
        );
        assert_eq!(ns_path(spec, NamespaceKind::Ipc), joined("ipc"));
        assert_eq!(ns_path(spec, NamespaceKind::Uts), joined("uts"));
    }
    let err = build_with(&pid_mode(M::Target), &image(&["/ep"], &[]), |_| {}).unwrap_err();
    assert!(err.to_string().contains("c0"), "{err}");

    // Host network and IPC pods, and gVisor pods.
    let built = build_with(&request(), &image(&["/ep"], &[]), |i| {
        i.pod.netns = None;
        i.pod.options.network = M::Node;
        i.pod.options.ipc = M::Node;
    })
    .unwrap();
    assert_eq!(ns_path(&built.spec, NamespaceKind::Network), None);
    assert_eq!(ns_path(&built.spec, NamespaceKind::Ipc), None);
    assert_eq!(ns_path(&built.spec, NamespaceKind::Uts), None);
    let built = build_with(&request(), &image(&["/ep"], &[]), |i| {
        i.pod.on_gvisor = true
    })
    .unwrap();
    assert_eq!(ns_path(&built.spec, NamespaceKind::Ipc), Some(None));
    // The pod's PID namespace on gVisor: any path shares the sandbox's.
    assert_eq!(
        ns_path(&built.spec, NamespaceKind::Pid),
        Some(Some("/proc/7/ns/pid".into()))
    );
    let built = build_with(&pid_mode(M::Container), &image(&["/ep"], &[]), |i| {
        i.pod.on_gvisor = true
    })
    .unwrap();
    assert_eq!(ns_path(&built.spec, NamespaceKind::Pid), Some(None));
}

#[test]
fn volumes_and_pod_files_are_bind_mounted() {
    let volume = Mount {
        container_path: "/data".into(),
        host_path: "/srv/data".into(),
        readonly: true,
        selinux_relabel: false,
        propagation: MountPropagation::HostToContainer,
        recursive_read_only: false,
        idmapped: false,
    };
    let rro = Mount {
        container_path: "/all-ro".into(),
        host_path: "/srv".into(),
        readonly: true,
        propagation: MountPropagation::Private,
        recursive_read_only: true,
        ..Default::default()
    };
    let volumes = [volume, rro];
    let built = build_with_volumes(&request(), &image(&["/ep"], &[]), &volumes, |_| {}).unwrap();
    let data = built
        .spec
        .mounts
        .iter()
        .find(|m| m.destination == "/data")
        .unwrap();
    assert_eq!(data.options, ["rbind", "ro"]);
    assert_eq!(data.propagation, Some(Propagation::HostToContainer));
    let all_ro = built
        .spec
        .mounts
        .iter()
        .find(|m| m.destination == "/all-ro")
        .unwrap();
    assert_eq!(all_ro.options, ["rbind", "ro", "rro"]);
    let hosts = built
        .spec
        .mounts
        .iter()
        .find(|m| m.destination == "/etc/hosts")
        .unwrap();
    assert_eq!(hosts.source, "/pods/p1/hosts");
    assert_eq!(hosts.options, ["rbind", "rw"]);

    // A read-only root makes the pod's files read-only; a volume of the
    // container's own at /etc/hosts replaces the pod's.
    let mut r = request();
    security(&mut r).readonly_rootfs = true;
    let built = build_with(&r, &image(&["/ep"], &[]), |_| {}).unwrap();
    assert!(built.spec.root.readonly);
    let hosts = built
        .spec
        .mounts
        .iter()
        .find(|m| m.destination == "/etc/hosts")
        .unwrap();
    assert_eq!(hosts.options, ["rbind", "ro"]);
    r.mounts = vec![cri::Mount {
        container_path: "/etc/hosts".into(),
        ..Default::default()
    }];
    let built = build_with(&r, &image(&["/ep"], &[]), |_| {}).unwrap();
    assert!(!built
        .spec
        .mounts
        .iter()
        .any(|m| m.source == "/pods/p1/hosts"));
}

#[test]
fn resources_limits_and_oom_score_reach_the_spec_and_the_record() {
    let mut r = request();
    r.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        oom_score_adj: 500,
        ..Default::default()
    });
    let built = build_with(&r, &image(&["/ep"], &[]), |_| {}).unwrap();
    let memory = built.spec.resources.as_ref().unwrap().memory().unwrap();
    assert_eq!(memory.limit(), Some(64 << 20));
    assert_eq!(built.spec.process.oom_score_adj, Some(500));
    assert!(built.resources.is_some());
    r.linux
        .as_mut()
        .unwrap()
        .resources
        .as_mut()
        .unwrap()
        .cpu_shares = -2;
    let err = build_with(&r, &image(&["/ep"], &[]), |_| {}).unwrap_err();
    assert!(err.to_string().contains("cpu_shares"), "{err}");
}

#[test]
fn only_allowed_annotations_reach_the_runtime_and_the_pod_is_named() {
    let built = build_with(&request(), &image(&["/ep"], &[]), |_| {}).unwrap();
    assert_eq!(
        built.spec.annotations,
        BTreeMap::from([("allowed.io/x".to_string(), "1".to_string())])
    );
    assert!(matches!(
        built.spec.pod_role,
        Some(PodRole::Container { ref sandbox_id }) if sandbox_id == "p1"
    ));
    assert_eq!(built.spec.cgroups_path.as_deref(), Some("/kubepods/p1/c1"));
}

#[test]
fn added_capabilities_and_privilege_come_from_the_security_context() {
    let mut r = request();
    security(&mut r).capabilities = Some(cri::Capability {
        add_capabilities: vec!["NET_ADMIN".into()],
        drop_capabilities: vec!["CHOWN".into()],
        ..Default::default()
    });
    let built = build_with(&r, &image(&["/ep"], &[]), |_| {}).unwrap();
    let caps = &built.spec.process.capabilities;
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()), "{caps:?}");
    assert!(!caps.contains(&"CAP_CHOWN".to_string()), "{caps:?}");
    assert!(!built.spec.privileged);
}

#[test]
fn a_handler_without_host_devices_gives_privileged_containers_none() {
    let mut r = request();
    security(&mut r).privileged = true;
    let has_null = |spec: &ContainerSpec| {
        spec.devices
            .iter()
            .any(|d| d.path() == Path::new("/dev/null"))
    };
    let with = build_with(&r, &image(&["/ep"], &[]), |_| {}).unwrap();
    assert!(with.spec.privileged && has_null(&with.spec));
    let without = build_with(&r, &image(&["/ep"], &[]), |i| {
        i.privileged_without_host_devices = true
    })
    .unwrap();
    assert!(without.spec.privileged, "still privileged otherwise");
    assert!(!has_null(&without.spec), "{:?}", without.spec.devices);
}
