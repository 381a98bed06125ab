//! The one error type of this crate.
//!
//! Every variant names the object it is about (an id, a prefix or a name) and
//! what went wrong with it, so a message read in a kubelet log is enough to
//! find the pod or container involved.

use std::fmt;

/// The kind of object an id refers to, so errors can say "sandbox" or
/// "container" instead of a bare id.
///
/// # Examples
///
/// ```
/// use sandbox_core::ObjectKind;
///
/// assert_eq!(ObjectKind::Sandbox.to_string(), "sandbox");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// An id of no particular kind, as known to a bare
    /// [`PrefixIndex`](crate::PrefixIndex).
    Id,
    /// A pod sandbox.
    Sandbox,
    /// A container.
    Container,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Id => "id",
            ObjectKind::Sandbox => "sandbox",
            ObjectKind::Container => "container",
        })
    }
}

/// Everything that can go wrong in this crate.
///
/// # Examples
///
/// ```
/// use sandbox_core::{Error, PrefixIndex};
///
/// let index = PrefixIndex::new();
/// let err = index.get("abc").unwrap_err();
/// assert!(matches!(err, Error::NotFound { .. }));
/// assert_eq!(err.to_string(), r#"id "abc": not found"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system's random source failed while generating an id.
    #[error("generating an id: reading the OS random source: {0}")]
    Random(getrandom::Error),

    /// An id that is about to be stored is not acceptable.
    #[error("{kind} {id:?}: invalid id: {reason}")]
    InvalidId {
        /// What the id was meant to name.
        kind: ObjectKind,
        /// The offending id.
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A lookup was asked for the empty prefix, which would match everything.
    #[error("{kind} lookup: empty id prefix")]
    EmptyPrefix {
        /// What was being looked up.
        kind: ObjectKind,
    },

    /// A lookup prefix contains a character no id can contain.
    #[error("{kind} {prefix:?}: invalid character {character:?} in id prefix (ids are lowercase hexadecimal)")]
    InvalidPrefix {
        /// What was being looked up.
        kind: ObjectKind,
        /// The prefix as given.
        prefix: String,
        /// The first character that is not a lowercase hexadecimal digit.
        character: char,
    },

    /// No stored id starts with the prefix (or equals the id).
    #[error("{kind} {prefix:?}: not found")]
    NotFound {
        /// What was being looked up.
        kind: ObjectKind,
        /// The id or prefix as given.
        prefix: String,
    },

    /// More than one stored id starts with the prefix.
    #[error("{kind} {prefix:?}: ambiguous id prefix, {count} ids start with it")]
    Ambiguous {
        /// What was being looked up.
        kind: ObjectKind,
        /// The prefix as given.
        prefix: String,
        /// How many stored ids start with the prefix (at least 2).
        count: usize,
    },

    /// An object with this id is already stored.
    #[error("{kind} {id}: already exists")]
    AlreadyExists {
        /// What was being added.
        kind: ObjectKind,
        /// The id that is taken.
        id: String,
    },

    /// A name is already reserved by another id.
    ///
    /// `holder` lets a caller find (and perhaps clean up) the object holding
    /// the name, the way a CRI runtime recovers from a kubelet retrying
    /// `RunPodSandbox` after a half-finished attempt.
    #[error("name {name:?}: already reserved for id {holder}")]
    NameReserved {
        /// The contested name.
        name: String,
        /// The id currently holding it.
        holder: String,
    },

    /// A name to reserve is empty.
    #[error("name reservation for id {id:?}: empty name")]
    EmptyName {
        /// The id the empty name was to be reserved for.
        id: String,
    },

    /// A state change that the lifecycle does not allow, such as starting an
    /// exited container.
    #[error("{kind} {id}: cannot go from state {from} to {to}")]
    InvalidTransition {
        /// What changes state.
        kind: ObjectKind,
        /// Its id.
        id: String,
        /// The current state.
        from: String,
        /// The requested state.
        to: String,
    },

    /// A store update tried to change the id of the object, which would break
    /// the store's index; the update was discarded.
    #[error("{kind} {id}: update changed the id to {new_id:?}; update discarded")]
    IdChanged {
        /// What was being updated.
        kind: ObjectKind,
        /// The id the object is stored under.
        id: String,
        /// The id the update tried to set.
        new_id: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
