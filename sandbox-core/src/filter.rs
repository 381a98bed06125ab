//! The filters of CRI's `ListPodSandbox` and `ListContainers`.
//!
//! Every criterion left empty matches everything; the ones given must all
//! match. Ids are matched as prefixes, the way `crictl ps --id 3f2a` expects,
//! and an id prefix that is not lowercase hexadecimal matches nothing.

use crate::container::{Container, ContainerState};
use crate::sandbox::{Sandbox, SandboxState};
use std::collections::BTreeMap;

/// A criterion for choosing records of type `T` out of a
/// [`Store`](crate::Store).
///
/// # Examples
///
/// ```
/// use sandbox_core::{Filter, PodMetadata, Sandbox, SandboxFilter};
///
/// let sandbox = Sandbox::new("ab12".into(), PodMetadata::default());
/// let filter = SandboxFilter { id_prefix: Some("ab".into()), ..Default::default() };
/// assert!(filter.matches(&sandbox));
/// assert_eq!(filter.id_prefix(), Some("ab"));
/// ```
pub trait Filter<T> {
    /// The prefix every matching record's id starts with, if the filter
    /// restricts ids; the store uses it to look at only those records.
    fn id_prefix(&self) -> Option<&str>;

    /// Whether `record` passes the filter (id prefix included).
    fn matches(&self, record: &T) -> bool;
}

/// Matches everything.
///
/// # Examples
///
/// ```
/// use sandbox_core::{All, Filter, PodMetadata, Sandbox};
///
/// assert!(All.matches(&Sandbox::new("ab".into(), PodMetadata::default())));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct All;

impl<T> Filter<T> for All {
    fn id_prefix(&self) -> Option<&str> {
        None
    }

    fn matches(&self, _: &T) -> bool {
        true
    }
}

/// The CRI `PodSandboxFilter`.
///
/// # Examples
///
/// ```
/// use sandbox_core::{Filter, PodMetadata, Sandbox, SandboxFilter, SandboxState};
///
/// let mut sandbox = Sandbox::new("ab12".into(), PodMetadata::default());
/// sandbox.labels.insert("app".into(), "web".into());
///
/// let ready_web = SandboxFilter {
///     state: Some(SandboxState::Ready),
///     label_selector: [("app".to_string(), "web".to_string())].into(),
///     ..Default::default()
/// };
/// assert!(!ready_web.matches(&sandbox));
/// sandbox.mark_ready(1)?;
/// assert!(ready_web.matches(&sandbox));
/// # Ok::<(), sandbox_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxFilter {
    /// Only sandboxes whose id starts with this.
    pub id_prefix: Option<String>,
    /// Only sandboxes in this state.
    pub state: Option<SandboxState>,
    /// Only sandboxes carrying all these labels with these values.
    pub label_selector: BTreeMap<String, String>,
}

impl Filter<Sandbox> for SandboxFilter {
    fn id_prefix(&self) -> Option<&str> {
        non_empty(&self.id_prefix)
    }

    fn matches(&self, sandbox: &Sandbox) -> bool {
        id_matches(non_empty(&self.id_prefix), &sandbox.id)
            && self.state.is_none_or(|state| state == sandbox.state)
            && labels_match(&self.label_selector, &sandbox.labels)
    }
}

/// The CRI `ContainerFilter`.
///
/// # Examples
///
/// ```
/// use sandbox_core::{Container, ContainerFilter, ContainerState, Filter};
///
/// let c = Container { id: "cd34".into(), sandbox_id: "ab12".into(), ..Default::default() };
/// let in_pod = ContainerFilter { sandbox_id_prefix: Some("ab".into()), ..Default::default() };
/// assert!(in_pod.matches(&c));
/// let running = ContainerFilter { state: Some(ContainerState::Running), ..Default::default() };
/// assert!(!running.matches(&c));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    /// Only containers whose id starts with this.
    pub id_prefix: Option<String>,
    /// Only containers in this state.
    pub state: Option<ContainerState>,
    /// Only containers whose pod sandbox id starts with this.
    pub sandbox_id_prefix: Option<String>,
    /// Only containers carrying all these labels with these values.
    pub label_selector: BTreeMap<String, String>,
}

impl Filter<Container> for ContainerFilter {
    fn id_prefix(&self) -> Option<&str> {
        non_empty(&self.id_prefix)
    }

    fn matches(&self, container: &Container) -> bool {
        id_matches(non_empty(&self.id_prefix), &container.id)
            && id_matches(non_empty(&self.sandbox_id_prefix), &container.sandbox_id)
            && self.state.is_none_or(|state| state == container.state)
            && labels_match(&self.label_selector, &container.labels)
    }
}

// CRI messages cannot tell "unset" from "empty", so an empty prefix means
// "no restriction", not "match nothing".
fn non_empty(prefix: &Option<String>) -> Option<&str> {
    prefix.as_deref().filter(|p| !p.is_empty())
}

fn id_matches(prefix: Option<&str>, id: &str) -> bool {
    match prefix {
        None => true,
        Some(prefix) => crate::id::is_hex(prefix) && id.starts_with(prefix),
    }
}

fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_prefix_means_unrestricted() {
        let c = Container {
            id: "ab".into(),
            ..Default::default()
        };
        let filter = ContainerFilter {
            id_prefix: Some(String::new()),
            sandbox_id_prefix: Some(String::new()),
            ..Default::default()
        };
        assert!(filter.matches(&c));
        assert_eq!(Filter::<Container>::id_prefix(&filter), None);
    }

    #[test]
    fn uppercase_prefix_matches_nothing() {
        let c = Container {
            id: "ab".into(),
            ..Default::default()
        };
        let filter = ContainerFilter {
            id_prefix: Some("AB".into()),
            ..Default::default()
        };
        assert!(!filter.matches(&c));
    }

    #[test]
    fn label_value_must_match_not_just_key() {
        let mut s = Sandbox::default();
        s.labels.insert("app".into(), "db".into());
        let filter = SandboxFilter {
            label_selector: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        };
        assert!(!filter.matches(&s));
    }

    fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map("[ab]", "[xy]", 0..3)
    }

    proptest! {
        // The selector matches exactly when it is a subset of the labels.
        #[test]
        fn selector_is_subset_test(selector in labels(), have in labels()) {
            let s = Sandbox { labels: have.clone(), ..Default::default() };
            let filter = SandboxFilter { label_selector: selector.clone(), ..Default::default() };
            let subset = selector.iter().all(|(k, v)| have.get(k) == Some(v));
            prop_assert_eq!(filter.matches(&s), subset);
        }
    }
}
