//! What a namespace name may be.
//!
//! Names come from the CRI caller (usually derived from a pod sandbox id), so
//! they are input, not trusted: a name must stay a single, visible entry of
//! the pin directory. Names starting with `.` are refused because they would
//! escape (`..`), mean the directory itself (`.`) or collide with this
//! crate's own bookkeeping (`.parked`).

use crate::error::{Error, Result};

/// Longest file name Linux accepts (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Checks that `name` can be used as a pin name.
pub(crate) fn validate(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.len() > NAME_MAX {
        "is longer than 255 bytes"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else if name.starts_with('.') {
        "starts with '.'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    #[test]
    fn typical_names_pass_and_tricky_ones_fail() {
        validate("cni-0b3c1a2e-5f4d-4c11-9b7e-1f2a3b4c5d6e").unwrap();
        for bad in ["", ".", "..", ".parked", "a/b", "a\0b", &"x".repeat(256)] {
            assert!(
                matches!(validate(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    proptest! {
        // The invariant the pin directory relies on: an accepted name joined
        // to the directory is exactly one normal component below it.
        #[test]
        fn accepted_names_stay_one_entry_below_the_dir(name in "\\PC{0,300}") {
            if validate(&name).is_ok() {
                let joined = Path::new("/pins").join(&name);
                prop_assert_eq!(joined.parent(), Some(Path::new("/pins")));
                let last = joined.components().next_back();
                prop_assert!(matches!(last, Some(Component::Normal(_))));
                prop_assert!(!name.starts_with('.'));
            }
        }
    }
}
