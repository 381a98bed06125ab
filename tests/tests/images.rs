//! critest "Image Manager" and the CRI-visible contract of the image store
//! (issue 4), through the daemon: pull, status by every kind of reference,
//! list, remove, the user forms of `ImageStatus`, and the errors kubelet sees.
//!
//! Every test starts its own daemon, so each has an empty store of its own
//! and counts (three images, one image) are exact.

use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use std::path::{Path, PathBuf};
use tests::daemon::Daemon;
use tests::fixtures::{container_config, image_spec, pod_config, BUSYBOX};
use tonic::transport::Channel;
use tonic::Code;

/// The busybox fixture without a tag: CRI means `:latest`.
const BUSYBOX_UNTAGGED: &str = "registry.k8s.io/e2e-test-images/busybox";
/// Where the four busybox tags live, all one image.
const BUSYBOX_TAGS: [&str; 3] = [
    "registry.k8s.io/e2e-test-images/busybox:1.29-2",
    "registry.k8s.io/e2e-test-images/busybox:1.29",
    "registry.k8s.io/e2e-test-images/busybox:latest",
];
/// Three images that differ (their configs' `User`, their layers).
const DIFFERENT_IMAGES: [&str; 3] = [
    "registry.k8s.io/user-uid:latest",
    "registry.k8s.io/user-name:latest",
    "registry.k8s.io/multi-layer:latest",
];

type Images = ImageServiceClient<Channel>;

async fn try_pull(images: &mut Images, image: &str) -> Result<String, tonic::Status> {
    images
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// Pulls `image` and returns the image ref the daemon answered with.
async fn pull(daemon: &Daemon, images: &mut Images, image: &str) -> String {
    try_pull(images, image).await.unwrap_or_else(|e| {
        panic!(
            "pull {image}: {e} (is `cargo xtask fixtures` up?)\n{}",
            daemon.log()
        )
    })
}

async fn try_status(images: &mut Images, image: &str) -> Result<Option<cri::Image>, tonic::Status> {
    images
        .image_status(cri::ImageStatusRequest {
            image: image_spec(image),
            verbose: false,
        })
        .await
        .map(|r| r.into_inner().image)
}

async fn status(images: &mut Images, image: &str) -> Option<cri::Image> {
    try_status(images, image)
        .await
        .unwrap_or_else(|e| panic!("ImageStatus {image}: {e}"))
}

async fn try_remove(images: &mut Images, image: &str) -> Result<(), tonic::Status> {
    images
        .remove_image(cri::RemoveImageRequest {
            image: image_spec(image),
        })
        .await
        .map(|_| ())
}

async fn remove(images: &mut Images, image: &str) {
    try_remove(images, image)
        .await
        .unwrap_or_else(|e| panic!("RemoveImage {image}: {e}"));
}

async fn list(images: &mut Images, filter: Option<&str>) -> Vec<cri::Image> {
    images
        .list_images(cri::ListImagesRequest {
            filter: filter.map(|f| cri::ImageFilter {
                image: image_spec(f),
            }),
        })
        .await
        .unwrap_or_else(|e| panic!("ListImages {filter:?}: {e}"))
        .into_inner()
        .images
}

/// The image store's root inside the daemon's private directory.
fn store_root(daemon: &Daemon) -> PathBuf {
    daemon.dir().join("root/images")
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn is_image_id(id: &str) -> bool {
    id.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

// critest: image status get image fields should not have Uid|Username empty.
#[tokio::test]
async fn image_status_reports_uid_or_username_for_every_user_form() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    // (image, config User, uid, username)
    let cases = [
        ("registry.k8s.io/user-uid:latest", "1002", Some(1002), ""),
        (
            "registry.k8s.io/user-name:latest",
            "www-data",
            None,
            "www-data",
        ),
        (
            "registry.k8s.io/user-uid-gid:latest",
            "1003:1003",
            Some(1003),
            "",
        ),
        (
            "registry.k8s.io/user-name-group:latest",
            "www-data:www-data",
            None,
            "www-data",
        ),
    ];
    for (image, user, uid, username) in cases {
        let id = pull(&daemon, &mut images, image).await;
        assert!(is_image_id(&id), "{image}: image ref {id:?}");
        let response = images
            .image_status(cri::ImageStatusRequest {
                image: image_spec(image),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let s = response
            .image
            .unwrap_or_else(|| panic!("{image}: no status"));
        assert_eq!(s.id, id, "{image}");
        assert_eq!(s.uid.map(|u| u.value), uid, "{image}: uid");
        assert_eq!(s.username, username, "{image}: username");
        assert!(s.uid.is_some() || !s.username.is_empty(), "{image}");
        assert!(s.size > 0, "{image}: size 0");
        // Verbose status carries the image config, User as written.
        let info = response
            .info
            .get("info")
            .unwrap_or_else(|| panic!("{image}: verbose info {:?}", response.info));
        assert!(
            info.contains(&format!("\"User\":\"{user}\"")),
            "{image}: {info}"
        );
    }
    // The busybox fixture sets no User: neither is claimed.
    pull(&daemon, &mut images, BUSYBOX).await;
    let s = status(&mut images, BUSYBOX).await.unwrap();
    assert_eq!((s.uid, s.username.as_str()), (None, ""));
}

// critest: image status should support all kinds of references.
#[tokio::test]
async fn image_status_supports_all_kinds_of_references() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    let id = pull(&daemon, &mut images, BUSYBOX).await;
    let by_tag = status(&mut images, BUSYBOX).await.expect("status by tag");
    assert_eq!(by_tag.id, id);
    assert_eq!(by_tag.repo_tags, [BUSYBOX]);
    assert_eq!(by_tag.repo_digests.len(), 1, "{:?}", by_tag.repo_digests);

    let hex = id.strip_prefix("sha256:").unwrap().to_string();
    // Short ids as `crictl images` prints them (13 characters), with and
    // without the algorithm, resolve as containerd's do.
    let mut names: Vec<String> = vec![
        id.clone(),
        hex.clone(),
        hex[..13].to_string(),
        format!("sha256:{}", &hex[..13]),
    ];
    names.extend(by_tag.repo_tags.iter().cloned());
    names.extend(by_tag.repo_digests.iter().cloned());
    for name in &names {
        let s = status(&mut images, name).await;
        assert_eq!(s.as_ref(), Some(&by_tag), "ImageStatus {name}");
        let filtered = list(&mut images, Some(name)).await;
        assert_eq!(
            filtered,
            std::slice::from_ref(&by_tag),
            "ListImages filtered by {name}"
        );
    }

    // Untagged means `:latest`, which is another (not yet pulled) name.
    assert_eq!(status(&mut images, BUSYBOX_UNTAGGED).await, None);
    let latest_id = pull(&daemon, &mut images, BUSYBOX_UNTAGGED).await;
    assert_eq!(latest_id, id, "all busybox tags are one image");
    let by_short = status(&mut images, BUSYBOX_UNTAGGED).await.unwrap();
    assert_eq!(by_short.id, id);
    assert_eq!(
        status(&mut images, &format!("{BUSYBOX_UNTAGGED}:latest")).await,
        Some(by_short.clone())
    );

    // Removing by short id removes every name.
    remove(&mut images, &names[2]).await;
    for name in names.iter().chain([&BUSYBOX_UNTAGGED.to_string()]) {
        assert_eq!(status(&mut images, name).await, None, "{name} after remove");
    }
    assert!(list(&mut images, None).await.is_empty());
}

// Short names resolve the way docker's do: `busybox` is
// `docker.io/library/busybox:latest`. docker.io is mirrored to the fixture
// registry here, so nothing leaves loopback.
#[tokio::test]
async fn short_names_are_docker_library_images() {
    let daemon = Daemon::start(
        "[[image.registries]]\n\
         prefix = \"docker.io/library\"\n\
         mirrors = [\"127.0.0.1:5000/e2e-test-images\"]\n\
         insecure = true\n\
         mirrors_only = true\n",
    )
    .await;
    let mut images = daemon.images().await;
    let id = pull(&daemon, &mut images, "busybox:1.29-2").await;
    let s = status(&mut images, "busybox:1.29-2").await.unwrap();
    assert_eq!(s.id, id);
    assert_eq!(s.repo_tags, ["docker.io/library/busybox:1.29-2"]);
    assert_eq!(s.repo_digests.len(), 1);
    assert!(
        s.repo_digests[0].starts_with("docker.io/library/busybox@sha256:"),
        "{:?}",
        s.repo_digests
    );
    for name in [
        "library/busybox:1.29-2",
        "docker.io/library/busybox:1.29-2",
        "docker.io/busybox:1.29-2",
        &s.repo_digests[0],
    ] {
        assert_eq!(status(&mut images, name).await.as_ref(), Some(&s), "{name}");
    }
    // `busybox` alone is `:latest`, not pulled yet.
    assert_eq!(status(&mut images, "busybox").await, None);
    assert_eq!(pull(&daemon, &mut images, "busybox").await, id);
    let s = status(&mut images, "busybox").await.unwrap();
    assert_eq!(
        s.repo_tags,
        [
            "docker.io/library/busybox:1.29-2",
            "docker.io/library/busybox:latest"
        ]
    );
    remove(&mut images, "busybox").await;
    assert!(list(&mut images, None).await.is_empty());
}

// critest: listImage should get exactly 3 image in the result list.
#[tokio::test]
async fn list_images_has_three_different_images_once_each() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    let mut ids = Vec::new();
    for image in DIFFERENT_IMAGES {
        ids.push(pull(&daemon, &mut images, image).await);
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "three different images: {ids:?}");

    let listed = list(&mut images, None).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (image, id) in DIFFERENT_IMAGES.iter().zip(&ids) {
        let matching: Vec<_> = listed.iter().filter(|i| &i.id == id).collect();
        assert_eq!(matching.len(), 1, "{image} listed {} times", matching.len());
        assert_eq!(matching[0].repo_tags, [*image]);
        assert_eq!(matching[0].repo_digests.len(), 1);
        assert!(matching[0].size > 0);
    }

    for image in DIFFERENT_IMAGES {
        remove(&mut images, image).await;
    }
    assert!(list(&mut images, None).await.is_empty());
}

// critest: listImage should get exactly 3 repoTags in the result image.
#[tokio::test]
async fn one_image_under_three_tags_lists_all_three() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    let mut ids = Vec::new();
    for tag in BUSYBOX_TAGS {
        ids.push(pull(&daemon, &mut images, tag).await);
    }
    assert!(ids.iter().all(|id| id == &ids[0]), "one image: {ids:?}");

    let listed = list(&mut images, None).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let mut tags = listed[0].repo_tags.clone();
    tags.sort();
    let mut expected = BUSYBOX_TAGS.map(String::from).to_vec();
    expected.sort();
    assert_eq!(tags, expected);
    // The tags share one index, hence one digest.
    assert_eq!(
        listed[0].repo_digests.len(),
        1,
        "{:?}",
        listed[0].repo_digests
    );

    // Removal by one tag removes the image with all its names.
    remove(&mut images, BUSYBOX_TAGS[1]).await;
    for tag in BUSYBOX_TAGS {
        assert_eq!(status(&mut images, tag).await, None, "{tag}");
    }
    assert!(list(&mut images, None).await.is_empty());
}

/// Asserts what critest's `testPullPublicImage` does: the image is there
/// after the pull with the names `check` expects, and gone after removal.
async fn pulled_and_removed(image: &str, check: impl FnOnce(&cri::Image)) {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    assert_eq!(status(&mut images, image).await, None);
    let id = pull(&daemon, &mut images, image).await;
    let s = status(&mut images, image).await.expect("status after pull");
    assert_eq!(s.id, id);
    check(&s);
    remove(&mut images, image).await;
    assert_eq!(status(&mut images, image).await, None);
    assert_eq!(status(&mut images, &id).await, None);
    assert!(list(&mut images, None).await.is_empty());
}

fn one_busybox_digest(s: &cri::Image) {
    assert_eq!(s.repo_digests.len(), 1, "{:?}", s.repo_digests);
    let digest = s.repo_digests[0]
        .strip_prefix("registry.k8s.io/e2e-test-images/busybox@sha256:")
        .unwrap_or_else(|| panic!("{:?}", s.repo_digests));
    assert_eq!(digest.len(), 64);
}

// critest: public image with tag should be pulled and removed.
#[tokio::test]
async fn public_image_with_tag_is_pulled_and_removed() {
    pulled_and_removed(BUSYBOX, |s| {
        assert_eq!(s.repo_tags, [BUSYBOX]);
        one_busybox_digest(s);
    })
    .await;
}

// critest: public image without tag should be pulled and removed.
#[tokio::test]
async fn public_image_without_tag_is_pulled_and_removed() {
    pulled_and_removed(BUSYBOX_UNTAGGED, |s| {
        assert_eq!(s.repo_tags, [format!("{BUSYBOX_UNTAGGED}:latest")]);
        one_busybox_digest(s);
    })
    .await;
}

// critest: public image with digest should be pulled and removed.
#[tokio::test]
async fn public_image_with_digest_is_pulled_and_removed() {
    // Learn the digest from a pull by tag (in a store that is then dropped).
    let digest = {
        let daemon = Daemon::start("").await;
        let mut images = daemon.images().await;
        pull(&daemon, &mut images, BUSYBOX).await;
        let s = status(&mut images, BUSYBOX).await.unwrap();
        one_busybox_digest(&s);
        s.repo_digests[0].clone()
    };
    pulled_and_removed(&digest, |s| {
        assert!(
            s.repo_tags.is_empty(),
            "pulled by digest: {:?}",
            s.repo_tags
        );
        assert_eq!(s.repo_digests, std::slice::from_ref(&digest));
    })
    .await;
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_agree() {
    let daemon = Daemon::start("").await;
    let mut a = daemon.images().await;
    let mut b = daemon.images().await;
    let (ra, rb) = tokio::join!(try_pull(&mut a, BUSYBOX), try_pull(&mut b, BUSYBOX));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra, rb);
    let listed = list(&mut a, None).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].repo_tags, [BUSYBOX]);
    assert_eq!(listed[0].repo_digests.len(), 1);
}

#[tokio::test]
async fn unknown_images_are_empty_answers_and_removing_them_is_ok() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    let unknown_id = format!("sha256:{}", "0".repeat(64));
    let unknown_digest = format!("registry.k8s.io/nope@sha256:{}", "1".repeat(64));
    for name in [
        "registry.k8s.io/nope:1",
        "busybox",
        unknown_id.as_str(),
        &unknown_id[7..],
        unknown_digest.as_str(),
    ] {
        assert_eq!(status(&mut images, name).await, None, "ImageStatus {name}");
        assert!(list(&mut images, Some(name)).await.is_empty(), "{name}");
        remove(&mut images, name).await;
    }
    // And once something is stored, an unknown name still finds nothing.
    pull(&daemon, &mut images, BUSYBOX).await;
    assert_eq!(status(&mut images, "registry.k8s.io/nope:1").await, None);
    remove(
        &mut images,
        "registry.k8s.io/e2e-test-images/busybox:stable",
    )
    .await;
    assert!(
        status(&mut images, BUSYBOX).await.is_some(),
        "removing an absent tag must not remove the image that has others"
    );
}

#[tokio::test]
async fn malformed_references_are_invalid_arguments() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    for bad in [
        "Bad Reference",
        "busybox:",
        "a@sha256:12",
        "a:b:c",
        " busybox",
    ] {
        let pulled = try_pull(&mut images, bad).await.unwrap_err();
        assert_eq!(
            pulled.code(),
            Code::InvalidArgument,
            "PullImage {bad:?}: {pulled}"
        );
        assert!(pulled.message().contains(bad), "{pulled}");
        let status = try_status(&mut images, bad).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "ImageStatus {bad:?}: {status}"
        );
        let removed = try_remove(&mut images, bad).await.unwrap_err();
        assert_eq!(
            removed.code(),
            Code::InvalidArgument,
            "RemoveImage {bad:?}: {removed}"
        );
        let listed = images
            .list_images(cri::ListImagesRequest {
                filter: Some(cri::ImageFilter {
                    image: image_spec(bad),
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(
            listed.code(),
            Code::InvalidArgument,
            "ListImages {bad:?}: {listed}"
        );
    }
    // No image at all is a request error too.
    for (rpc, err) in [
        ("PullImage", try_pull(&mut images, "").await.unwrap_err()),
        (
            "ImageStatus",
            try_status(&mut images, "").await.unwrap_err(),
        ),
        (
            "RemoveImage",
            try_remove(&mut images, "").await.unwrap_err(),
        ),
    ] {
        assert_eq!(err.code(), Code::InvalidArgument, "{rpc}: {err}");
        assert!(err.message().contains(rpc), "{err}");
    }
    let no_spec = images
        .pull_image(cri::PullImageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(no_spec.code(), Code::InvalidArgument);
    assert!(list(&mut images, None).await.is_empty());
}

#[tokio::test]
async fn broken_layers_fail_the_pull_naming_the_image_and_leave_nothing() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    for image in [
        "registry.k8s.io/broken/corrupt-layer:latest",
        "registry.k8s.io/broken/truncated-layer:latest",
    ] {
        let err = try_pull(&mut images, image).await.unwrap_err();
        assert_ne!(err.code(), Code::Ok);
        assert!(err.message().contains(image), "{image}: {err}");
        assert!(err.message().contains("layer"), "{image}: {err}");
        assert_eq!(status(&mut images, image).await, None, "{image}");
    }
    assert!(list(&mut images, None).await.is_empty());
    let root = store_root(&daemon);
    assert!(entries(&root.join("tmp")).is_empty(), "half-written files");
    assert!(
        entries(&root.join("layers")).is_empty(),
        "layers of no image"
    );
    // An unknown repository on the (mirror-only) registry: named too.
    let missing = "registry.k8s.io/no-such-repository:1";
    let err = try_pull(&mut images, missing).await.unwrap_err();
    assert!(err.message().contains(missing), "{err}");
    // The store still works.
    pull(&daemon, &mut images, BUSYBOX).await;
    assert_eq!(list(&mut images, None).await.len(), 1);
}

#[tokio::test]
async fn an_image_a_container_uses_cannot_be_removed() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    let mut rt = daemon.runtime().await;
    let id = pull(&daemon, &mut images, BUSYBOX).await;

    let logs = tempfile::tempdir().unwrap();
    let mut config = pod_config("image-in-use");
    config.log_directory = logs.path().to_string_lossy().into_owned();
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", daemon.log()))
        .into_inner()
        .pod_sandbox_id;
    let ctr = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("user", BUSYBOX, &["sleep", "600"])),
            sandbox_config: Some(config),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", daemon.log()))
        .into_inner()
        .container_id;

    for name in [BUSYBOX, id.as_str()] {
        let err = try_remove(&mut images, name).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{name}: {err}");
        assert!(err.message().contains("in use"), "{err}");
        assert!(err.message().contains(&ctr), "names the container: {err}");
        assert!(err.message().contains(&id), "names the image: {err}");
    }
    let kept = status(&mut images, BUSYBOX).await.expect("still there");
    assert_eq!(kept.repo_tags, [BUSYBOX]);

    // Once the container is gone, so can the image be.
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", daemon.log()));
    remove(&mut images, BUSYBOX).await;
    assert_eq!(status(&mut images, &id).await, None);
}

async fn fs_info(images: &mut Images) -> cri::FilesystemUsage {
    let response = images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.image_filesystems.len(), 1, "{response:?}");
    response.image_filesystems[0].clone()
}

#[tokio::test]
async fn image_fs_info_counts_what_the_store_holds() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    let empty = fs_info(&mut images).await;
    pull(&daemon, &mut images, "registry.k8s.io/multi-layer:latest").await;
    let full = fs_info(&mut images).await;

    let mountpoint = &full.fs_id.as_ref().expect("fs_id").mountpoint;
    assert_eq!(Path::new(mountpoint), store_root(&daemon));
    assert!(full.timestamp > 0);
    let used = full.used_bytes.expect("used_bytes").value;
    let inodes = full.inodes_used.expect("inodes_used").value;
    assert!(used > 0 && inodes > 0, "{full:?}");
    let before = empty.used_bytes.expect("used_bytes").value;
    let inodes_before = empty.inodes_used.expect("inodes_used").value;
    assert!(used > before, "a pull adds bytes: {before} -> {used}");
    assert!(inodes > inodes_before, "{inodes_before} -> {inodes}");

    remove(&mut images, "registry.k8s.io/multi-layer:latest").await;
    let after = fs_info(&mut images).await;
    // Exact inodes: every file of the image is gone. Bytes only shrink, as
    // directories may keep blocks they grew into.
    assert_eq!(after.inodes_used.unwrap().value, inodes_before);
    assert!(after.used_bytes.unwrap().value < used);
}

// Image records live on disk: a daemon killed without warning comes back
// with the same images under the same names.
#[tokio::test]
async fn images_survive_a_daemon_killed_and_restarted() {
    let mut daemon = Daemon::start("").await;
    let before = {
        let mut images = daemon.images().await;
        for image in [BUSYBOX, BUSYBOX_TAGS[1], DIFFERENT_IMAGES[2]] {
            pull(&daemon, &mut images, image).await;
        }
        list(&mut images, None).await
    };
    assert_eq!(before.len(), 2);
    daemon.kill9();
    daemon.restart().await;
    let mut images = daemon.images().await;
    assert_eq!(list(&mut images, None).await, before);
    for image in &before {
        for name in image.repo_tags.iter().chain(&image.repo_digests) {
            assert_eq!(
                status(&mut images, name).await.as_ref(),
                Some(image),
                "{name}"
            );
        }
    }
    // And what was removed before a restart stays removed.
    remove(&mut images, DIFFERENT_IMAGES[2]).await;
    daemon.terminate().await;
    daemon.restart().await;
    let mut images = daemon.images().await;
    let after = list(&mut images, None).await;
    assert_eq!(after.len(), 1);
    assert_eq!(status(&mut images, DIFFERENT_IMAGES[2]).await, None);
}

// A reference with both a tag and a digest is fetched by digest, and
// recorded as kubelet expects of a pull by digest: no tag (as containerd),
// since the registry's tag may point elsewhere by now.
#[tokio::test]
async fn a_pull_by_tag_and_digest_records_only_the_digest() {
    let daemon = Daemon::start("").await;
    let mut images = daemon.images().await;
    let id = pull(&daemon, &mut images, BUSYBOX).await;
    let digest = status(&mut images, BUSYBOX).await.unwrap().repo_digests[0].clone();
    remove(&mut images, BUSYBOX).await;

    let (_, hash) = digest.split_once('@').unwrap();
    let both = format!("{BUSYBOX}@{hash}");
    assert_eq!(pull(&daemon, &mut images, &both).await, id);
    let s = status(&mut images, &both)
        .await
        .expect("status by tag and digest");
    assert!(s.repo_tags.is_empty(), "{:?}", s.repo_tags);
    assert_eq!(s.repo_digests, std::slice::from_ref(&digest));
    assert_eq!(status(&mut images, BUSYBOX).await, None, "tag not recorded");

    // A digest the registry does not have fails, naming the image.
    let wrong = format!("{BUSYBOX_UNTAGGED}@sha256:{}", "0".repeat(64));
    let err = try_pull(&mut images, &wrong).await.unwrap_err();
    assert!(err.message().contains(&wrong), "{err}");
}
