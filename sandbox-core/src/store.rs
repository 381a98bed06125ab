//! Concurrent in-memory stores of sandboxes and containers, looked up by id
//! or id prefix.
//!
//! One generic [`Store`] serves both kinds: the record type says what it is
//! called in errors ([`Record::KIND`]) and how to find its id. Records are
//! handed out as `Arc`s, so a reader holds a consistent snapshot without
//! holding the lock; writers replace a record whole (copy, change, swap), so a
//! reader never sees half an update and a panicking update changes nothing.

use crate::container::Container;
use crate::error::{Error, ObjectKind, Result};
use crate::filter::Filter;
use crate::prefix_index::PrefixIndex;
use crate::sandbox::Sandbox;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Something a [`Store`] can hold: a cloneable record with an id.
///
/// # Examples
///
/// ```
/// use sandbox_core::{ObjectKind, PodMetadata, Record, Sandbox};
///
/// let sandbox = Sandbox::new("ab".into(), PodMetadata::default());
/// assert_eq!(sandbox.id(), "ab");
/// assert_eq!(Sandbox::KIND, ObjectKind::Sandbox);
/// ```
pub trait Record: Clone {
    /// What errors call this kind of record.
    const KIND: ObjectKind;

    /// The record's id, its key in the store.
    fn id(&self) -> &str;
}

impl Record for Sandbox {
    const KIND: ObjectKind = ObjectKind::Sandbox;

    fn id(&self) -> &str {
        &self.id
    }
}

impl Record for Container {
    const KIND: ObjectKind = ObjectKind::Container;

    fn id(&self) -> &str {
        &self.id
    }
}

/// The pod sandboxes a runtime knows.
pub type SandboxStore = Store<Sandbox>;

/// The containers a runtime knows.
pub type ContainerStore = Store<Container>;

/// A thread-safe map from ids to records that also resolves id prefixes.
///
/// The prefix index and the records are changed under one lock, so they
/// always agree.
///
/// # Examples
///
/// ```
/// use sandbox_core::{id, ContainerStore, PodMetadata, Sandbox, SandboxFilter, SandboxStore};
///
/// let sandboxes = SandboxStore::new();
/// let id = id::generate()?;
/// sandboxes.add(Sandbox::new(id.clone(), PodMetadata::new("web", "default", "u1", 0)))?;
///
/// // Look up by a prefix, as `crictl inspectp 3f2a` does.
/// let found = sandboxes.get(&id[..8])?;
/// assert_eq!(found.id, id);
///
/// sandboxes.try_update(&id, |s| s.mark_ready(sandbox_core::timestamp::now()))?;
/// assert_eq!(sandboxes.list(&SandboxFilter::default()).len(), 1);
///
/// sandboxes.remove(&id)?;
/// assert!(sandboxes.get(&id).is_err());
/// # Ok::<(), sandbox_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Store<T> {
    inner: RwLock<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    records: HashMap<String, Arc<T>>,
    index: PrefixIndex,
}

impl<T: Record> Default for Store<T> {
    fn default() -> Self {
        Self {
            inner: RwLock::new(Inner {
                records: HashMap::new(),
                index: PrefixIndex::for_kind(T::KIND),
            }),
        }
    }
}

impl<T: Record> Store<T> {
    /// Creates an empty store.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = sandbox_core::ContainerStore::new();
    /// assert!(store.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a store from saved records, as a restarted daemon does.
    ///
    /// # Errors
    ///
    /// The first [`Error::InvalidId`] or [`Error::AlreadyExists`] among the
    /// records; saved state with duplicate ids is corrupt and should not be
    /// half-loaded.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Container, ContainerStore};
    ///
    /// let saved = vec![
    ///     Container { id: "aa".into(), ..Default::default() },
    ///     Container { id: "bb".into(), ..Default::default() },
    /// ];
    /// let store = ContainerStore::restore(saved)?;
    /// assert_eq!(store.len(), 2);
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn restore(records: impl IntoIterator<Item = T>) -> Result<Self> {
        let store = Self::new();
        for record in records {
            store.add(record)?;
        }
        Ok(store)
    }

    // Every write below checks everything that can fail before it changes
    // anything, so a lock poisoned by a panicking caller still guards a
    // consistent store.
    fn read(&self) -> RwLockReadGuard<'_, Inner<T>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner<T>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `record`, returning the shared copy now in the store.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] when the id is empty or not lowercase
    /// hexadecimal, [`Error::AlreadyExists`] when it is taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Container, ContainerStore};
    ///
    /// let store = ContainerStore::new();
    /// store.add(Container { id: "aa".into(), ..Default::default() })?;
    /// assert!(store.add(Container { id: "aa".into(), ..Default::default() }).is_err());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn add(&self, record: T) -> Result<Arc<T>> {
        let mut inner = self.write();
        inner.index.add(record.id())?;
        let record = Arc::new(record);
        inner
            .records
            .insert(record.id().to_owned(), Arc::clone(&record));
        Ok(record)
    }

    /// The record whose id is, or uniquely starts with, `id_or_prefix`.
    ///
    /// # Errors
    ///
    /// As [`PrefixIndex::get`]: empty or invalid prefix, not found, or
    /// ambiguous (with the number of matches).
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Container, ContainerStore};
    ///
    /// let store = ContainerStore::new();
    /// store.add(Container { id: "aa11".into(), ..Default::default() })?;
    /// assert_eq!(store.get("aa")?.id, "aa11");
    /// assert!(store.get("bb").is_err());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn get(&self, id_or_prefix: &str) -> Result<Arc<T>> {
        let inner = self.read();
        let id = inner.index.get(id_or_prefix)?;
        inner
            .records
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                kind: T::KIND,
                prefix: id_or_prefix.to_owned(),
            })
    }

    /// The full id that `id_or_prefix` stands for.
    ///
    /// # Errors
    ///
    /// As [`Store::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Container, ContainerStore};
    ///
    /// let store = ContainerStore::new();
    /// store.add(Container { id: "aa11".into(), ..Default::default() })?;
    /// assert_eq!(store.resolve("a")?, "aa11");
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn resolve(&self, id_or_prefix: &str) -> Result<String> {
        self.read().index.get(id_or_prefix).map(str::to_owned)
    }

    /// Whether a record with exactly this id is stored.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Container, ContainerStore};
    ///
    /// let store = ContainerStore::new();
    /// store.add(Container { id: "aa11".into(), ..Default::default() })?;
    /// assert!(store.contains("aa11"));
    /// assert!(!store.contains("aa"));
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn contains(&self, id: &str) -> bool {
        self.read().records.contains_key(id)
    }

    /// Removes the record with exactly this id (not a prefix: removal is not
    /// something to do by guesswork) and returns it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no record has this id.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Container, ContainerStore};
    ///
    /// let store = ContainerStore::new();
    /// store.add(Container { id: "aa11".into(), ..Default::default() })?;
    /// assert!(store.remove("aa").is_err());
    /// assert_eq!(store.remove("aa11")?.id, "aa11");
    /// assert!(store.is_empty());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn remove(&self, id: &str) -> Result<Arc<T>> {
        let mut inner = self.write();
        let record = inner.records.remove(id).ok_or_else(|| Error::NotFound {
            kind: T::KIND,
            prefix: id.to_owned(),
        })?;
        // Cannot fail: the index holds exactly the record ids.
        let _ = inner.index.delete(id);
        Ok(record)
    }

    /// Changes the record with exactly this id through `change`, returning
    /// what `change` returns.
    ///
    /// `change` works on a copy that replaces the stored record only when it
    /// returns, so readers never see a half-made change. It runs under the
    /// store's write lock: keep it short and do not touch the same store
    /// from inside it (that would deadlock).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no record has this id; [`Error::IdChanged`]
    /// when `change` altered the id (the change is then discarded).
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Container, ContainerStore};
    ///
    /// let store = ContainerStore::new();
    /// store.add(Container { id: "aa11".into(), ..Default::default() })?;
    /// store.update("aa11", |c| c.image_ref = "sha256:0123".into())?;
    /// assert_eq!(store.get("aa11")?.image_ref, "sha256:0123");
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn update<R>(&self, id: &str, change: impl FnOnce(&mut T) -> R) -> Result<R> {
        self.try_update(id, |record| Ok::<_, Error>(change(record)))
    }

    /// Like [`Store::update`], but `change` may refuse: when it returns an
    /// error, the stored record stays as it was.
    ///
    /// # Errors
    ///
    /// Whatever `change` returns, plus [`Error::NotFound`] and
    /// [`Error::IdChanged`] as for [`Store::update`].
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Container, ContainerState, ContainerStore};
    ///
    /// let store = ContainerStore::new();
    /// store.add(Container { id: "aa11".into(), ..Default::default() })?;
    /// store.try_update("aa11", |c| c.mark_exited(5, 1, "Error", ""))?;
    /// // A second exit is refused and changes nothing.
    /// assert!(store.try_update("aa11", |c| c.mark_exited(6, 0, "", "")).is_err());
    /// assert_eq!(store.get("aa11")?.finished_at, Some(5));
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn try_update<R, E>(
        &self,
        id: &str,
        change: impl FnOnce(&mut T) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E>
    where
        E: From<Error>,
    {
        let mut inner = self.write();
        let current = inner.records.get_mut(id).ok_or_else(|| Error::NotFound {
            kind: T::KIND,
            prefix: id.to_owned(),
        })?;
        let mut draft = T::clone(current);
        let out = change(&mut draft)?;
        if draft.id() != id {
            return Err(Error::IdChanged {
                kind: T::KIND,
                id: id.to_owned(),
                new_id: draft.id().to_owned(),
            }
            .into());
        }
        *current = Arc::new(draft);
        Ok(out)
    }

    /// The records passing `filter`, sorted by id.
    ///
    /// With an id prefix in the filter only the records under that prefix
    /// are examined.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{All, Container, ContainerFilter, ContainerStore};
    ///
    /// let store = ContainerStore::new();
    /// store.add(Container { id: "aa".into(), sandbox_id: "01".into(), ..Default::default() })?;
    /// store.add(Container { id: "bb".into(), sandbox_id: "02".into(), ..Default::default() })?;
    ///
    /// let in_pod = ContainerFilter { sandbox_id_prefix: Some("02".into()), ..Default::default() };
    /// let ids: Vec<String> = store.list(&in_pod).iter().map(|c| c.id.clone()).collect();
    /// assert_eq!(ids, ["bb"]);
    /// assert_eq!(store.list(&All).len(), 2);
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn list(&self, filter: &impl Filter<T>) -> Vec<Arc<T>> {
        let inner = self.read();
        let ids: Box<dyn Iterator<Item = &str>> = match filter.id_prefix() {
            Some(prefix) => Box::new(inner.index.matching(prefix)),
            None => Box::new(inner.index.iter()),
        };
        ids.filter_map(|id| inner.records.get(id))
            .filter(|record| filter.matches(record))
            .cloned()
            .collect()
    }

    /// The number of records.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(sandbox_core::SandboxStore::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.read().records.len()
    }

    /// Whether the store is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(sandbox_core::SandboxStore::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.read().records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerState;
    use crate::filter::{All, ContainerFilter, SandboxFilter};
    use crate::sandbox::{PodMetadata, SandboxState};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::thread;

    fn container(id: &str, sandbox_id: &str) -> Container {
        Container {
            id: id.into(),
            sandbox_id: sandbox_id.into(),
            ..Default::default()
        }
    }

    fn ids<T: Record>(records: &[Arc<T>]) -> Vec<String> {
        records.iter().map(|r| r.id().to_owned()).collect()
    }

    #[test]
    fn errors_name_the_kind() {
        let store = SandboxStore::new();
        store
            .add(Sandbox::new("ab".into(), PodMetadata::default()))
            .unwrap();
        assert_eq!(
            store
                .add(Sandbox::new("ab".into(), PodMetadata::default()))
                .unwrap_err()
                .to_string(),
            "sandbox ab: already exists"
        );
        assert_eq!(
            store.get("cd").unwrap_err().to_string(),
            r#"sandbox "cd": not found"#
        );
        assert_eq!(
            store.update("cd", |_| ()).unwrap_err().to_string(),
            r#"sandbox "cd": not found"#
        );
    }

    #[test]
    fn invalid_id_is_refused_and_nothing_stored() {
        let store = ContainerStore::new();
        assert!(matches!(
            store.add(container("not-hex", "01")),
            Err(Error::InvalidId {
                kind: ObjectKind::Container,
                ..
            })
        ));
        assert!(store.is_empty());
        assert!(store.list(&All).is_empty());
    }

    #[test]
    fn update_that_changes_id_is_discarded() {
        let store = ContainerStore::new();
        store.add(container("aa", "01")).unwrap();
        let err = store
            .update("aa", |c| {
                c.id = "bb".into();
                c.image = "changed".into();
            })
            .unwrap_err();
        assert!(matches!(err, Error::IdChanged { .. }), "{err}");
        let c = store.get("aa").unwrap();
        assert_eq!(c.image, "");
        assert!(store.get("bb").is_err());
    }

    #[test]
    fn readers_keep_their_snapshot() {
        let store = ContainerStore::new();
        store.add(container("aa", "01")).unwrap();
        let before = store.get("aa").unwrap();
        store.update("aa", |c| c.image = "new".into()).unwrap();
        assert_eq!(before.image, "");
        assert_eq!(store.get("aa").unwrap().image, "new");
    }

    #[test]
    fn panicking_update_changes_nothing_and_store_stays_usable() {
        let store = Arc::new(ContainerStore::new());
        store.add(container("aa", "01")).unwrap();
        let s = Arc::clone(&store);
        let joined = thread::spawn(move || {
            s.update("aa", |c| {
                c.image = "half".into();
                panic!("fail mid-update on purpose");
            })
        })
        .join();
        assert!(joined.is_err());
        assert_eq!(store.get("aa").unwrap().image, "");
        store.add(container("bb", "01")).unwrap();
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn list_applies_every_container_criterion() {
        let store = ContainerStore::new();
        let mut web = container("a1", "01");
        web.labels.insert("app".into(), "web".into());
        web.state = ContainerState::Running;
        store.add(web).unwrap();
        let mut db = container("a2", "02");
        db.labels.insert("app".into(), "db".into());
        db.state = ContainerState::Running;
        store.add(db).unwrap();
        store.add(container("b1", "01")).unwrap();

        let by_state = ContainerFilter {
            state: Some(ContainerState::Running),
            ..Default::default()
        };
        assert_eq!(ids(&store.list(&by_state)), ["a1", "a2"]);
        let by_pod = ContainerFilter {
            sandbox_id_prefix: Some("01".into()),
            ..Default::default()
        };
        assert_eq!(ids(&store.list(&by_pod)), ["a1", "b1"]);
        let by_prefix_and_label = ContainerFilter {
            id_prefix: Some("a".into()),
            label_selector: [("app".to_string(), "db".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(ids(&store.list(&by_prefix_and_label)), ["a2"]);
        let nothing = ContainerFilter {
            id_prefix: Some("c".into()),
            ..Default::default()
        };
        assert!(store.list(&nothing).is_empty());
    }

    #[test]
    fn list_sandboxes_by_state() {
        let store = SandboxStore::new();
        store
            .add(Sandbox::new("aa".into(), PodMetadata::default()))
            .unwrap();
        store
            .add(Sandbox::new("bb".into(), PodMetadata::default()))
            .unwrap();
        store.try_update("bb", |s| s.mark_ready(1)).unwrap();
        let ready = SandboxFilter {
            state: Some(SandboxState::Ready),
            ..Default::default()
        };
        assert_eq!(ids(&store.list(&ready)), ["bb"]);
    }

    #[test]
    fn restore_refuses_duplicates() {
        let err = ContainerStore::restore(vec![container("aa", "01"), container("aa", "02")])
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }));
    }

    #[test]
    fn concurrent_adds_and_removes_keep_index_in_sync() {
        let store = Arc::new(ContainerStore::new());
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                thread::spawn(move || {
                    for i in 0..200 {
                        let id = format!("{t:x}{i:04x}");
                        store.add(container(&id, "01")).unwrap();
                        if i % 2 == 0 {
                            store.remove(&id).unwrap();
                        } else {
                            store.update(&id, |c| c.image = id.clone()).unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(store.len(), 8 * 100);
        let listed = store.list(&All);
        assert_eq!(listed.len(), 8 * 100);
        for c in &listed {
            assert_eq!(c.image, c.id);
            assert_eq!(store.get(&c.id).unwrap().id, c.id);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(String, String),
        Remove(String),
        Get(String),
        SetLabel(String, String),
        List(Option<String>, Option<String>, Option<String>),
    }

    fn id() -> impl Strategy<Value = String> {
        "[01]{1,3}"
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (id(), "[ab]").prop_map(|(i, s)| Op::Add(i, s)),
            1 => id().prop_map(Op::Remove),
            2 => "[01]{0,3}".prop_map(Op::Get),
            1 => (id(), "[xy]").prop_map(|(i, v)| Op::SetLabel(i, v)),
            2 => (
                proptest::option::of("[01]{0,2}"),
                proptest::option::of("[ab]"),
                proptest::option::of("[xy]"),
            )
                .prop_map(|(p, s, l)| Op::List(p, s, l)),
        ]
    }

    proptest! {
        // The store behaves like a plain sorted map scanned naively.
        #[test]
        fn matches_a_sorted_map(ops in prop::collection::vec(op(), 1..60)) {
            let store = ContainerStore::new();
            let mut model: BTreeMap<String, Container> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Add(id, sandbox) => {
                        let fresh = !model.contains_key(&id);
                        if fresh {
                            model.insert(id.clone(), container(&id, &sandbox));
                        }
                        prop_assert_eq!(store.add(container(&id, &sandbox)).is_ok(), fresh);
                    }
                    Op::Remove(id) => {
                        prop_assert_eq!(store.remove(&id).is_ok(), model.remove(&id).is_some());
                    }
                    Op::Get(prefix) => {
                        let exact = model.get(&prefix).map(|c| c.id.clone());
                        let under: Vec<&String> = model.keys().filter(|k| !prefix.is_empty() && k.starts_with(&prefix)).collect();
                        let expected = exact.or_else(|| (under.len() == 1).then(|| under[0].clone()));
                        prop_assert_eq!(store.get(&prefix).ok().map(|c| c.id.clone()), expected);
                    }
                    Op::SetLabel(id, value) => {
                        let expected = model.get_mut(&id).map(|c| { c.labels.insert("k".into(), value.clone()); });
                        let got = store.update(&id, |c| { c.labels.insert("k".into(), value.clone()); });
                        prop_assert_eq!(got.is_ok(), expected.is_some());
                    }
                    Op::List(prefix, sandbox, label) => {
                        let filter = ContainerFilter {
                            id_prefix: prefix.clone(),
                            sandbox_id_prefix: sandbox.clone(),
                            label_selector: label.iter().map(|v| ("k".to_string(), v.clone())).collect(),
                            ..Default::default()
                        };
                        let expected: Vec<String> = model.values().filter(|c| {
                            prefix.as_deref().is_none_or(|p| c.id.starts_with(p))
                                && sandbox.as_deref().is_none_or(|s| c.sandbox_id.starts_with(s))
                                && label.as_ref().is_none_or(|v| c.labels.get("k") == Some(v))
                        }).map(|c| c.id.clone()).collect();
                        prop_assert_eq!(ids(&store.list(&filter)), expected);
                    }
                }
                prop_assert_eq!(store.len(), model.len());
            }
        }
    }
}
