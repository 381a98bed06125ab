//! Where pods and containers live in the cgroup tree: the cgroupfs driver
//! (plain directories) or the systemd driver (slices and scopes that systemd
//! owns), as kubelet's `cgroupDriver` must match.
//!
//! With cgroupfs, kubelet's `cgroup_parent` is a path (`/kubepods/pod<uid>`)
//! and a container's cgroup is `<parent>/<id>` in every hierarchy. With
//! systemd, the parent is a slice name (`kubepods-besteffort-pod<uid>.slice`)
//! whose dashes spell its ancestry; the runtime asks systemd for a transient
//! scope `cri-server-<id>.scope` in it (runc and runsc take
//! `slice:prefix:name` with `--systemd-cgroup`), and the cgroup files are at
//! `kubepods.slice/kubepods-besteffort.slice/…/cri-server-<id>.scope`.

use serde::{Deserialize, Serialize};

/// The scope prefix systemd-driven containers get (`<prefix>-<id>.scope`).
pub const SCOPE_PREFIX: &str = "cri-server";
/// The cgroupfs parent of pods that name none.
const DEFAULT_CGROUPFS_PARENT: &str = "/cri-server";
/// The slice of pods that name none under the systemd driver.
const DEFAULT_SLICE: &str = "system.slice";

/// Which cgroup manager places pods and containers (`[runtime]
/// cgroup_driver`).
///
/// # Examples
///
/// ```
/// use cgroups::CgroupDriver;
///
/// let fs = CgroupDriver::Cgroupfs;
/// assert_eq!(fs.runtime_path("/kubepods/pod1", "c1").unwrap(), "/kubepods/pod1/c1");
///
/// let systemd = CgroupDriver::Systemd;
/// let parent = "kubepods-besteffort-pod1.slice";
/// assert_eq!(systemd.runtime_path(parent, "c1").unwrap(), "kubepods-besteffort-pod1.slice:cri-server:c1");
/// assert_eq!(
///     systemd.fs_path(parent, "c1").unwrap(),
///     "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-server-c1.scope"
/// );
/// assert!(systemd.runtime_path("/kubepods/pod1", "c1").is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Directories the runtime makes itself (the default).
    #[default]
    Cgroupfs,
    /// Transient scopes in slices, through systemd.
    Systemd,
}

/// A pod's `cgroup_parent` that the configured driver cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cgroup_parent {parent:?}: {reason}")]
pub struct CgroupParentError {
    /// The parent as kubelet sent it.
    pub parent: String,
    /// Why it is refused.
    pub reason: String,
}

impl CgroupDriver {
    /// The global flag the OCI runtime needs for this driver, if any.
    pub fn runtime_flag(self) -> Option<&'static str> {
        match self {
            CgroupDriver::Cgroupfs => None,
            CgroupDriver::Systemd => Some("--systemd-cgroup"),
        }
    }

    /// The value for the OCI spec's `linux.cgroupsPath` of `id` in `parent`.
    pub fn runtime_path(self, parent: &str, id: &str) -> Result<String, CgroupParentError> {
        match self {
            CgroupDriver::Cgroupfs => Ok(cgroupfs_path(parent, id)),
            CgroupDriver::Systemd => {
                let slice = slice_of(parent)?;
                Ok(format!("{slice}:{SCOPE_PREFIX}:{id}"))
            }
        }
    }

    /// Where `id`'s cgroup is below a hierarchy's root (`/sys/fs/cgroup/<c>`),
    /// starting with `/`.
    pub fn fs_path(self, parent: &str, id: &str) -> Result<String, CgroupParentError> {
        match self {
            CgroupDriver::Cgroupfs => Ok(cgroupfs_path(parent, id)),
            CgroupDriver::Systemd => {
                let slice = slice_of(parent)?;
                Ok(format!("{}/{SCOPE_PREFIX}-{id}.scope", expand_slice(slice)))
            }
        }
    }

    /// Where the cgroup a spec's `linux.cgroupsPath` names is below a
    /// hierarchy's root, whichever driver wrote it: `slice:prefix:name`
    /// (systemd) or an absolute path (cgroupfs). Used to find what a
    /// half-made container left when no record says which driver made it.
    ///
    /// ```
    /// use cgroups::CgroupDriver;
    ///
    /// assert_eq!(CgroupDriver::fs_path_of("/cri-server/c1").unwrap(), "/cri-server/c1");
    /// assert_eq!(
    ///     CgroupDriver::fs_path_of("a-b.slice:cri-server:c1").unwrap(),
    ///     "/a.slice/a-b.slice/cri-server-c1.scope"
    /// );
    /// assert!(CgroupDriver::fs_path_of("relative/c1").is_err());
    /// ```
    pub fn fs_path_of(runtime_path: &str) -> Result<String, CgroupParentError> {
        let refuse = |reason: &str| CgroupParentError {
            parent: runtime_path.to_owned(),
            reason: reason.to_owned(),
        };
        if runtime_path.starts_with('/') {
            return Ok(runtime_path.to_owned());
        }
        let mut parts = runtime_path.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(slice), Some(prefix), Some(name)) if !prefix.is_empty() && !name.is_empty() => {
                let slice = slice_of(slice)?;
                Ok(format!("{}/{prefix}-{name}.scope", expand_slice(slice)))
            }
            _ => Err(refuse("neither an absolute path nor slice:prefix:name")),
        }
    }

    /// Checks a pod's `cgroup_parent` before anything is made for it.
    pub fn check_parent(self, parent: &str) -> Result<(), CgroupParentError> {
        self.runtime_path(parent, "check").map(|_| ())
    }
}

fn cgroupfs_path(parent: &str, id: &str) -> String {
    let parent = parent.trim_end_matches('/');
    if parent.is_empty() {
        format!("{DEFAULT_CGROUPFS_PARENT}/{id}")
    } else if parent.starts_with('/') {
        format!("{parent}/{id}")
    } else {
        format!("/{parent}/{id}")
    }
}

/// The slice a systemd-driven pod lives in, checked the way systemd checks
/// unit names: `<parts joined by ->.slice`, no `/`, no empty part.
fn slice_of(parent: &str) -> Result<&str, CgroupParentError> {
    let refuse = |reason: &str| {
        CgroupParentError {
        parent: parent.to_owned(),
        reason: format!("{reason} (the systemd cgroup driver takes a slice name such as kubepods-besteffort-pod<uid>.slice)"),
    }
    };
    if parent.is_empty() {
        return Ok(DEFAULT_SLICE);
    }
    let Some(stem) = parent.strip_suffix(".slice") else {
        return Err(refuse("not a slice name"));
    };
    if parent == "-.slice" {
        return Ok(parent);
    }
    if stem.is_empty()
        || stem.split('-').any(str::is_empty)
        || !stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
    {
        return Err(refuse("not a valid slice name"));
    }
    Ok(parent)
}

/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`; the root slice `-.slice`
/// is the root itself.
fn expand_slice(slice: &str) -> String {
    let Some(stem) = slice.strip_suffix(".slice").filter(|s| *s != "-") else {
        return String::new();
    };
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cgroupfs_paths() {
        let fs = CgroupDriver::Cgroupfs;
        assert_eq!(fs.runtime_path("", "ab").unwrap(), "/cri-server/ab");
        assert_eq!(
            fs.runtime_path("/kubepods/pod1/", "ab").unwrap(),
            "/kubepods/pod1/ab"
        );
        assert_eq!(fs.fs_path("kubepods", "ab").unwrap(), "/kubepods/ab");
        assert_eq!(fs.runtime_flag(), None);
    }

    #[test]
    fn systemd_paths_follow_the_slice_ancestry() {
        let sd = CgroupDriver::Systemd;
        assert_eq!(sd.runtime_flag(), Some("--systemd-cgroup"));
        assert_eq!(
            sd.runtime_path("", "ab").unwrap(),
            "system.slice:cri-server:ab"
        );
        assert_eq!(
            sd.fs_path("", "ab").unwrap(),
            "/system.slice/cri-server-ab.scope"
        );
        assert_eq!(sd.fs_path("-.slice", "ab").unwrap(), "/cri-server-ab.scope");
        assert_eq!(
            sd.fs_path("kubepods-burstable-pod1_2.slice", "ab").unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice/cri-server-ab.scope"
        );
    }

    #[test]
    fn systemd_refuses_what_is_not_a_slice() {
        let sd = CgroupDriver::Systemd;
        for bad in [
            "/kubepods/pod1",
            "kubepods",
            ".slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
            "a b.slice",
        ] {
            let err = sd.check_parent(bad).unwrap_err();
            assert_eq!(err.parent, bad);
            assert!(err.to_string().contains("slice"), "{err}");
        }
        assert!(CgroupDriver::Cgroupfs
            .check_parent("kubepods-x.slice")
            .is_ok());
    }

    #[test]
    fn config_names() {
        #[derive(Deserialize)]
        struct T {
            d: CgroupDriver,
        }
        let t: T = toml::from_str("d = \"systemd\"").unwrap();
        assert_eq!(t.d, CgroupDriver::Systemd);
        assert!(toml::from_str::<T>("d = \"cgroupv2\"").is_err());
    }

    proptest! {
        /// Every valid slice expands to a path whose last element is the
        /// slice itself and whose every element is a prefix slice of it.
        #[test]
        fn expansion_is_the_chain_of_prefixes(parts in proptest::collection::vec("[a-z0-9_]{1,6}", 1..5)) {
            let slice = format!("{}.slice", parts.join("-"));
            let path = CgroupDriver::Systemd.fs_path(&slice, "x").unwrap();
            let elements: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            prop_assert_eq!(elements.len(), parts.len() + 1);
            prop_assert_eq!(elements[parts.len() - 1], slice.as_str());
            for (i, e) in elements[..parts.len()].iter().enumerate() {
                prop_assert_eq!(e.to_string(), format!("{}.slice", parts[..=i].join("-")));
            }
        }
    }
}
