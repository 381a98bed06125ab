//! Real tests against the kernel. They need root (CAP_SYS_ADMIN); without it
//! they fail, unless NETNS_SKIP_ROOT_TESTS=1 says to skip them on purpose.

use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netns::{Error, NetNs, PinDir, Removal};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("NETNS_SKIP_ROOT_TESTS").is_some(),
        "these tests need root; set NETNS_SKIP_ROOT_TESTS=1 to skip them"
    );
    false
}

/// A temporary directory whose mounts are all detached on drop, so a failed
/// test leaves nothing mounted.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("netns-test")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn path(&self) -> PathBuf {
        fs::canonicalize(self.dir.path()).expect("canonical tempdir")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let base = self.path();
        let mut points: Vec<PathBuf> = mounts()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.starts_with(&base))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            while umount2(&p, MntFlags::MNT_DETACH).is_ok() {}
        }
    }
}

/// A child process killed and reaped on drop.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (mount point, propagates) of our mount namespace, in mount order. Test
/// paths contain no characters mountinfo escapes.
fn mounts() -> Vec<(PathBuf, bool)> {
    mounts_of("/proc/self/mountinfo")
}

fn mounts_of(file: impl AsRef<Path>) -> Vec<(PathBuf, bool)> {
    let text = fs::read_to_string(file).expect("mountinfo");
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let propagates = fields[6..sep]
                .iter()
                .any(|f| f.starts_with("shared:") || f.starts_with("master:"));
            Some((PathBuf::from(fields.get(4)?), propagates))
        })
        .collect()
}

fn mount_count(path: &Path) -> usize {
    mounts().iter().filter(|(p, _)| p == path).count()
}

fn host_netns_inode() -> u64 {
    fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

/// Sends a datagram to itself over 127.0.0.1: works only with loopback up.
fn loopback_round_trip() -> std::io::Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    sock.send_to(b"ping", sock.local_addr()?)?;
    let mut buf = [0u8; 4];
    sock.recv(&mut buf)?;
    assert_eq!(&buf, b"ping");
    Ok(())
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `sh -c script` in a new mount namespace (propagation unchanged) and
/// waits until the script has touched `ready`.
fn hold_in_new_mount_ns(script: &str, ready: &Path) -> Holder {
    hold_in_new_mount_ns_with("unchanged", script, ready)
}

/// [`hold_in_new_mount_ns`] with a given `unshare --propagation` mode.
fn hold_in_new_mount_ns_with(propagation: &str, script: &str, ready: &Path) -> Holder {
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", propagation, "sh", "-c", script])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn unshare");
    let holder = Holder(child);
    wait_for("child mount namespace", || ready.exists());
    holder
}

#[test]
fn create_gives_a_new_namespace_with_loopback_up() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let dir = PinDir::prepare(scratch.path().join("pins")).unwrap();
    let ns = NetNs::create(&dir, "pod-a").unwrap();
    let host = host_netns_inode();

    assert_ne!(ns.inode(), host);
    assert!(!ns.is_restored());
    // The pin itself shows the namespace inode: it really is a bind mount.
    assert_eq!(fs::metadata(ns.path()).unwrap().ino(), ns.inode());
    assert_eq!(mount_count(ns.path()), 1);

    let inside = ns
        .run_in(|| fs::metadata("/proc/thread-self/ns/net").unwrap().ino())
        .unwrap();
    assert_eq!(inside, ns.inode());
    assert_eq!(host_netns_inode(), host, "caller thread never moved");

    ns.run_in(loopback_round_trip).unwrap().unwrap();

    // Same check from outside our code, with iproute2.
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["ip", "-o", "link", "show", "lo"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("<LOOPBACK,UP"), "{text}");
}

#[test]
fn loopback_check_fails_in_a_bare_namespace() {
    // The control for the loopback assertion above: without `create`'s
    // interface_up, the same round trip fails.
    if !root() {
        return;
    }
    let result = std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).unwrap();
        loopback_round_trip()
    })
    .join()
    .unwrap();
    assert!(result.is_err());
}

#[test]
fn pin_dir_is_a_private_self_bind_and_prepare_is_idempotent() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let path = scratch.path().join("pins");
    let dir = PinDir::prepare(&path).unwrap();
    PinDir::prepare(&path).unwrap();
    let at_dir: Vec<_> = mounts().into_iter().filter(|(p, _)| *p == path).collect();
    assert_eq!(at_dir, [(dir.path().to_path_buf(), false)]);

    // A shared mount point (as /run/netns often is) is turned private.
    let shared = scratch.path().join("shared");
    fs::create_dir(&shared).unwrap();
    mount(
        Some(&shared),
        &shared,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    mount(
        None::<&str>,
        &shared,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    // Filtered, not the table's last line: the other tests of this binary
    // mount and unmount beside this one (CI saw another test's pin there).
    let made: Vec<_> = mounts().into_iter().filter(|(p, _)| *p == shared).collect();
    assert_eq!(made, [(shared.clone(), true)]);
    PinDir::prepare(&shared).unwrap();
    let at_shared: Vec<_> = mounts().into_iter().filter(|(p, _)| *p == shared).collect();
    assert_eq!(at_shared, [(shared.clone(), false)]);
}

#[test]
fn open_after_drop_restores_the_same_namespace() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let dir = PinDir::prepare(scratch.path().join("pins")).unwrap();
    let ns = NetNs::create(&dir, "pod-a").unwrap();
    let (inode, pin) = (ns.inode(), ns.path().to_path_buf());
    drop(ns);

    let again = NetNs::open(&pin).unwrap();
    assert!(again.is_restored());
    assert_eq!(again.inode(), inode);
    assert_eq!(again.run_in(host_netns_inode).unwrap(), inode);
    drop(again);

    let link = scratch.path().join("link");
    symlink(&pin, &link).unwrap();
    let mut via_link = NetNs::open(&link).unwrap();
    assert_eq!(via_link.inode(), inode);
    assert_eq!(via_link.path(), pin);
    assert_eq!(via_link.link_path(), Some(link.as_path()));
    assert_eq!(via_link.remove().unwrap(), Removal::Removed);
    assert!(!pin.exists());
    assert!(fs::symlink_metadata(&link).is_err(), "symlink removed too");
}

#[test]
fn open_follows_proc_magic_links_without_adopting_them() {
    if !root() {
        return;
    }
    let host = NetNs::open("/proc/self/ns/net").unwrap();
    assert_eq!(host.inode(), host_netns_inode());
    assert_eq!(host.link_path(), None, "never to be unlinked by remove()");
}

#[test]
fn open_refuses_what_is_not_a_network_namespace() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let plain = scratch.path().join("plain");
    fs::write(&plain, b"").unwrap();
    let err = NetNs::open(&plain).unwrap_err();
    assert!(
        matches!(&err, Error::NotNetNs { path, .. } if *path == plain),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with(&format!("{}: not a network namespace", plain.display())));

    let err = NetNs::open("/proc/self/ns/mnt").unwrap_err();
    assert!(err.to_string().contains("a mount namespace"), "{err}");

    let err = NetNs::open(scratch.path().join("missing")).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    let dangling = scratch.path().join("dangling");
    symlink(scratch.path().join("missing"), &dangling).unwrap();
    let err = NetNs::open(&dangling).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
}

#[test]
fn duplicate_create_is_refused_and_leaves_the_first_intact() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let dir = PinDir::prepare(scratch.path().join("pins")).unwrap();
    let first = NetNs::create(&dir, "pod-a").unwrap();
    let err = NetNs::create(&dir, "pod-a").unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(fs::metadata(first.path()).unwrap().ino(), first.inode());
}

#[test]
fn remove_twice_is_fine() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let dir = PinDir::prepare(scratch.path().join("pins")).unwrap();
    let mut ns = NetNs::create(&dir, "pod-a").unwrap();
    let pin = ns.path().to_path_buf();
    assert_eq!(ns.remove().unwrap(), Removal::Removed);
    assert!(!pin.exists());
    assert_eq!(mount_count(&pin), 0);
    assert_eq!(ns.remove().unwrap(), Removal::AlreadyRemoved);
    assert_eq!(dir.remove("pod-a").unwrap(), Removal::AlreadyRemoved);
    assert!(matches!(ns.run_in(|| ()), Err(Error::Removed { .. })));
}

#[test]
fn remove_succeeds_while_another_mount_namespace_holds_a_copy() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let dir = PinDir::prepare(scratch.path().join("pins")).unwrap();
    let mut ns = NetNs::create(&dir, "pod-a").unwrap();
    let pin = ns.path().to_path_buf();
    let ready = scratch.path().join("ready");
    let holder = hold_in_new_mount_ns(
        &format!("touch {} && exec sleep 600", ready.display()),
        &ready,
    );
    let theirs = format!("/proc/{}/mountinfo", holder.0.id());
    assert!(
        mounts_of(&theirs).iter().any(|(p, _)| *p == pin),
        "child holds a copy of the pin"
    );

    assert_eq!(ns.remove().unwrap(), Removal::Removed);
    assert!(!pin.exists());
    // The kernel drops the copy in the other namespace with the file.
    assert!(!mounts_of(&theirs).iter().any(|(p, _)| *p == pin));
}

#[test]
fn private_pin_dir_keeps_mounts_made_elsewhere_out() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let dir = PinDir::prepare(scratch.path().join("pins")).unwrap();
    let mut ns = NetNs::create(&dir, "pod-a").unwrap();
    let pin = ns.path().to_path_buf();
    let ready = scratch.path().join("ready");
    let _holder = hold_in_new_mount_ns(
        &format!(
            "mount --bind /dev/null {} && touch {} && exec sleep 600",
            pin.display(),
            ready.display()
        ),
        &ready,
    );
    assert_eq!(mount_count(&pin), 1, "the child's mount did not come back");
    assert_eq!(ns.remove().unwrap(), Removal::Removed);
    assert!(!pin.exists());
}

#[test]
fn shared_pin_dir_reproduces_ebusy_and_remove_still_succeeds() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let path = scratch.path().join("pins");
    fs::create_dir(&path).unwrap();
    mount(
        Some(&path),
        &path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    mount(
        None::<&str>,
        &path,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    // As on a host whose /run/netns is shared: the directory is not ours to
    // make private.
    let dir = PinDir::unmanaged(&path).unwrap();

    let ready = scratch.path().join("ready");
    let script = |pin: &Path| {
        format!(
            "mount --bind /dev/null {} && touch {} && exec sleep 600",
            pin.display(),
            ready.display()
        )
    };

    // First show the failure containerd hits: one unmount, then unlink.
    let naive = NetNs::create(&dir, "naive").unwrap();
    let naive_pin = naive.path().to_path_buf();
    drop(naive);
    let holder = hold_in_new_mount_ns(&script(&naive_pin), &ready);
    assert_eq!(mount_count(&naive_pin), 2, "peer's mount propagated back");
    umount2(&naive_pin, MntFlags::MNT_DETACH).unwrap();
    assert_eq!(nix::unistd::unlink(&naive_pin), Err(Errno::EBUSY));
    drop(holder);
    fs::remove_file(&ready).unwrap();
    assert_eq!(dir.remove("naive").unwrap(), Removal::Removed);

    // Then the same situation through NetNs::remove.
    let mut ns = NetNs::create(&dir, "pod-a").unwrap();
    let pin = ns.path().to_path_buf();
    let _holder = hold_in_new_mount_ns(&script(&pin), &ready);
    assert_eq!(mount_count(&pin), 2);
    assert_eq!(ns.remove().unwrap(), Removal::Removed);
    assert!(!pin.exists());
    assert_eq!(mount_count(&pin), 0);
    assert!(dir.parked().unwrap().is_empty());
}

#[test]
fn cleanup_stale_removes_all_but_the_kept() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let dir = PinDir::prepare(scratch.path().join("pins")).unwrap();
    for name in ["a", "b", "c"] {
        NetNs::create(&dir, name).unwrap();
    }
    // A file left by a crash between creating the pin and mounting it.
    fs::write(dir.path().join("d"), b"").unwrap();
    assert_eq!(dir.list().unwrap(), ["a", "b", "c", "d"]);

    let report = dir.cleanup_stale(|name| name == "b").unwrap();
    assert_eq!(report.removed, ["a", "c", "d"]);
    assert!(report.parked.is_empty() && report.failed.is_empty());
    assert_eq!(dir.list().unwrap(), ["b"]);
    assert_eq!(mount_count(&dir.path().join("a")), 0);
    let kept = dir.open("b").unwrap();
    assert_ne!(kept.inode(), host_netns_inode());
}

#[test]
fn slave_copy_on_a_shared_dir_cannot_block_removal() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let path = scratch.path().join("pins");
    fs::create_dir(&path).unwrap();
    mount(
        Some(&path),
        &path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    mount(
        None::<&str>,
        &path,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    let dir = PinDir::unmanaged(&path).unwrap();
    let mut ns = NetNs::create(&dir, "pod-a").unwrap();
    let pin = ns.path().to_path_buf();
    let ready = scratch.path().join("ready");
    let holder = hold_in_new_mount_ns_with(
        "slave",
        &format!(
            "mount --bind /dev/null {} && touch {} && exec sleep 600",
            pin.display(),
            ready.display()
        ),
        &ready,
    );
    let theirs = format!("/proc/{}/mountinfo", holder.0.id());
    let in_child = || mounts_of(&theirs).iter().filter(|(p, _)| *p == pin).count();
    assert_eq!(in_child(), 2, "the slave stacked onto its copy");
    assert_eq!(mount_count(&pin), 1, "nothing flows back from a slave");

    assert_eq!(ns.remove().unwrap(), Removal::Removed);
    assert!(!pin.exists());
    assert_eq!(in_child(), 0, "the child's layers went with the file");
}

#[test]
fn deep_stack_from_a_peer_is_parked_and_retries_finish() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let path = scratch.path().join("pins");
    fs::create_dir(&path).unwrap();
    mount(
        Some(&path),
        &path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    mount(
        None::<&str>,
        &path,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    let dir = PinDir::unmanaged(&path).unwrap();
    let mut ns = NetNs::create(&dir, "pod-a").unwrap();
    let pin = ns.path().to_path_buf();

    // A peer mount namespace (a thread of ours that unshared its mounts)
    // stacks many mounts onto its copy of the pin; each propagates back onto
    // ours. The peer stays alive during the removal.
    const PEER_MOUNTS: usize = 600;
    let (stacked_tx, stacked_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn({
        let pin = pin.clone();
        move || {
            unshare(CloneFlags::CLONE_NEWNS).unwrap();
            for _ in 0..PEER_MOUNTS {
                let null = Path::new("/dev/null");
                mount(
                    Some(null),
                    &pin,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .unwrap();
            }
            stacked_tx.send(()).unwrap();
            let _ = done_rx.recv();
        }
    });
    stacked_rx.recv().unwrap();
    assert_eq!(mount_count(&pin), PEER_MOUNTS + 1);

    // Removal peels a bounded batch, then parks instead of failing.
    assert_eq!(ns.remove().unwrap(), Removal::Parked);
    assert!(ns.is_removed());
    assert_eq!(dir.parked().unwrap(), ["pod-a"]);
    assert!(dir.list().unwrap().is_empty(), "parked pins are not listed");
    drop(done_tx);
    peer.join().unwrap();

    // Each retry peels another batch; all of them succeed, and they finish.
    let mut tries = 0;
    loop {
        let report = dir.retry_parked().unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
        if report.removed == ["pod-a"] {
            break;
        }
        assert_eq!(report.parked, ["pod-a"]);
        tries += 1;
        assert!(
            tries <= PEER_MOUNTS / 64,
            "retries make no progress: {report:?}"
        );
    }
    assert!(!pin.exists());
    assert_eq!(mount_count(&pin), 0);
    assert!(dir.parked().unwrap().is_empty());
}

#[test]
fn ipc_and_uts_pins_hold_fresh_namespaces_with_the_host_name_and_go_away() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let dir = PinDir::prepare(scratch.path().join("pins")).unwrap();
    let uts = netns::PinnedKind::Uts {
        hostname: "pinned-host".into(),
    };
    let uts_pin = dir.create_pinned(&uts, "pod-u").unwrap();
    let ipc_pin = dir.create_pinned(&netns::PinnedKind::Ipc, "pod-u").unwrap();
    let host_name = nix::unistd::gethostname().unwrap();
    assert_ne!(
        host_name.to_str(),
        Some("pinned-host"),
        "the host kept its name"
    );
    for (pin, own) in [
        (&uts_pin, "/proc/self/ns/uts"),
        (&ipc_pin, "/proc/self/ns/ipc"),
    ] {
        assert_ne!(
            fs::metadata(pin).unwrap().ino(),
            fs::metadata(own).unwrap().ino(),
            "{} is a namespace of its own",
            pin.display()
        );
    }
    let out = Command::new("nsenter")
        .arg(format!("--uts={}", uts_pin.display()))
        .arg("hostname")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pinned-host");
    // The network pin of the same name is a different file.
    assert!(dir.list().unwrap().iter().all(|n| n.starts_with("pod-u.")));
    assert_eq!(dir.remove("pod-u.uts").unwrap(), Removal::Removed);
    assert_eq!(dir.remove("pod-u.ipc").unwrap(), Removal::Removed);
    assert!(dir.list().unwrap().is_empty());
}

#[test]
fn a_user_pod_owns_its_namespaces_with_the_mapping_and_leaves_no_process() {
    if !root() {
        return;
    }
    let scratch = Scratch::new();
    let dir = PinDir::prepare(scratch.path().join("pins")).unwrap();
    let ids = vec![netns::IdRange {
        container_id: 0,
        host_id: 231_072,
        length: 65_536,
    }];
    let pod = netns::UserPod {
        uids: ids.clone(),
        gids: ids,
        network: true,
        ipc: true,
        uts: Some("userns-host".into()),
    };
    let children_before = fs::read_to_string("/proc/thread-self/children").unwrap_or_default();
    let pins = dir.create_user_pod("pod-x", &pod).unwrap();
    assert_eq!(
        fs::read_to_string("/proc/thread-self/children").unwrap_or_default(),
        children_before,
        "the holder was reaped"
    );
    // As a container joins them: user namespace first, then the others,
    // which its root may administer because the user namespace owns them.
    let script = "cat /proc/self/uid_map /proc/self/gid_map; hostname; \
                  cat /sys/class/net/lo/flags; ip addr add 10.9.9.9/32 dev lo && echo owned";
    let out = Command::new("nsenter")
        .arg(format!("--user={}", pins.user.display()))
        .arg(format!(
            "--net={}",
            pins.network.as_ref().unwrap().display()
        ))
        .arg(format!("--uts={}", pins.uts.as_ref().unwrap().display()))
        .arg(format!("--ipc={}", pins.ipc.as_ref().unwrap().display()))
        .args(["sh", "-c", script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(fields[0], ["0", "231072", "65536"], "{text}");
    assert_eq!(fields[1], ["0", "231072", "65536"], "{text}");
    assert_eq!(fields[2], ["userns-host"], "{text}");
    // IFF_UP (0x1) set on lo.
    let flags = u32::from_str_radix(fields[3][0].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "{text}");
    assert!(
        text.contains("owned"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["pod-x.user", "pod-x", "pod-x.ipc", "pod-x.uts"] {
        assert_eq!(dir.remove(name).unwrap(), Removal::Removed, "{name}");
    }
}
