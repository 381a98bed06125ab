//! CRI's `userns_options` checked and turned into the model's
//! [`UserNamespace`].
//!
//! Kubelet allocates each `hostUsers: false` pod 65536 host ids from
//! 65536 up and sends the same mapping for uids and gids. The mapping
//! decides what the pod's root is on the host, so anything a node would
//! not hand out is refused before anything is made: a range that holds
//! host id 0 (the pod's root would be the host's), ranges the kernel
//! refuses (overlapping, empty, past `u32`, more than 340), and a mapping
//! without the container's root (runtimes need it for the root
//! filesystem).

use cri_api::v1 as cri;
use sandbox_core::{IdMapping, UserNamespace};

/// The kernel's limit on ranges per id map (`UID_GID_MAP_MAX_EXTENTS`).
pub const MAX_RANGES: usize = 340;

/// Why a pod's user namespace options are refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserNamespaceError {
    /// A mode other than POD or NODE.
    #[error("userns_options: mode {0} is not supported (only POD and NODE)")]
    Mode(i32),
    /// Mappings with mode NODE, which has none.
    #[error("userns_options: mode NODE takes no {0} mappings")]
    MappingsWithNode(&'static str),
    /// Mode POD without a mapping.
    #[error("userns_options: mode POD needs {0} mappings")]
    NoMappings(&'static str),
    /// Over [`MAX_RANGES`] ranges.
    #[error("userns_options: {which}: {count} ranges, at most {MAX_RANGES}")]
    TooMany {
        /// `uid` or `gid`.
        which: &'static str,
        /// How many were given.
        count: usize,
    },
    /// A range that is empty, wraps past `u32`, or overlaps another.
    #[error("userns_options: {which} range {range}: {why}")]
    BadRange {
        /// `uid` or `gid`.
        which: &'static str,
        /// The range, as `container:host:length`.
        range: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Container id 0 is not mapped.
    #[error("userns_options: the {0} mappings do not map the container's root (id 0)")]
    NoRoot(&'static str),
}

/// The pod's user namespace from CRI's options: `None` for mode NODE (or
/// no options), the checked mapping for mode POD.
///
/// # Examples
///
/// ```
/// use cri_api::v1 as cri;
/// use cri_spec::user_namespace::user_namespace;
///
/// let ids = vec![cri::IdMapping { host_id: 65536, container_id: 0, length: 65536 }];
/// let options = cri::UserNamespace {
///     mode: cri::NamespaceMode::Pod as i32,
///     uids: ids.clone(),
///     gids: ids,
/// };
/// let userns = user_namespace(Some(&options)).unwrap().unwrap();
/// assert_eq!(userns.host_root(), Some((65536, 65536)));
///
/// // The host's root is never a pod's.
/// let root = vec![cri::IdMapping { host_id: 0, container_id: 0, length: 65536 }];
/// let options = cri::UserNamespace { uids: root.clone(), gids: root, ..options };
/// assert!(user_namespace(Some(&options)).is_err());
/// ```
pub fn user_namespace(
    options: Option<&cri::UserNamespace>,
) -> Result<Option<UserNamespace>, UserNamespaceError> {
    let Some(options) = options else {
        return Ok(None);
    };
    match cri::NamespaceMode::try_from(options.mode) {
        Ok(cri::NamespaceMode::Node) => {
            for (which, ranges) in [("uid", &options.uids), ("gid", &options.gids)] {
                if !ranges.is_empty() {
                    return Err(UserNamespaceError::MappingsWithNode(which));
                }
            }
            Ok(None)
        }
        Ok(cri::NamespaceMode::Pod) => Ok(Some(UserNamespace {
            uids: ranges("uid", &options.uids)?,
            gids: ranges("gid", &options.gids)?,
        })),
        _ => Err(UserNamespaceError::Mode(options.mode)),
    }
}

/// The model's user namespace back in CRI's form (for pod status).
pub fn cri_user_namespace(user: Option<&UserNamespace>) -> cri::UserNamespace {
    let ranges = |ranges: &[IdMapping]| {
        ranges
            .iter()
            .map(|r| cri::IdMapping {
                host_id: r.host_id,
                container_id: r.container_id,
                length: r.length,
            })
            .collect()
    };
    match user {
        Some(user) => cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: ranges(&user.uids),
            gids: ranges(&user.gids),
        },
        None => cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            ..Default::default()
        },
    }
}

/// One id map, checked.
fn ranges(
    which: &'static str,
    given: &[cri::IdMapping],
) -> Result<Vec<IdMapping>, UserNamespaceError> {
    if given.is_empty() {
        return Err(UserNamespaceError::NoMappings(which));
    }
    if given.len() > MAX_RANGES {
        return Err(UserNamespaceError::TooMany {
            which,
            count: given.len(),
        });
    }
    let mut checked: Vec<IdMapping> = Vec::with_capacity(given.len());
    for r in given {
        let range = IdMapping {
            container_id: r.container_id,
            host_id: r.host_id,
            length: r.length,
        };
        let bad = |why| UserNamespaceError::BadRange {
            which,
            range: format!("{}:{}:{}", r.container_id, r.host_id, r.length),
            why,
        };
        if range.length == 0 {
            return Err(bad("empty"));
        }
        if end(range.container_id, range.length).is_none()
            || end(range.host_id, range.length).is_none()
        {
            return Err(bad("runs past the largest id"));
        }
        if range.host_id == 0 {
            return Err(bad("holds host id 0: the pod's root would be the host's"));
        }
        let clash = checked.iter().any(|other| {
            overlap(
                other.container_id,
                other.length,
                range.container_id,
                range.length,
            ) || overlap(other.host_id, other.length, range.host_id, range.length)
        });
        if clash {
            return Err(bad("overlaps another range"));
        }
        checked.push(range);
    }
    // A range holds id 0 only if it starts there.
    if !checked.iter().any(|r| r.container_id == 0) {
        return Err(UserNamespaceError::NoRoot(which));
    }
    Ok(checked)
}

/// Whether `[a, a + a_len)` and `[b, b + b_len)` share an id.
fn overlap(a: u32, a_len: u32, b: u32, b_len: u32) -> bool {
    let (a, a_len, b, b_len) = (
        u64::from(a),
        u64::from(a_len),
        u64::from(b),
        u64::from(b_len),
    );
    a < b + b_len && b < a + a_len
}

/// The last id of a range starting at `start`, if it fits in `u32`.
fn end(start: u32, length: u32) -> Option<u32> {
    start.checked_add(length - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(container_id: u32, host_id: u32, length: u32) -> cri::IdMapping {
        cri::IdMapping {
            host_id,
            container_id,
            length,
        }
    }

    fn pod(uids: Vec<cri::IdMapping>) -> cri::UserNamespace {
        cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            gids: uids.clone(),
            uids,
        }
    }

    #[test]
    fn kubelets_mapping_is_taken_and_node_mode_is_none() {
        let userns = user_namespace(Some(&pod(vec![map(0, 65536, 65536)])))
            .unwrap()
            .unwrap();
        assert_eq!(
            userns.uids,
            vec![IdMapping {
                container_id: 0,
                host_id: 65536,
                length: 65536
            }]
        );
        let node = cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            ..Default::default()
        };
        assert_eq!(user_namespace(Some(&node)), Ok(None));
        assert_eq!(user_namespace(None), Ok(None));
        let back = cri_user_namespace(Some(&userns));
        assert_eq!(back, pod(vec![map(0, 65536, 65536)]));
    }

    #[test]
    fn hostile_mappings_are_refused() {
        let cases = [
            (vec![], "needs uid"),
            (vec![map(0, 0, 65536)], "host id 0"),
            (vec![map(0, 65536, 0)], "empty"),
            (vec![map(0, u32::MAX - 10, 65536)], "past the largest"),
            (
                vec![map(0, 65536, 65536), map(100, 200_000, 10)],
                "overlaps",
            ),
            (vec![map(0, 65536, 100), map(200, 65600, 10)], "overlaps"),
            (vec![map(1, 65536, 100)], "root"),
            (
                (0..341).map(|i| map(i, 100_000 + i, 1)).collect(),
                "at most 340",
            ),
        ];
        for (uids, expected) in cases {
            let err = user_namespace(Some(&pod(uids.clone())))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{uids:?}: {err}");
        }
        let container = cri::UserNamespace {
            mode: cri::NamespaceMode::Container as i32,
            ..pod(vec![map(0, 65536, 65536)])
        };
        assert!(user_namespace(Some(&container)).is_err());
        let node_with_maps = cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            ..pod(vec![map(0, 65536, 65536)])
        };
        assert!(user_namespace(Some(&node_with_maps)).is_err());
    }

    #[test]
    fn several_disjoint_ranges_are_fine() {
        let uids = vec![map(0, 65536, 1000), map(1000, 200_000, 1000)];
        assert!(user_namespace(Some(&pod(uids))).unwrap().is_some());
    }
}
