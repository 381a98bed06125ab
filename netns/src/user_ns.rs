//! A pod's own user namespace, pinned with the namespaces it owns.
//!
//! Kubernetes' `hostUsers: false` gives a pod a user namespace with a range
//! of host ids (kubelet picks 65536 of them). The pod's network, IPC and
//! UTS namespaces must belong to it, or its containers' root could not
//! mount sysfs and mqueue for them; so all are made together by a holder
//! process (`clone` with `CLONE_NEWUSER` and the others: the new user
//! namespace owns the rest), pinned beside the pod's network pin, and the
//! holder then exits. Containers join every pin by path, as CRI-O's
//! `pinns -U` arranges.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use tracing::info;

use crate::error::{Error, Op, Result};
use crate::pin_dir::PinDir;
use crate::syscall::Syscall;

/// One range of a user namespace's id mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// The first id inside the namespace.
    pub container_id: u32,
    /// The host id it is.
    pub host_id: u32,
    /// How many ids the range holds.
    pub length: u32,
}

/// The text of a `uid_map` or `gid_map` for `ranges`.
///
/// # Examples
///
/// ```
/// use netns::{id_map_text, IdRange};
///
/// let ranges = [IdRange { container_id: 0, host_id: 65536, length: 65536 }];
/// assert_eq!(id_map_text(&ranges), "0 65536 65536\n");
/// ```
pub fn id_map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.container_id, r.host_id, r.length))
        .collect()
}

/// What a pod with a user namespace asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPod {
    /// The user id mapping.
    pub uids: Vec<IdRange>,
    /// The group id mapping.
    pub gids: Vec<IdRange>,
    /// Its own network namespace (else the host's: no pin).
    pub network: bool,
    /// Its own IPC namespace.
    pub ipc: bool,
    /// Its own UTS namespace with this host name (empty: the creator's).
    pub uts: Option<String>,
}

/// The pins of a [`UserPod`], each named like [`crate::PinnedKind`]'s:
/// `<name>.user`, `<name>` (network), `<name>.ipc`, `<name>.uts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPodPins {
    /// The user namespace.
    pub user: PathBuf,
    /// The network namespace, if the pod has its own.
    pub network: Option<PathBuf>,
    /// The IPC namespace, if the pod has its own.
    pub ipc: Option<PathBuf>,
    /// The UTS namespace, if the pod has its own.
    pub uts: Option<PathBuf>,
}

/// The pin name of pod `name`'s user namespace.
///
/// # Examples
///
/// ```
/// assert_eq!(netns::user_pin_name("pod-1"), "pod-1.user");
/// ```
pub fn user_pin_name(name: &str) -> String {
    format!("{name}.user")
}

impl PinDir {
    /// Makes pod `name`'s user namespace with `pod`'s mappings and, owned
    /// by it, the network, IPC and UTS namespaces it asks for; pins them
    /// all. On failure no pin is left. Remove each with
    /// [`PinDir::remove`] by its pin name.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> netns::Result<()> {
    /// use std::sync::Arc;
    /// use netns::{syscall::RecordingSyscall, IdRange, PinDir, UserPod};
    ///
    /// let sys = Arc::new(RecordingSyscall::new());
    /// let dir = PinDir::unmanaged_with(sys, "/pins")?;
    /// let ids = vec![IdRange { container_id: 0, host_id: 65536, length: 65536 }];
    /// let pod = UserPod { uids: ids.clone(), gids: ids, network: true, ..UserPod::default() };
    /// let pins = dir.create_user_pod("pod-1", &pod)?;
    /// assert_eq!(pins.user.to_str(), Some("/pins/pod-1.user"));
    /// assert_eq!(pins.network.as_deref().and_then(|p| p.to_str()), Some("/pins/pod-1"));
    /// # Ok(()) }
    /// ```
    pub fn create_user_pod(&self, name: &str, pod: &UserPod) -> Result<UserPodPins> {
        crate::name::validate(name)?;
        let sys = &**self.syscall();
        let user_pin = self.pin_path(&user_pin_name(name))?;
        let mut flags = CloneFlags::CLONE_NEWUSER;
        for (wanted, flag) in [
            (pod.network, CloneFlags::CLONE_NEWNET),
            (pod.ipc, CloneFlags::CLONE_NEWIPC),
            (pod.uts.is_some(), CloneFlags::CLONE_NEWUTS),
        ] {
            if wanted {
                flags |= flag;
            }
        }
        let hostname = pod.uts.as_deref().filter(|h| !h.is_empty());
        let holder = sys
            .spawn_ns_holder(flags, hostname)
            .map_err(|e| Error::sys(&user_pin, Op::Unshare, e))?;
        let pid = holder.pid;
        let mut made = Vec::new();
        let pinned = self.pin_holder(sys, name, pod, pid, &mut made);
        sys.end_ns_holder(holder);
        if pinned.is_err() {
            for pin in made.iter().rev() {
                if let Err(cleanup) = crate::remove::remove_pin(sys, pin) {
                    tracing::warn!(%cleanup, "could not roll back a user namespace pin");
                }
            }
        }
        let pins = pinned?;
        info!(pin = %pins.user.display(), "created user namespace");
        Ok(pins)
    }

    /// Writes the holder's id maps and pins its namespaces, recording each
    /// pin made in `made`.
    fn pin_holder(
        &self,
        sys: &dyn Syscall,
        name: &str,
        pod: &UserPod,
        pid: i32,
        made: &mut Vec<PathBuf>,
    ) -> Result<UserPodPins> {
        let user = self.pin_path(&user_pin_name(name))?;
        for (file, ranges) in [("uid_map", &pod.uids), ("gid_map", &pod.gids)] {
            sys.write_proc(pid, file, &id_map_text(ranges))
                .map_err(|e| Error::sys(&user, Op::WriteIdMap, e))?;
        }
        let mut pin = |pin_name: String, kind: &str, flag: CloneFlags| -> Result<PathBuf> {
            let pin = self.pin_path(&pin_name)?;
            let source = PathBuf::from(format!("/proc/{pid}/ns/{kind}"));
            crate::create::make_pin(
                sys,
                &pin,
                "userns-pin",
                || bind(sys, &source, &pin),
                || check_flag(sys, flag, &pin),
            )?;
            made.push(pin.clone());
            Ok(pin)
        };
        let user = pin(user_pin_name(name), "user", CloneFlags::CLONE_NEWUSER)?;
        let network = pod
            .network
            .then(|| pin(name.to_string(), "net", CloneFlags::CLONE_NEWNET))
            .transpose()?;
        let ipc = pod
            .ipc
            .then(|| pin(format!("{name}.ipc"), "ipc", CloneFlags::CLONE_NEWIPC))
            .transpose()?;
        let uts = pod
            .uts
            .is_some()
            .then(|| pin(format!("{name}.uts"), "uts", CloneFlags::CLONE_NEWUTS))
            .transpose()?;
        Ok(UserPodPins {
            user,
            network,
            ipc,
            uts,
        })
    }
}

fn bind(sys: &dyn Syscall, source: &Path, pin: &Path) -> Result<()> {
    sys.mount(Some(source), pin, MsFlags::MS_BIND)
        .map_err(|e| Error::sys(pin, Op::BindMount, e))
}

/// Checks that `pin` holds a namespace of type `flag`.
fn check_flag(sys: &dyn Syscall, flag: CloneFlags, pin: &Path) -> Result<()> {
    let (_, fs_type, ns_type) = crate::netns::inspect_pin(sys, pin)?;
    match ns_type {
        Some(t) if t == flag.bits() => Ok(()),
        Some(t) => Err(Error::WrongKind {
            path: pin.to_path_buf(),
            expected: "a pod",
            found: format!("{} namespace", crate::netns::ns_kind(t)),
        }),
        None => Err(Error::WrongKind {
            path: pin.to_path_buf(),
            expected: "a pod",
            found: format!("not a namespace file: filesystem magic {fs_type:#x}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, CallKind, RecordingSyscall};
    use nix::errno::Errno;
    use std::sync::Arc;

    fn dir() -> (Arc<RecordingSyscall>, PinDir) {
        let sys = Arc::new(RecordingSyscall::new());
        let dir = PinDir::unmanaged_with(sys.clone(), "/pins").unwrap();
        sys.clear_calls();
        (sys, dir)
    }

    fn pod() -> UserPod {
        let ids = vec![IdRange {
            container_id: 0,
            host_id: 65536,
            length: 65536,
        }];
        UserPod {
            uids: ids.clone(),
            gids: ids,
            network: true,
            ipc: true,
            uts: Some("web-0".into()),
        }
    }

    #[test]
    fn one_holder_makes_every_namespace_and_each_is_pinned_after_the_maps() {
        let (sys, dir) = dir();
        let pins = dir.create_user_pod("p", &pod()).unwrap();
        assert_eq!(pins.ipc.as_deref(), Some(Path::new("/pins/p.ipc")));
        assert_eq!(pins.uts.as_deref(), Some(Path::new("/pins/p.uts")));
        let calls = sys.calls();
        let all = CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS;
        assert_eq!(
            calls[0].call,
            Call::SpawnNsHolder {
                flags: all,
                hostname: Some("web-0".into())
            }
        );
        assert_eq!(
            calls[1].call,
            Call::WriteProc {
                pid: RecordingSyscall::HOLDER_PID,
                file: "uid_map".into(),
                text: "0 65536 65536\n".into()
            }
        );
        assert_eq!(sys.kinds().last(), Some(&CallKind::EndNsHolder));
        for pin in ["/pins/p.user", "/pins/p", "/pins/p.ipc", "/pins/p.uts"] {
            assert_eq!(sys.mount_count(pin), 1, "{pin}");
        }
    }

    #[test]
    fn a_failed_pin_removes_the_others_and_ends_the_holder() {
        let (sys, dir) = dir();
        // The user and network pins are made, the IPC one exists already.
        sys.add_file("/pins/p.ipc");
        let err = dir.create_user_pod("p", &pod()).unwrap_err();
        assert!(err.to_string().contains("/pins/p.ipc"), "{err}");
        assert_eq!(sys.mount_count("/pins/p.user"), 0);
        assert_eq!(sys.mount_count("/pins/p"), 0);
        assert!(sys.kinds().contains(&CallKind::EndNsHolder));
    }

    #[test]
    fn a_map_the_kernel_refuses_leaves_nothing() {
        let (sys, dir) = dir();
        sys.fail_next(CallKind::WriteProc, Errno::EINVAL);
        assert!(dir.create_user_pod("p", &pod()).is_err());
        assert!(!sys.kinds().contains(&CallKind::Mount));
        assert!(sys.kinds().contains(&CallKind::EndNsHolder));
    }

    #[test]
    fn host_network_pods_pin_no_network_namespace() {
        let (sys, dir) = dir();
        let pins = dir
            .create_user_pod(
                "p",
                &UserPod {
                    network: false,
                    uts: None,
                    ..pod()
                },
            )
            .unwrap();
        assert_eq!((pins.network, pins.uts), (None, None));
        assert_eq!(sys.mount_count("/pins/p"), 0);
    }
}
