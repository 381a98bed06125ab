//! Sandbox and container ids: 64 lowercase hexadecimal characters (256 bits)
//! from the operating system's CSPRNG.
//!
//! The format matches what kubelet, crictl and other CRI runtimes show, and
//! 256 random bits make collisions a non-issue, so no "is it taken?" retry
//! loop is needed.

use crate::error::{Error, ObjectKind, Result};

/// The length of a generated id in characters.
pub const ID_LEN: usize = 64;

/// Generates a fresh id: 32 bytes from the OS random source, hex encoded.
///
/// # Errors
///
/// [`Error::Random`] when the OS random source cannot be read.
///
/// # Examples
///
/// ```
/// let id = sandbox_core::id::generate()?;
/// assert_eq!(id.len(), sandbox_core::id::ID_LEN);
/// sandbox_core::id::validate(&id)?;
/// # Ok::<(), sandbox_core::Error>(())
/// ```
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; ID_LEN / 2];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(encode_hex(&bytes))
}

/// Checks that `id` has the shape [`generate`] produces: exactly 64 lowercase
/// hexadecimal digits.
///
/// Use it on ids arriving from outside (for example restored from disk)
/// before trusting them as file names or map keys.
///
/// # Errors
///
/// [`Error::InvalidId`] naming the id and what is wrong with it.
///
/// # Examples
///
/// ```
/// use sandbox_core::id;
///
/// assert!(id::validate(&"a".repeat(64)).is_ok());
/// assert!(id::validate("abc").is_err());
/// assert!(id::validate(&"A".repeat(64)).is_err());
/// ```
pub fn validate(id: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidId {
        kind: ObjectKind::Id,
        id: id.to_owned(),
        reason,
    };
    if id.len() != ID_LEN {
        return Err(invalid("must be 64 characters long"));
    }
    if !is_hex(id) {
        return Err(invalid("must be lowercase hexadecimal"));
    }
    Ok(())
}

/// Whether every character of `s` is a lowercase hexadecimal digit
/// (`0-9`, `a-f`). The empty string counts as hexadecimal.
pub(crate) fn is_hex(s: &str) -> bool {
    first_non_hex(s).is_none()
}

/// The first character of `s` that is not a lowercase hexadecimal digit.
pub(crate) fn first_non_hex(s: &str) -> Option<char> {
    s.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f'))
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let ids: HashSet<String> = (0..1000).map(|_| generate().unwrap()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            validate(id).unwrap();
        }
    }

    #[test]
    fn generated_ids_use_every_hex_digit() {
        // A broken encoder (say, only the low nibble) would still produce
        // 64 valid characters; 16 ids make missing a digit by chance
        // astronomically unlikely.
        let all: HashSet<char> = (0..16)
            .flat_map(|_| generate().unwrap().chars().collect::<Vec<_>>())
            .collect();
        assert_eq!(all.len(), 16, "digits seen: {all:?}");
    }

    #[test]
    fn encodes_bytes_as_lowercase_hex() {
        assert_eq!(encode_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn validate_names_the_problem() {
        let short = validate("abc").unwrap_err();
        assert_eq!(
            short.to_string(),
            r#"id "abc": invalid id: must be 64 characters long"#
        );
        let upper = validate(&"F".repeat(64)).unwrap_err();
        assert!(upper.to_string().contains("lowercase hexadecimal"));
        assert!(validate(&format!("{}g", "0".repeat(63))).is_err());
    }

    #[test]
    fn first_non_hex_finds_the_culprit() {
        assert_eq!(first_non_hex("00af"), None);
        assert_eq!(first_non_hex("00aG1"), Some('G'));
        assert_eq!(first_non_hex("ab-c"), Some('-'));
    }
}
