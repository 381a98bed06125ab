//! Container root filesystems from pulled fixture images: layers stacked
//! with whiteouts applied, writable or read-only, and images in use kept.

mod common;

use common::*;
use image_store::Error;
use std::fs;

#[tokio::test]
async fn multi_layer_rootfs_applies_whiteouts_and_opaque_dirs() {
    let (_dir, store) = store().await;
    let image = store.pull(MULTI_LAYER, None).await.unwrap();
    let rootfs = store
        .create_rootfs(&image.id, "ctr-multi", false)
        .await
        .unwrap();
    let root = &rootfs.path;
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    assert!(!root.join("gone").exists(), "whited out by layer 3");
    assert!(!root.join("data/a").exists(), "whited out by layer 3");
    assert_eq!(fs::read(root.join("data/b")).unwrap(), b"b from layer 2\n");
    assert_eq!(
        entries(&root.join("opaque")),
        ["z"],
        "opaque dir hides x and y"
    );
    let tmp = fs::metadata(root.join("tmp")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);

    fs::write(root.join("written"), b"w").unwrap();
    let other = store
        .create_rootfs(MULTI_LAYER, "ctr-other", false)
        .await
        .unwrap();
    assert!(
        !other.path.join("written").exists(),
        "upper dirs are per container"
    );

    let err = store.remove(&image.id).await.unwrap_err();
    assert!(matches!(err, Error::InUse { .. }), "{err}");
    assert!(err.to_string().contains("ctr-multi"), "{err}");
    assert_eq!(
        store.root_filesystems().await.unwrap(),
        ["ctr-multi", "ctr-other"]
    );
    store.remove_rootfs("ctr-multi").await.unwrap();
    store.remove_rootfs("ctr-multi").await.unwrap();
    assert!(!rootfs.path.exists());
    assert_eq!(store.root_filesystems().await.unwrap(), ["ctr-other"]);
    assert!(
        store.remove(MULTI_LAYER).await.is_err(),
        "ctr-other still uses it"
    );
    store.remove_rootfs("ctr-other").await.unwrap();
    store.remove(MULTI_LAYER).await.unwrap();
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn readonly_rootfs() {
    let (_dir, store) = store().await;
    let image = store.pull(BUSYBOX, None).await.unwrap();
    let rootfs = store
        .create_rootfs(&image.id, "ctr-ro", true)
        .await
        .unwrap();
    assert!(rootfs.readonly);
    assert!(rootfs.path.join("bin/busybox").is_file());
    let err = fs::write(rootfs.path.join("x"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_eq!(store.rootfs("ctr-ro").await.unwrap(), Some(rootfs));
    store.remove_rootfs("ctr-ro").await.unwrap();
    assert_eq!(store.rootfs("ctr-ro").await.unwrap(), None);
}

#[tokio::test]
async fn rootfs_of_unknown_image_or_bad_container_id_is_refused() {
    let (_dir, store) = store().await;
    let err = store
        .create_rootfs(&"d".repeat(64), "ctr", false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let image = store.pull(USER_IMAGES[3].0, None).await.unwrap();
    let err = store
        .create_rootfs(&image.id, "../escape", false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadContainerId(_)), "{err}");
}

#[tokio::test]
async fn in_use_survives_a_restart() {
    let (dir, store) = store().await;
    let image = store.pull(USER_IMAGES[1].0, None).await.unwrap();
    store
        .create_rootfs(&image.id, "ctr-kept", false)
        .await
        .unwrap();
    drop(store);
    let store = image_store::ImageStore::open(dir.path().join("store"), registries())
        .await
        .unwrap();
    assert!(store.remove(&image.id).await.is_err());
    store.remove_rootfs("ctr-kept").await.unwrap();
    store.remove(&image.id).await.unwrap();
}

/// The writable layer is mounted `volatile`: removing a container must not
/// sync the whole file system under the store (overlayfs syncs its upper
/// layer's superblock at every unmount otherwise).
#[tokio::test]
async fn writable_root_filesystems_are_volatile() {
    let (_dir, store) = store().await;
    let image = store.pull(MULTI_LAYER, None).await.unwrap();
    let rootfs = store
        .create_rootfs(&image.id, "ctr-volatile", false)
        .await
        .unwrap();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let target = rootfs.path.display().to_string();
    let line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some(target.as_str()))
        .expect("the root filesystem is mounted");
    assert!(line.contains("volatile"), "{line}");
    store.remove_rootfs("ctr-volatile").await.unwrap();
}

#[tokio::test]
async fn a_removed_rootfs_goes_to_the_deleter_its_owner_set() {
    let (dir, store) = store().await;
    let image = store.pull(BUSYBOX, None).await.unwrap();
    let handed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&handed);
    store.set_deleter(std::sync::Arc::new(move |doomed| {
        seen.lock().unwrap().push(doomed)
    }));
    let rootfs = store
        .create_rootfs(&image.id, "ctr-deferred", false)
        .await
        .unwrap();
    fs::write(rootfs.path.join("written"), b"w").unwrap();
    store.remove_rootfs("ctr-deferred").await.unwrap();

    // Gone for every reader at once; its files wait for the deleter.
    assert!(!rootfs.path.exists());
    assert_eq!(store.rootfs("ctr-deferred").await.unwrap(), None);
    let handed = handed.lock().unwrap().clone();
    assert_eq!(handed.len(), 1, "{handed:?}");
    assert!(
        handed[0].starts_with(dir.path()),
        "{handed:?} outside the store"
    );
    assert!(handed[0].exists(), "deleted before the deleter ran");
    fs::remove_dir_all(&handed[0]).unwrap();
    // Nothing handed over for a root filesystem that is not there.
    store.remove_rootfs("ctr-deferred").await.unwrap();
    store.remove(BUSYBOX).await.unwrap();
}
