//! Pulling the fixture images from the local registry through the mirror
//! configuration, and what the store then reports. Needs `cargo xtask
//! fixtures` and root.

mod common;

use common::*;
use image_store::ImageStore;

#[tokio::test]
async fn pull_by_tag_through_the_mirror_picks_linux_amd64_from_the_index() {
    let (_dir, store) = store().await;
    let image = store.pull(BUSYBOX, None).await.unwrap();
    assert_eq!(image.repo_tags, [BUSYBOX]);
    assert_eq!(image.repo_digests.len(), 1);
    assert!(image.repo_digests[0].starts_with("registry.k8s.io/e2e-test-images/busybox@sha256:"));
    let config: serde_json::Value = serde_json::from_str(&image.config_json).unwrap();
    assert_eq!(
        config["architecture"], "amd64",
        "the decoy arm64 entry comes first"
    );
    assert_eq!(
        image.id,
        image_store::blob_store::sha256_digest(image.config_json.as_bytes())
    );
    assert!(image.size > 500_000, "busybox is in there: {}", image.size);
    assert_eq!((image.uid, image.username.as_str()), (None, ""));
    assert_eq!(store.list(), vec![image.clone()]);
    assert_eq!(store.status(BUSYBOX).unwrap(), Some(image.clone()));
    assert_eq!(store.status(&image.id).unwrap(), Some(image.clone()));
    assert_eq!(store.status(&image.repo_digests[0]).unwrap(), Some(image));
}

#[tokio::test]
async fn several_tags_one_image_listed_once() {
    let (_dir, store) = store().await;
    let mut id = None;
    for tag in BUSYBOX_TAGS {
        let image = store
            .pull(
                &format!("registry.k8s.io/e2e-test-images/busybox:{tag}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(*id.get_or_insert(image.id.clone()), image.id);
    }
    let images = store.list();
    assert_eq!(images.len(), 1);
    let expected: Vec<String> = BUSYBOX_TAGS
        .iter()
        .map(|t| format!("registry.k8s.io/e2e-test-images/busybox:{t}"))
        .collect();
    assert_eq!(images[0].repo_tags, expected);
    assert_eq!(
        images[0].repo_digests.len(),
        1,
        "same index digest for every tag"
    );
}

#[tokio::test]
async fn untagged_means_latest_and_digest_means_no_tag() {
    let (_dir, store) = store().await;
    let latest = store
        .pull("registry.k8s.io/e2e-test-images/busybox", None)
        .await
        .unwrap();
    assert_eq!(
        latest.repo_tags,
        ["registry.k8s.io/e2e-test-images/busybox:latest"]
    );

    let (_dir2, other) = common::store().await;
    let by_digest = other.pull(&latest.repo_digests[0], None).await.unwrap();
    assert!(by_digest.repo_tags.is_empty());
    assert_eq!(by_digest.repo_digests, latest.repo_digests);
    assert_eq!(by_digest.id, latest.id);
}

#[tokio::test]
async fn user_in_each_form() {
    let (_dir, store) = store().await;
    for (reference, uid, username) in USER_IMAGES {
        let image = store.pull(reference, None).await.unwrap();
        assert_eq!(
            (image.uid, image.username.as_str()),
            (uid, username),
            "{reference}"
        );
        let status = store.status(reference).unwrap().unwrap();
        assert_eq!((status.uid, status.username.as_str()), (uid, username));
    }
    assert_eq!(store.list().len(), 4);
}

#[tokio::test]
async fn unknown_image_status_is_none_and_removing_it_is_ok() {
    let (_dir, store) = store().await;
    assert_eq!(store.status("registry.k8s.io/nothing:here").unwrap(), None);
    assert_eq!(store.status(&"a".repeat(64)).unwrap(), None);
    store.remove("registry.k8s.io/nothing:here").await.unwrap();
    assert!(store.status("Not A Reference").is_err());
}

#[tokio::test]
async fn remove_by_tag_removes_every_name_and_unused_content() {
    let (dir, store) = store().await;
    let root = dir.path().join("store");
    let busybox = store.pull(BUSYBOX, None).await.unwrap();
    store
        .pull("registry.k8s.io/e2e-test-images/busybox:1.29", None)
        .await
        .unwrap();
    let user = store.pull(USER_IMAGES[0].0, None).await.unwrap();
    let before = store.fs_info().await.unwrap();
    assert!(
        before.used_bytes > 1_000_000 && before.inodes_used > 10,
        "{before:?}"
    );

    store
        .remove("registry.k8s.io/e2e-test-images/busybox:1.29")
        .await
        .unwrap();
    assert_eq!(store.status(BUSYBOX).unwrap(), None);
    assert_eq!(store.status(&busybox.repo_digests[0]).unwrap(), None);
    assert_eq!(store.list(), vec![user.clone()]);
    let after = store.fs_info().await.unwrap();
    assert!(
        after.used_bytes < before.used_bytes,
        "{before:?} -> {after:?}"
    );

    store.remove(&user.repo_digests[0]).await.unwrap();
    assert!(store.list().is_empty());
    assert!(entries(&root.join("layers")).is_empty());
    assert!(entries(&root.join("blobs/sha256")).is_empty());
    assert!(entries(&root.join("images")).is_empty());
}

#[tokio::test]
async fn every_image_keeps_its_own_names() {
    let (_dir, store) = store().await;
    store.pull(USER_IMAGES[0].0, None).await.unwrap();
    store.pull(USER_IMAGES[1].0, None).await.unwrap();
    let images = store.list();
    assert_eq!(images.len(), 2);
    let mut tags: Vec<String> = images.into_iter().flat_map(|i| i.repo_tags).collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            "registry.k8s.io/user-name:latest",
            "registry.k8s.io/user-uid:latest"
        ]
    );
}

#[tokio::test]
async fn concurrent_pulls_of_one_reference_share_the_work() {
    let (dir, store) = store().await;
    let pulls: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.pull(MULTI_LAYER, None).await })
        })
        .collect();
    let mut ids = Vec::new();
    for p in pulls {
        ids.push(p.await.unwrap().unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(store.list().len(), 1);
    assert_eq!(entries(&dir.path().join("store/layers")).len(), 3);
    assert!(entries(&dir.path().join("store/tmp")).is_empty());
}

#[tokio::test]
async fn second_pull_is_served_from_the_store() {
    let (_dir, store) = store().await;
    assert_eq!(store.bytes_pulled(), 0);
    let first = store.pull(MULTI_LAYER, None).await.unwrap();
    let after_first = store.bytes_pulled();
    // Config and layers (the image's size) plus its manifest.
    assert!(after_first > first.size, "{after_first} <= {}", first.size);
    let second = store.pull(MULTI_LAYER, None).await.unwrap();
    assert_eq!(first, second);
    // Only the manifest is fetched again.
    let again = store.bytes_pulled() - after_first;
    assert!(again > 0 && again < 4096, "{again}");
}

#[tokio::test]
async fn reopening_keeps_images_and_cleans_partial_files() {
    let (dir, store) = store().await;
    let root = dir.path().join("store");
    let image = store.pull(USER_IMAGES[2].0, None).await.unwrap();
    drop(store);
    // What a pull killed half-way leaves: temporary files and directories,
    // and a complete layer and blob no image record points to.
    std::fs::write(root.join("tmp/download-1-1"), b"partial").unwrap();
    std::fs::create_dir_all(root.join("tmp/layer-1-2/usr/bin")).unwrap();
    let orphan_layer = root.join("layers").join("b".repeat(64));
    std::fs::create_dir_all(orphan_layer.join("etc")).unwrap();
    let orphan_blob = root.join("blobs/sha256").join("c".repeat(64));
    std::fs::write(&orphan_blob, b"orphan").unwrap();

    let store = ImageStore::open(&root, registries()).await.unwrap();
    assert!(entries(&root.join("tmp")).is_empty());
    assert!(!orphan_layer.exists());
    assert!(!orphan_blob.exists());
    assert_eq!(store.list(), vec![image]);
}

#[tokio::test]
async fn a_second_open_of_the_same_root_is_refused() {
    let (dir, store) = store().await;
    let root = dir.path().join("store");
    let err = ImageStore::open(&root, registries()).await.err().unwrap();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    drop(store);
    ImageStore::open(&root, registries()).await.unwrap();
}

#[tokio::test]
async fn a_dead_mirror_falls_back_to_the_next_endpoint() {
    require_registry();
    let dir = tempfile::tempdir().unwrap();
    let registries = image_store::RegistriesConfig {
        registries: vec![image_store::RegistryConfig {
            prefix: REGISTRY.into(),
            // Nothing listens on port 1; the registry itself is next.
            mirrors: vec!["127.0.0.1:1".into()],
            insecure: true,
            mirrors_only: false,
            ..Default::default()
        }],
    };
    let store = ImageStore::open(dir.path().join("s"), registries.load().unwrap())
        .await
        .unwrap();
    let image = store
        .pull("127.0.0.1:5000/user-name:latest", None)
        .await
        .unwrap();
    assert_eq!(image.repo_tags, ["127.0.0.1:5000/user-name:latest"]);
    assert_eq!(image.username, "www-data");
}
