//! Real idmapped mounts; these need root (CAP_SYS_ADMIN).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A process in a new user namespace mapping 0..65536 to 200000..265536.
struct UserNs(Child);

impl UserNs {
    fn new() -> UserNs {
        let mut child = Command::new("unshare")
            .args(["--user", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        let pid = child.id().to_string();
        for _ in 0..200 {
            // Once `sleep` runs the namespace is there; root maps it.
            let is_sleep = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "sleep");
            if is_sleep && ns(&pid) != ns("self") {
                for file in ["uid_map", "gid_map"] {
                    std::fs::write(format!("/proc/{pid}/{file}"), "0 200000 65536\n").unwrap();
                }
                return UserNs(child);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("no user namespace appeared for {pid}");
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/user", self.0.id())
    }
}

impl Drop for UserNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn files_appear_shifted_by_the_mapping_and_the_source_is_untouched() {
    let userns = UserNs::new();
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("source"), dir.path().join("target"));
    std::fs::create_dir_all(source.join("sub")).unwrap();
    std::fs::write(source.join("file"), "x").unwrap();
    std::os::unix::fs::chown(source.join("sub"), Some(1000), Some(1000)).unwrap();
    std::fs::create_dir(&target).unwrap();
    idmapped::mount(
        &source,
        &target,
        Path::new(&userns.path()),
        idmapped::Recursive::Yes,
    )
    .unwrap();
    let shown = |p: &str| {
        let m = std::fs::metadata(target.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(shown("file"), (200_000, 200_000));
    assert_eq!(shown("sub"), (201_000, 201_000));
    assert_eq!(std::fs::metadata(source.join("file")).unwrap().uid(), 0);
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
}

#[test]
fn a_missing_source_or_namespace_fails_naming_the_step_and_mounts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let userns = UserNs::new();
    let err = idmapped::mount(
        &dir.path().join("absent"),
        &target,
        Path::new(&userns.path()),
        idmapped::Recursive::No,
    )
    .unwrap_err();
    assert_eq!(
        (err.step, err.raw_os_error()),
        ("open_tree", Some(libc::ENOENT))
    );
    let err = idmapped::mount(
        dir.path(),
        &target,
        &dir.path().join("nons"),
        idmapped::Recursive::No,
    )
    .unwrap_err();
    assert_eq!(err.step, "open user namespace");
    // Not a user namespace file: the kernel refuses the mapping.
    let err = idmapped::mount(
        dir.path(),
        &target,
        Path::new("/proc/self/ns/net"),
        idmapped::Recursive::No,
    )
    .unwrap_err();
    assert_eq!(err.step, "mount_setattr");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(target.to_str().unwrap()));
}

#[test]
fn a_read_only_clone_is_read_only_with_its_submounts() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("source"), dir.path().join("target"));
    std::fs::create_dir_all(source.join("sub")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &source.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::create_dir(&target).unwrap();
    idmapped::mount_with(&source, &target, None, true, idmapped::Recursive::Yes).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == target.to_str())
        .unwrap();
    assert!(
        !line.contains("idmapped"),
        "no mapping was asked for: {line}"
    );
    assert!(std::fs::write(target.join("file"), "x").is_err());
    assert!(
        std::fs::write(target.join("sub/file"), "x").is_err(),
        "the submount too"
    );
    assert!(
        std::fs::write(source.join("file"), "x").is_ok(),
        "the source stays writable"
    );
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
    nix::mount::umount2(&source.join("sub"), nix::mount::MntFlags::MNT_DETACH).unwrap();
}

#[test]
fn detach_takes_off_stacked_mounts_and_never_walks_into_them() {
    let dir = tempfile::tempdir().unwrap();
    let (source, staging) = (dir.path().join("source"), dir.path().join("staging"));
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("precious"), "x").unwrap();
    let target = staging.join("0");
    std::fs::create_dir_all(&target).unwrap();
    for _ in 0..2 {
        idmapped::mount_with(&source, &target, None, false, idmapped::Recursive::No).unwrap();
    }
    idmapped::detach_all(&staging);
    idmapped::detach_all(&staging);
    assert!(!staging.exists());
    assert!(source.join("precious").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(target.to_str().unwrap()));
}
