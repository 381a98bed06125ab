//! Resolving the short id prefixes people type (`crictl stop 3f2a`) to full
//! ids — what Docker and CRI-O call a "truncindex".
//!
//! Ids are kept in a sorted set, so the ids starting with a prefix form one
//! contiguous run that begins at the first id `>=` the prefix. A lookup costs
//! a logarithmic seek plus a walk over the matching ids only, never a scan of
//! all ids.

use crate::error::{Error, ObjectKind, Result};
use crate::id;
use std::collections::BTreeSet;
use std::ops::Bound;

/// A set of ids that can be looked up by any unambiguous prefix.
///
/// Ids must be non-empty lowercase hexadecimal strings (the shape
/// [`id::generate`] produces, without requiring its
/// length). The index is a plain value; [`Store`](crate::Store) wraps it in a
/// lock for concurrent use.
///
/// # Examples
///
/// ```
/// use sandbox_core::{Error, PrefixIndex};
///
/// let mut index = PrefixIndex::new();
/// index.add("abc123")?;
/// index.add("abd456")?;
///
/// assert_eq!(index.get("abc")?, "abc123");
/// assert!(matches!(index.get("ab"), Err(Error::Ambiguous { count: 2, .. })));
///
/// index.delete("abd456")?;
/// assert_eq!(index.get("ab")?, "abc123");
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PrefixIndex {
    kind: Option<ObjectKind>,
    ids: BTreeSet<String>,
}

impl PrefixIndex {
    /// Creates an empty index whose errors speak of plain "id"s.
    ///
    /// # Examples
    ///
    /// ```
    /// let index = sandbox_core::PrefixIndex::new();
    /// assert!(index.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an empty index whose errors name `kind` ("container
    /// \"ab\": not found").
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{ObjectKind, PrefixIndex};
    ///
    /// let index = PrefixIndex::for_kind(ObjectKind::Container);
    /// let err = index.get("ab").unwrap_err();
    /// assert_eq!(err.to_string(), r#"container "ab": not found"#);
    /// ```
    pub fn for_kind(kind: ObjectKind) -> Self {
        Self {
            kind: Some(kind),
            ids: BTreeSet::new(),
        }
    }

    fn kind(&self) -> ObjectKind {
        self.kind.unwrap_or(ObjectKind::Id)
    }

    /// Adds `id` to the index.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] when `id` is empty or not lowercase hexadecimal,
    /// [`Error::AlreadyExists`] when it is already in the index.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut index = sandbox_core::PrefixIndex::new();
    /// index.add("0123")?;
    /// assert!(index.add("0123").is_err());
    /// assert!(index.add("not hex").is_err());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn add(&mut self, id: &str) -> Result<()> {
        self.check_id(id)?;
        if !self.ids.insert(id.to_owned()) {
            return Err(Error::AlreadyExists {
                kind: self.kind(),
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Checks that `id` could be added, without adding it.
    pub(crate) fn check_id(&self, id: &str) -> Result<()> {
        let reason = if id.is_empty() {
            "must not be empty"
        } else if !id::is_hex(id) {
            "must be lowercase hexadecimal"
        } else {
            return Ok(());
        };
        Err(Error::InvalidId {
            kind: self.kind(),
            id: id.to_owned(),
            reason,
        })
    }

    /// Removes the full id `id` (not a prefix: deleting by prefix is too easy
    /// to get wrong).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when `id` is not in the index.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut index = sandbox_core::PrefixIndex::new();
    /// index.add("0123")?;
    /// assert!(index.delete("01").is_err());
    /// index.delete("0123")?;
    /// assert!(index.is_empty());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn delete(&mut self, id: &str) -> Result<()> {
        if self.ids.remove(id) {
            Ok(())
        } else {
            Err(Error::NotFound {
                kind: self.kind(),
                prefix: id.to_owned(),
            })
        }
    }

    /// Resolves `prefix` to the one full id it stands for.
    ///
    /// A prefix that is itself a stored id resolves to that id even when
    /// longer ids start with it; otherwise exactly one id must start with
    /// the prefix.
    ///
    /// # Errors
    ///
    /// - [`Error::EmptyPrefix`] for `""`, which would match everything;
    /// - [`Error::InvalidPrefix`] when it contains a character other than
    ///   `0-9a-f`, naming the character;
    /// - [`Error::NotFound`] when no id starts with it;
    /// - [`Error::Ambiguous`] when several do, saying how many.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_core::{Error, PrefixIndex};
    ///
    /// let mut index = PrefixIndex::new();
    /// index.add("aaaa")?;
    /// index.add("aabb")?;
    /// assert_eq!(index.get("aab")?, "aabb");
    /// assert!(matches!(index.get("aa"), Err(Error::Ambiguous { count: 2, .. })));
    /// assert!(matches!(index.get("b"), Err(Error::NotFound { .. })));
    /// assert!(matches!(index.get("AA"), Err(Error::InvalidPrefix { character: 'A', .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get(&self, prefix: &str) -> Result<&str> {
        self.check_prefix(prefix)?;
        let mut matches = self.matching_unchecked(prefix);
        let first = matches.next().ok_or_else(|| Error::NotFound {
            kind: self.kind(),
            prefix: prefix.to_owned(),
        })?;
        // The set is sorted, so an id equal to the prefix comes first.
        if first == prefix {
            return Ok(first);
        }
        match matches.next() {
            None => Ok(first),
            Some(_) => Err(Error::Ambiguous {
                kind: self.kind(),
                prefix: prefix.to_owned(),
                count: 2 + matches.count(),
            }),
        }
    }

    /// All ids starting with `prefix`, in sorted order; nothing for an empty
    /// or invalid prefix.
    ///
    /// Filters use this: listing "containers whose id starts with 3f" is not
    /// an error when several match.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut index = sandbox_core::PrefixIndex::new();
    /// for id in ["a1", "a2", "b1"] {
    ///     index.add(id)?;
    /// }
    /// assert_eq!(index.matching("a").collect::<Vec<_>>(), ["a1", "a2"]);
    /// assert_eq!(index.matching("").count(), 0);
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn matching<'a, 'p>(
        &'a self,
        prefix: &'p str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'p> {
        // An empty or invalid prefix yields nothing without walking the set.
        let limit = if self.check_prefix(prefix).is_ok() {
            usize::MAX
        } else {
            0
        };
        self.matching_unchecked(prefix).take(limit)
    }

    fn matching_unchecked<'a, 'p>(
        &'a self,
        prefix: &'p str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'p> {
        self.ids
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .map(String::as_str)
            .take_while(move |id| id.starts_with(prefix))
    }

    fn check_prefix(&self, prefix: &str) -> Result<()> {
        if prefix.is_empty() {
            return Err(Error::EmptyPrefix { kind: self.kind() });
        }
        if let Some(character) = id::first_non_hex(prefix) {
            return Err(Error::InvalidPrefix {
                kind: self.kind(),
                prefix: prefix.to_owned(),
                character,
            });
        }
        Ok(())
    }

    /// Whether the full id `id` is in the index.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut index = sandbox_core::PrefixIndex::new();
    /// index.add("ab")?;
    /// assert!(index.contains("ab"));
    /// assert!(!index.contains("a"));
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// The number of ids in the index.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut index = sandbox_core::PrefixIndex::new();
    /// index.add("ab")?;
    /// assert_eq!(index.len(), 1);
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index holds no ids.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(sandbox_core::PrefixIndex::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// All ids, in sorted order.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut index = sandbox_core::PrefixIndex::new();
    /// index.add("b")?;
    /// index.add("a")?;
    /// assert_eq!(index.iter().collect::<Vec<_>>(), ["a", "b"]);
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn full_id_wins_over_longer_ids() {
        let mut index = PrefixIndex::new();
        index.add("ab").unwrap();
        index.add("abc").unwrap();
        index.add("abd").unwrap();
        assert_eq!(index.get("ab").unwrap(), "ab");
        assert_eq!(
            index.get("a").unwrap_err(),
            Error::Ambiguous {
                kind: ObjectKind::Id,
                prefix: "a".into(),
                count: 3
            }
        );
    }

    #[test]
    fn errors_name_prefix_and_kind() {
        let mut index = PrefixIndex::for_kind(ObjectKind::Sandbox);
        index.add("aa").unwrap();
        index.add("ab").unwrap();
        assert_eq!(
            index.get("a").unwrap_err().to_string(),
            r#"sandbox "a": ambiguous id prefix, 2 ids start with it"#
        );
        assert_eq!(
            index.get("").unwrap_err().to_string(),
            "sandbox lookup: empty id prefix"
        );
        assert_eq!(
            index.get("a-").unwrap_err().to_string(),
            r#"sandbox "a-": invalid character '-' in id prefix (ids are lowercase hexadecimal)"#
        );
        assert_eq!(
            index.add("").unwrap_err().to_string(),
            r#"sandbox "": invalid id: must not be empty"#
        );
        assert_eq!(
            index.add("aa").unwrap_err().to_string(),
            "sandbox aa: already exists"
        );
        assert_eq!(
            index.delete("a").unwrap_err().to_string(),
            r#"sandbox "a": not found"#
        );
    }

    #[test]
    fn prefix_past_the_end_is_not_found() {
        let mut index = PrefixIndex::new();
        index.add("0f").unwrap();
        assert!(matches!(index.get("f"), Err(Error::NotFound { .. })));
        assert!(matches!(index.get("0f0"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn invalid_prefix_matches_nothing() {
        let mut index = PrefixIndex::new();
        index.add("0f").unwrap();
        assert_eq!(index.matching("0F").count(), 0);
        assert_eq!(index.matching("0").count(), 1);
    }

    /// What `get` should answer, computed the obvious way: scan everything.
    fn naive_get(ids: &BTreeSet<String>, prefix: &str) -> Result<String, &'static str> {
        if prefix.is_empty() {
            return Err("empty");
        }
        if !prefix
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Err("invalid");
        }
        if ids.contains(prefix) {
            return Ok(prefix.to_owned());
        }
        let found: Vec<&String> = ids.iter().filter(|id| id.starts_with(prefix)).collect();
        match found.as_slice() {
            [] => Err("not found"),
            [one] => Ok((*one).clone()),
            _ => Err("ambiguous"),
        }
    }

    fn classify(result: Result<&str>) -> Result<String, &'static str> {
        match result {
            Ok(id) => Ok(id.to_owned()),
            Err(Error::EmptyPrefix { .. }) => Err("empty"),
            Err(Error::InvalidPrefix { .. }) => Err("invalid"),
            Err(Error::NotFound { .. }) => Err("not found"),
            Err(Error::Ambiguous { .. }) => Err("ambiguous"),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(String),
        Delete(String),
        Get(String),
    }

    // A tiny alphabet at the start makes shared prefixes (and so ambiguity)
    // common; the random tail keeps ids long and realistic.
    fn id_strategy() -> impl Strategy<Value = String> {
        ("[01]{1,4}", "[0-9a-f]{0,3}").prop_map(|(head, tail)| head + &tail)
    }

    fn prefix_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "[01]{0,5}",
            2 => "[0-9a-f]{0,7}",
            1 => "[01A-Gz-]{1,3}",
        ]
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => id_strategy().prop_map(Op::Add),
            1 => id_strategy().prop_map(Op::Delete),
            4 => prefix_strategy().prop_map(Op::Get),
        ]
    }

    proptest! {
        #[test]
        fn matches_naive_model(ops in prop::collection::vec(op_strategy(), 1..80)) {
            let mut index = PrefixIndex::new();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Add(id) => {
                        let fresh = model.insert(id.clone());
                        prop_assert_eq!(index.add(&id).is_ok(), fresh);
                    }
                    Op::Delete(id) => {
                        let present = model.remove(&id);
                        prop_assert_eq!(index.delete(&id).is_ok(), present);
                    }
                    Op::Get(prefix) => {
                        prop_assert_eq!(classify(index.get(&prefix)), naive_get(&model, &prefix));
                        let expected: Vec<&str> = if naive_get(&model, &prefix) == Err("invalid") || prefix.is_empty() {
                            Vec::new()
                        } else {
                            model.iter().filter(|id| id.starts_with(&prefix)).map(String::as_str).collect()
                        };
                        prop_assert_eq!(index.matching(&prefix).collect::<Vec<_>>(), expected);
                        if let Err(Error::Ambiguous { count, .. }) = index.get(&prefix) {
                            let naive = model.iter().filter(|id| id.starts_with(&prefix)).count();
                            prop_assert_eq!(count, naive);
                        }
                    }
                }
                prop_assert_eq!(index.len(), model.len());
            }
        }

        #[test]
        fn every_stored_id_resolves_from_its_full_form(ids in prop::collection::btree_set(id_strategy(), 0..30)) {
            let mut index = PrefixIndex::new();
            for id in &ids {
                index.add(id).unwrap();
            }
            for id in &ids {
                prop_assert_eq!(index.get(id).unwrap(), id.as_str());
            }
        }
    }
}
