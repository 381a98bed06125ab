//! Making names unique: at most one sandbox or container may hold a given
//! kubelet-style name at a time.
//!
//! Kubelet retries `RunPodSandbox` and `CreateContainer` after timeouts, so a
//! second request for the same name is normal. Reserving the name *before*
//! doing any work makes the retry fail fast with the id of the first
//! attempt, which the server can then inspect, finish or clean up.

use crate::error::{Error, ObjectKind, Result};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A thread-safe map from names to the ids holding them.
///
/// One id may hold several names; one name is held by at most one id.
///
/// # Examples
///
/// ```
/// use sandbox_core::{Error, NameRegistrar};
///
/// let names = NameRegistrar::new();
/// names.reserve("k8s_POD_web_default_uid1_0", "aaaa")?;
///
/// // The same request again (a kubelet retry) is fine...
/// names.reserve("k8s_POD_web_default_uid1_0", "aaaa")?;
///
/// // ...another id is told who holds the name.
/// match names.reserve("k8s_POD_web_default_uid1_0", "bbbb") {
///     Err(Error::NameReserved { holder, .. }) => assert_eq!(holder, "aaaa"),
///     other => panic!("unexpected {other:?}"),
/// }
///
/// names.release_by_id("aaaa");
/// names.reserve("k8s_POD_web_default_uid1_0", "bbbb")?;
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Default)]
pub struct NameRegistrar {
    inner: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    holder_of: HashMap<String, String>,
    names_of: HashMap<String, BTreeSet<String>>,
}

impl Registry {
    fn release(&mut self, name: &str) -> Option<String> {
        let id = self.holder_of.remove(name)?;
        if let Some(names) = self.names_of.get_mut(&id) {
            names.remove(name);
            if names.is_empty() {
                self.names_of.remove(&id);
            }
        }
        Some(id)
    }
}

impl NameRegistrar {
    /// Creates an empty registrar.
    ///
    /// # Examples
    ///
    /// ```
    /// let names = sandbox_core::NameRegistrar::new();
    /// assert_eq!(names.get("anything"), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    // Every operation leaves both maps consistent before it can panic, so a
    // poisoned lock still guards good data.
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `name` for `id`.
    ///
    /// Succeeds when the name is free or already held by `id`.
    ///
    /// # Errors
    ///
    /// [`Error::NameReserved`] carrying the holder's id when another id holds
    /// the name; [`Error::EmptyName`] for an empty name; [`Error::InvalidId`]
    /// for an empty id (a conflicting caller could not recover with it).
    ///
    /// # Examples
    ///
    /// ```
    /// let names = sandbox_core::NameRegistrar::new();
    /// names.reserve("k8s_app_web_default_uid1_0", "c1")?;
    /// assert!(names.reserve("k8s_app_web_default_uid1_0", "c2").is_err());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn reserve(&self, name: &str, id: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::EmptyName { id: id.to_owned() });
        }
        if id.is_empty() {
            return Err(Error::InvalidId {
                kind: ObjectKind::Id,
                id: String::new(),
                reason: "must not be empty",
            });
        }
        let mut registry = self.lock();
        match registry.holder_of.get(name) {
            Some(holder) if holder == id => Ok(()),
            Some(holder) => Err(Error::NameReserved {
                name: name.to_owned(),
                holder: holder.clone(),
            }),
            None => {
                registry.holder_of.insert(name.to_owned(), id.to_owned());
                registry
                    .names_of
                    .entry(id.to_owned())
                    .or_default()
                    .insert(name.to_owned());
                Ok(())
            }
        }
    }

    /// Frees `name`, returning the id that held it (`None` if it was free).
    ///
    /// # Examples
    ///
    /// ```
    /// let names = sandbox_core::NameRegistrar::new();
    /// names.reserve("n", "c1")?;
    /// assert_eq!(names.release("n").as_deref(), Some("c1"));
    /// assert_eq!(names.release("n"), None);
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn release(&self, name: &str) -> Option<String> {
        self.lock().release(name)
    }

    /// Frees `name` only if `id` holds it: a name is never taken from an
    /// object that reserved it meanwhile. Returns whether it was freed.
    ///
    /// # Examples
    ///
    /// ```
    /// let names = sandbox_core::NameRegistrar::new();
    /// names.reserve("n", "c2")?;
    /// assert!(!names.release_held("n", "c1"));
    /// assert!(names.release_held("n", "c2"));
    /// assert_eq!(names.get("n"), None);
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn release_held(&self, name: &str, id: &str) -> bool {
        let mut registry = self.lock();
        if registry.holder_of.get(name).map(String::as_str) != Some(id) {
            return false;
        }
        registry.release(name);
        true
    }

    /// Frees every name `id` holds, returning them sorted.
    ///
    /// # Examples
    ///
    /// ```
    /// let names = sandbox_core::NameRegistrar::new();
    /// names.reserve("b", "c1")?;
    /// names.reserve("a", "c1")?;
    /// assert_eq!(names.release_by_id("c1"), ["a", "b"]);
    /// assert_eq!(names.get("a"), None);
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn release_by_id(&self, id: &str) -> Vec<String> {
        let mut registry = self.lock();
        let names = registry.names_of.remove(id).unwrap_or_default();
        for name in &names {
            registry.holder_of.remove(name);
        }
        names.into_iter().collect()
    }

    /// The id holding `name`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let names = sandbox_core::NameRegistrar::new();
    /// names.reserve("n", "c1")?;
    /// assert_eq!(names.get("n").as_deref(), Some("c1"));
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn get(&self, name: &str) -> Option<String> {
        self.lock().holder_of.get(name).cloned()
    }

    /// The names `id` holds, sorted.
    ///
    /// # Examples
    ///
    /// ```
    /// let names = sandbox_core::NameRegistrar::new();
    /// names.reserve("n", "c1")?;
    /// assert_eq!(names.names_of("c1"), ["n"]);
    /// assert!(names.names_of("c2").is_empty());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn names_of(&self, id: &str) -> Vec<String> {
        self.lock()
            .names_of
            .get(id)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Barrier};
    use std::thread;

    #[test]
    fn sixteen_racing_threads_one_winner() {
        // Repeat so an unlucky schedule that serialises the threads is not
        // the only one we ever see.
        for round in 0..50 {
            let names = Arc::new(NameRegistrar::new());
            let start = Arc::new(Barrier::new(16));
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let names = Arc::clone(&names);
                    let start = Arc::clone(&start);
                    thread::spawn(move || {
                        let id = format!("id{i}");
                        start.wait();
                        (id.clone(), names.reserve("contested", &id))
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let winners: Vec<&String> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(id, _)| id)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let winner = winners[0].clone();
            assert_eq!(names.get("contested"), Some(winner.clone()));
            for (_, result) in &results {
                if let Err(err) = result {
                    assert_eq!(
                        *err,
                        Error::NameReserved {
                            name: "contested".into(),
                            holder: winner.clone()
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn empty_name_is_refused() {
        let names = NameRegistrar::new();
        assert_eq!(
            names.reserve("", "c1").unwrap_err().to_string(),
            r#"name reservation for id "c1": empty name"#
        );
    }

    #[test]
    fn empty_id_is_refused() {
        let names = NameRegistrar::new();
        assert!(matches!(
            names.reserve("web", ""),
            Err(Error::InvalidId { .. })
        ));
        assert_eq!(names.get("web"), None);
    }

    #[test]
    fn conflict_message_names_both() {
        let names = NameRegistrar::new();
        names.reserve("web", "c1").unwrap();
        assert_eq!(
            names.reserve("web", "c2").unwrap_err().to_string(),
            r#"name "web": already reserved for id c1"#
        );
    }

    #[test]
    fn survives_a_poisoned_lock() {
        let names = Arc::new(NameRegistrar::new());
        names.reserve("kept", "c1").unwrap();
        let poisoner = Arc::clone(&names);
        let _ = thread::spawn(move || {
            let _guard = poisoner.inner.lock().unwrap();
            panic!("poison the lock on purpose");
        })
        .join();
        assert!(names.inner.is_poisoned());
        assert_eq!(names.get("kept").as_deref(), Some("c1"));
        names.reserve("new", "c2").unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Reserve(String, String),
        Release(String),
        ReleaseById(String),
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        let name = "n[0-4]";
        let id = "i[0-3]";
        prop_oneof![
            4 => (name, id).prop_map(|(n, i)| Op::Reserve(n, i)),
            1 => name.prop_map(Op::Release),
            1 => id.prop_map(Op::ReleaseById),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_plain_map(ops in prop::collection::vec(op_strategy(), 1..60)) {
            let names = NameRegistrar::new();
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Reserve(name, id) => {
                        let expected = match model.get(&name) {
                            Some(holder) if *holder != id => Err(holder.clone()),
                            _ => {
                                model.insert(name.clone(), id.clone());
                                Ok(())
                            }
                        };
                        let got = names.reserve(&name, &id).map_err(|e| match e {
                            Error::NameReserved { holder, .. } => holder,
                            other => panic!("unexpected {other}"),
                        });
                        prop_assert_eq!(got, expected);
                    }
                    Op::Release(name) => {
                        prop_assert_eq!(names.release(&name), model.remove(&name));
                    }
                    Op::ReleaseById(id) => {
                        let expected: Vec<String> = model.iter().filter(|(_, h)| **h == id).map(|(n, _)| n.clone()).collect();
                        model.retain(|_, h| *h != id);
                        prop_assert_eq!(names.release_by_id(&id), expected);
                    }
                }
                for i in 0..5 {
                    let name = format!("n{i}");
                    prop_assert_eq!(names.get(&name), model.get(&name).cloned());
                }
                for i in 0..4 {
                    let id = format!("i{i}");
                    let expected: Vec<String> = model.iter().filter(|(_, h)| **h == id).map(|(n, _)| n.clone()).collect();
                    prop_assert_eq!(names.names_of(&id), expected);
                }
            }
        }
    }
}
