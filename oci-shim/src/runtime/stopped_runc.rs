//! Deleting a stopped runc container without starting runc.
//!
//! Once a container's init has exited, `runc delete` reads the container's
//! `state.json`, kills what is left of a container that shares a PID
//! namespace, removes its cgroups and its Intel RDT group, removes its
//! state directory, and runs its poststop hooks. For the containers a pod
//! teardown deletes, only the cgroups and the state directory are there,
//! yet each `runc delete` costs about 8 ms of CPU, most of it the Go
//! runtime starting. At 110 pods torn down 4 at a time, runc was a fifth of
//! both CPUs' time, taken from the stops running beside it (issue #20).
//!
//! [`delete`] does those two removals itself, and declines whenever runc
//! would do more or the state is not what it expects: the init still
//! alive, a systemd cgroup driver, poststop hooks, an Intel RDT group,
//! network devices to give back, a PID namespace it does not own, a
//! cgroup path it would not remove, a removal that fails. The caller then
//! runs `runc delete`, which finds the same state (nothing is removed
//! before every check has passed, and a cgroup that would not go is left
//! for runc's own retries).
//!
//! With a [`Retirement`], the cgroups' removal moves off the caller's path:
//! the state directory is moved into the retirement directory instead of
//! deleted, and the removal handed to its background (see
//! [`super::retired_runc`]).

use super::retired_runc::Retirement;
use super::runc_state::{is_empty, State};
use std::io;
use std::path::{Component, Path};

/// Where every cgroup hierarchy is mounted.
pub(super) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What [`delete`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The container's cgroups and state directory are gone.
    Deleted,
    /// The container's state directory moved to this place in the
    /// retirement directory; its cgroups are still to be removed.
    Retired(std::path::PathBuf),
    /// Nothing was removed: runc must delete the container, for this reason.
    Declined(&'static str),
}

/// Deletes stopped container `id` of the runc whose `--root` is `root`, as
/// `runc delete` would, when that is only removing its cgroups (under
/// `cgroup_root`) and its state directory; with a `retirement`, by moving
/// the state directory there, the cgroups left for later. Blocking: cgroup
/// removals wait for the kernel.
pub(super) fn delete(
    root: &Path,
    id: &str,
    cgroup_root: &Path,
    retirement: Option<&Retirement>,
) -> Outcome {
    let dir = root.join(id);
    let Some(state) = State::load(root, id) else {
        return Outcome::Declined("no state.json of the expected shape");
    };
    if let Err(reason) = only_removals(&state, id, cgroup_root) {
        return Outcome::Declined(reason);
    }
    if state.init_alive() {
        return Outcome::Declined("its init has not exited");
    }
    if let Some(retired) = retirement.and_then(|r| r.take(root, id)) {
        return Outcome::Retired(retired);
    }
    // The deepest first, though a container's own cgroups have no
    // children: runc would remove those too, so one makes this decline.
    for path in state.cgroup_paths.values() {
        if let Err(e) = std::fs::remove_dir(path) {
            if e.kind() != io::ErrorKind::NotFound {
                return Outcome::Declined("a cgroup would not go");
            }
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Outcome::Deleted,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Outcome::Deleted,
        Err(_) => Outcome::Declined("its state directory would not go"),
    }
}

/// Whether runc's delete of `state` is no more than removing its cgroups
/// and state directory; else why not.
fn only_removals(state: &State, id: &str, cgroup_root: &Path) -> Result<(), &'static str> {
    let config = &state.config;
    if config.cgroups.as_ref().is_some_and(|c| c.systemd) {
        return Err("systemd manages its cgroups");
    }
    if state
        .intel_rdt_path
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err("it has an Intel RDT group");
    }
    if config.has_hooks("poststop") {
        return Err("it has poststop hooks");
    }
    if config.net_devices.as_ref().is_some_and(|d| !is_empty(d)) {
        return Err("it has network devices to give back");
    }
    // Only a container that owns its PID namespace loses every process with
    // its init; in a shared one runc kills the rest through the cgroup.
    let owns_pid_ns = config
        .namespaces
        .iter()
        .any(|n| n.kind == "NEWPID" && n.path.is_empty());
    if !owns_pid_ns {
        return Err("it shares a PID namespace");
    }
    if !state
        .cgroup_paths
        .values()
        .all(|p| is_own_cgroup(Path::new(p), id, cgroup_root))
    {
        return Err("a cgroup path that is not the container's own");
    }
    Ok(())
}

/// A path this module may remove: below `cgroup_root` and a hierarchy,
/// without `..`, and named after the container (its last component holds
/// `id`), so a damaged state file cannot point it at another cgroup.
pub(super) fn is_own_cgroup(path: &Path, id: &str, cgroup_root: &Path) -> bool {
    let Ok(below) = path.strip_prefix(cgroup_root) else {
        return false;
    };
    let plain = below
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(id));
    plain && below.components().count() >= 2 && named
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::runtime) const ID: &str = "c0ffee";

    /// A runc root holding container `ID` with `state`, and a fake cgroup
    /// root holding the container's cgroup in two hierarchies.
    pub(in crate::runtime) struct Fixture {
        pub root: tempfile::TempDir,
        pub cgroups: tempfile::TempDir,
    }

    impl Fixture {
        pub fn new(edit: impl FnOnce(&mut serde_json::Value, &Path)) -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let cgroups = tempfile::tempdir().unwrap();
            let mut paths = serde_json::Map::new();
            for hierarchy in ["memory", "pids"] {
                let dir = cgroups.path().join(hierarchy).join("pods").join(ID);
                std::fs::create_dir_all(&dir).unwrap();
                paths.insert(hierarchy.into(), json!(dir));
            }
            let mut state = json!({
                "id": ID,
                // pid 0 is never a process of /proc.
                "init_process_pid": 0,
                "init_process_start": 1,
                "cgroup_paths": paths,
                "intel_rdt_path": "",
                "config": {
                    "cgroups": {"path": format!("/pods/{ID}")},
                    // As runc 1.1 writes them for a spec without hooks.
                    "Hooks": {"prestart": null, "poststop": null},
                    "namespaces": [{"type": "NEWNS", "path": ""}, {"type": "NEWPID", "path": ""}],
                },
            });
            edit(&mut state, cgroups.path());
            let dir = root.path().join(ID);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
            Fixture { root, cgroups }
        }

        pub fn delete(&self) -> Outcome {
            delete(self.root.path(), ID, self.cgroups.path(), None)
        }

        /// The container's cgroup in `hierarchy`.
        pub fn cgroup(&self, hierarchy: &str) -> std::path::PathBuf {
            self.cgroups.path().join(hierarchy).join("pods").join(ID)
        }

        /// Whether nothing was removed.
        pub fn untouched(&self) -> bool {
            self.root.path().join(ID).join("state.json").is_file()
                && ["memory", "pids"]
                    .iter()
                    .all(|h| self.cgroups.path().join(h).join("pods").join(ID).is_dir())
        }
    }

    #[test]
    fn a_plain_stopped_container_loses_its_cgroups_and_state() {
        let f = Fixture::new(|_, _| {});
        assert_eq!(f.delete(), Outcome::Deleted);
        assert!(!f.root.path().join(ID).exists());
        for h in ["memory", "pids"] {
            assert!(!f.cgroups.path().join(h).join("pods").join(ID).exists());
            assert!(
                f.cgroups.path().join(h).join("pods").is_dir(),
                "the parent stays"
            );
        }
    }

    #[test]
    fn cgroups_already_gone_are_not_a_failure() {
        let f = Fixture::new(|_, _| {});
        std::fs::remove_dir(f.cgroups.path().join("pids/pods").join(ID)).unwrap();
        assert_eq!(f.delete(), Outcome::Deleted);
    }

    #[test]
    fn a_live_init_is_left_to_runc() {
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        let start = super::super::runc_state::start_time(&me).unwrap();
        let f = Fixture::new(|s, _| {
            s["init_process_pid"] = json!(std::process::id());
            s["init_process_start"] = json!(start);
        });
        assert_eq!(f.delete(), Outcome::Declined("its init has not exited"));
        assert!(f.untouched());
    }

    #[test]
    fn a_recycled_pid_is_not_the_init() {
        let f = Fixture::new(|s, _| {
            s["init_process_pid"] = json!(std::process::id());
            s["init_process_start"] = json!(1);
        });
        assert_eq!(f.delete(), Outcome::Deleted);
    }

    #[test]
    fn whatever_runc_would_do_more_is_declined_with_nothing_removed() {
        type Edit = fn(&mut serde_json::Value, &Path);
        let cases: [(&str, Edit); 7] = [
            ("systemd", |s, _| {
                s["config"]["cgroups"]["systemd"] = json!(true)
            }),
            ("poststop", |s, _| {
                s["config"]["Hooks"] = json!({"poststop": [{"path": "/bin/true"}]})
            }),
            ("rdt", |s, _| {
                s["intel_rdt_path"] = json!("/sys/fs/resctrl/c")
            }),
            ("net devices", |s, _| {
                s["config"]["netDevices"] = json!({"eth1": {}})
            }),
            ("shared pid", |s, _| {
                s["config"]["namespaces"][1]["path"] = json!("/proc/1/ns/pid")
            }),
            ("no pid namespace", |s, _| {
                s["config"]["namespaces"] = json!([{"type": "NEWNS", "path": ""}])
            }),
            ("another shape", |s, _| {
                s["init_process_start"] = json!("soon")
            }),
        ];
        for (name, edit) in cases {
            let f = Fixture::new(edit);
            assert!(matches!(f.delete(), Outcome::Declined(_)), "{name}");
            assert!(f.untouched(), "{name}: something was removed");
        }
    }

    #[test]
    fn a_state_file_pointing_elsewhere_removes_nothing() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join(ID);
        std::fs::create_dir(&victim).unwrap();
        type Edit = Box<dyn Fn(&mut serde_json::Value, &Path)>;
        let victim_path = victim.clone();
        let cases: Vec<(&str, Edit)> = vec![
            (
                "outside the cgroup root",
                Box::new(move |s, _| s["cgroup_paths"]["cpu"] = json!(victim_path)),
            ),
            (
                "dot-dot",
                Box::new(|s, root| {
                    let sneaky = root.join("memory/pods/../..").join(ID);
                    s["cgroup_paths"]["cpu"] = json!(sneaky)
                }),
            ),
            (
                "another container's",
                Box::new(|s, root| {
                    std::fs::create_dir_all(root.join("cpu/pods/other")).unwrap();
                    s["cgroup_paths"]["cpu"] = json!(root.join("cpu/pods/other"))
                }),
            ),
            (
                "a hierarchy itself",
                Box::new(|s, root| s["cgroup_paths"]["cpu"] = json!(root.join(ID))),
            ),
        ];
        for (name, edit) in cases {
            let f = Fixture::new(|s, root| edit(s, root));
            assert!(matches!(f.delete(), Outcome::Declined(_)), "{name}");
            assert!(f.untouched(), "{name}: something was removed");
        }
        assert!(victim.is_dir());
    }

    #[test]
    fn a_cgroup_that_would_not_go_leaves_the_state_for_runc() {
        let f = Fixture::new(|_, _| {});
        // A child cgroup: runc removes those, so this declines.
        std::fs::create_dir(f.cgroups.path().join("pids/pods").join(ID).join("sub")).unwrap();
        assert_eq!(f.delete(), Outcome::Declined("a cgroup would not go"));
        assert!(f.root.path().join(ID).join("state.json").is_file());
    }

    #[test]
    fn missing_state_is_declined() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            delete(root.path(), ID, Path::new(CGROUP_ROOT), None),
            Outcome::Declined("no state.json of the expected shape")
        );
    }
}
