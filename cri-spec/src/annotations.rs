//! Which pod and container annotations reach the OCI runtime.
//!
//! Annotations are written by pod authors, and runtimes act on some of them:
//! runsc reads `dev.gvisor.*` (mounts, platform and flags of the sandbox),
//! runc hands `org.systemd.property.*` to systemd (GHSA-2cgq-h8xw-2v5j in
//! CRI-O). So `config.json` carries a request's annotations only when the
//! handler's `allowed_annotations` list allows them (CRI-O's key, under
//! `[runtime.handlers.NAME]`); by default none do. The daemon's own
//! annotations (the container type and sandbox id runsc groups a pod's
//! containers by) are added by `oci_shim::spec::PodRole` and always set.

use std::collections::BTreeMap;

/// Why an `allowed_annotations` entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    /// An empty entry would allow nothing (or, as a prefix, everything).
    #[error("an entry is empty; name an annotation key, or a prefix ending in '*'")]
    Empty,
    /// `*` anywhere but at the end.
    #[error("{entry:?}: '*' may only end an entry (a prefix such as \"dev.gvisor.*\")")]
    MisplacedWildcard {
        /// The entry as written.
        entry: String,
    },
}

/// A handler's `allowed_annotations`: exact keys, and prefixes written with
/// a trailing `*` (`"*"` alone allows every annotation).
///
/// # Examples
///
/// ```
/// use cri_spec::annotations::AllowList;
/// let allow = AllowList::new(&["io.kubernetes.cri-o.userns-mode".into(), "example.com/*".into()])?;
/// assert!(allow.allows("io.kubernetes.cri-o.userns-mode"));
/// assert!(allow.allows("example.com/team"));
/// assert!(!allow.allows("dev.gvisor.spec.mount.x.source"));
/// assert!(!AllowList::default().allows("anything"));
/// # Ok::<(), cri_spec::annotations::AllowListError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl AllowList {
    /// Parses the configured entries.
    ///
    /// # Errors
    ///
    /// [`AllowListError`] for an empty entry or a `*` before the end.
    pub fn new(entries: &[String]) -> Result<AllowList, AllowListError> {
        let mut list = AllowList::default();
        for entry in entries {
            if entry.is_empty() {
                return Err(AllowListError::Empty);
            }
            match entry.strip_suffix('*') {
                Some(prefix) if !prefix.contains('*') => list.prefixes.push(prefix.to_owned()),
                None if !entry.contains('*') => list.exact.push(entry.clone()),
                _ => {
                    return Err(AllowListError::MisplacedWildcard {
                        entry: entry.clone(),
                    })
                }
            }
        }
        Ok(list)
    }

    /// Whether annotation `key` may reach the runtime.
    pub fn allows(&self, key: &str) -> bool {
        self.exact.iter().any(|k| k == key) || self.prefixes.iter().any(|p| key.starts_with(p))
    }

    /// The annotations of `all` this list allows; the rest are dropped (and
    /// logged at debug, naming `owner`).
    pub fn filter(&self, owner: &str, all: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut kept = BTreeMap::new();
        for (key, value) in all {
            if self.allows(key) {
                kept.insert(key.clone(), value.clone());
            } else {
                tracing::debug!(%owner, annotation = %key, "annotation not passed to the runtime (not in allowed_annotations)");
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Result<AllowList, AllowListError> {
        AllowList::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let none = AllowList::default();
        for key in [
            "dev.gvisor.spec.mount.x.source",
            "org.systemd.property.SuccessAction",
            "io.kubernetes.cri-o.TrustedSandbox",
            "",
        ] {
            assert!(!none.allows(key), "{key}");
        }
    }

    #[test]
    fn exact_keys_and_prefixes() {
        let allow = list(&["a.b/c", "dev.gvisor.internal.*"]).unwrap();
        assert!(allow.allows("a.b/c"));
        assert!(!allow.allows("a.b/cd"));
        assert!(!allow.allows("a.b/"));
        assert!(allow.allows("dev.gvisor.internal.x"));
        assert!(allow.allows("dev.gvisor.internal."));
        assert!(!allow.allows("dev.gvisor.spec.mount.x.source"));
        assert!(list(&["*"]).unwrap().allows("anything.at/all"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert_eq!(list(&[""]), Err(AllowListError::Empty));
        assert!(matches!(
            list(&["dev.*.x"]),
            Err(AllowListError::MisplacedWildcard { .. })
        ));
        assert!(matches!(
            list(&["**"]),
            Err(AllowListError::MisplacedWildcard { .. })
        ));
    }

    #[test]
    fn filter_keeps_only_allowed_keys() {
        let allow = list(&["keep.me", "team/*"]).unwrap();
        let all = BTreeMap::from([
            ("keep.me".to_string(), "1".to_string()),
            ("team/x".to_string(), "2".to_string()),
            (
                "dev.gvisor.spec.mount.x.source".to_string(),
                "/".to_string(),
            ),
        ]);
        let kept = allow.filter("pod p", &all);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["keep.me", "team/x"]);
    }
}
