//! Typed digests: every digest and diff id that arrives from a registry is
//! parsed into a [`Digest`] before it is used for anything, and store paths
//! are made only from this type (and from [`crate::layer_store::ChainId`],
//! which wraps it). A string that is not `sha256:<64 lowercase hex>` or
//! `sha512:<128 lowercase hex>` can therefore never name a file.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;
use std::fmt;

/// The digest algorithms the store verifies (the OCI image spec's
/// registered ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256: 64 hex characters.
    Sha256,
    /// SHA-512: 128 hex characters.
    Sha512,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The name in a digest string: `sha256`, `sha512`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// How many hex characters its digests have.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The algorithm whose digests have `hex_len` hex characters.
    pub(crate) fn from_hex_len(hex_len: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.hex_len() == hex_len)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A well-formed digest: a supported algorithm and lowercase hex of its
/// length.
///
/// # Examples
///
/// ```
/// use image_store::digest::{Algorithm, Digest};
/// let d: Digest = format!("sha256:{}", "a".repeat(64)).parse()?;
/// assert_eq!(d.algorithm(), Algorithm::Sha256);
/// assert_eq!(d.hex(), "a".repeat(64));
/// assert!("sha256:/etc".parse::<Digest>().is_err());
/// assert!("sha256:../../etc".parse::<Digest>().is_err());
/// # Ok::<(), image_store::digest::DigestError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    /// The whole `algorithm:hex` text.
    text: String,
}

/// Why a string is not a [`Digest`]. The input is kept short (an attacker's
/// diff id can be megabytes long) so errors stay readable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid digest ({reason})")]
pub struct DigestError {
    /// The input, cut to its first 80 characters.
    pub input: String,
    /// What is wrong with it.
    pub reason: DigestFault,
}

/// What is wrong with a would-be digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestFault {
    /// No `algorithm:` prefix.
    #[error("no algorithm: expected <algorithm>:<hex>")]
    NoAlgorithm,
    /// An algorithm other than sha256 or sha512.
    #[error("unsupported algorithm: only sha256 and sha512 are accepted")]
    UnsupportedAlgorithm,
    /// The hex part has the wrong length or characters.
    #[error("{0} needs {len} lowercase hex characters", len = .0.hex_len())]
    BadHex(Algorithm),
}

const SHOWN: usize = 80;

impl DigestError {
    fn new(input: &str, reason: DigestFault) -> Self {
        let mut shown: String = input.chars().take(SHOWN).collect();
        if shown.len() < input.len() {
            shown.push('…');
        }
        Self {
            input: shown,
            reason,
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl std::str::FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::new(s, DigestFault::NoAlgorithm))?;
        let algorithm = Algorithm::from_name(name)
            .ok_or_else(|| DigestError::new(s, DigestFault::UnsupportedAlgorithm))?;
        if hex.len() != algorithm.hex_len() || !is_lower_hex(hex) {
            return Err(DigestError::new(s, DigestFault::BadHex(algorithm)));
        }
        Ok(Self {
            algorithm,
            text: s.to_string(),
        })
    }
}

impl Digest {
    /// The digest of `bytes` with `algorithm`.
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::digest::{Algorithm, Digest};
    /// assert_eq!(
    ///     Digest::of(Algorithm::Sha256, b"").to_string(),
    ///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// );
    /// ```
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    /// The digest made of `algorithm` and `hex`, if `hex` is well-formed for
    /// it (as in a store directory's entry names).
    pub fn from_hex(algorithm: Algorithm, hex: &str) -> Option<Self> {
        (hex.len() == algorithm.hex_len() && is_lower_hex(hex)).then(|| Self {
            algorithm,
            text: format!("{}:{hex}", algorithm.name()),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part: lowercase, exactly [`Algorithm::hex_len`] characters,
    /// so it is always a plain file name.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.name().len() + 1..]
    }

    /// The whole `algorithm:hex` text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hash for one [`Algorithm`].
#[derive(Clone)]
pub struct Hasher(HasherState);

#[derive(Clone)]
enum HasherState {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hash.
    pub fn new(algorithm: Algorithm) -> Self {
        Self(match algorithm {
            Algorithm::Sha256 => HasherState::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => HasherState::Sha512(sha2::Sha512::new()),
        })
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            HasherState::Sha256(h) => h.update(bytes),
            HasherState::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.0 {
            HasherState::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            HasherState::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest {
            algorithm,
            text: format!("{}:{hex}", algorithm.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_strings_are_refused_with_the_reason() {
        let h64 = "a".repeat(64);
        for (bad, fault) in [
            (
                "sha256:/etc".to_string(),
                DigestFault::BadHex(Algorithm::Sha256),
            ),
            (
                "sha256:../../etc".into(),
                DigestFault::BadHex(Algorithm::Sha256),
            ),
            (
                format!("sha256:{}", h64.to_uppercase()),
                DigestFault::BadHex(Algorithm::Sha256),
            ),
            (
                format!("sha256:{h64}a"),
                DigestFault::BadHex(Algorithm::Sha256),
            ),
            (
                format!("sha512:{h64}"),
                DigestFault::BadHex(Algorithm::Sha512),
            ),
            (
                format!("sha384:{}", "a".repeat(96)),
                DigestFault::UnsupportedAlgorithm,
            ),
            (format!("SHA256:{h64}"), DigestFault::UnsupportedAlgorithm),
            (
                format!("sha256:{h64},x"),
                DigestFault::BadHex(Algorithm::Sha256),
            ),
            (h64.clone(), DigestFault::NoAlgorithm),
            (String::new(), DigestFault::NoAlgorithm),
        ] {
            let err = bad.parse::<Digest>().unwrap_err();
            assert_eq!(err.reason, fault, "{bad}");
        }
    }

    #[test]
    fn long_inputs_are_cut_in_errors() {
        let err = format!("sha256:{}", "/".repeat(1 << 20))
            .parse::<Digest>()
            .unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn both_algorithms_hash_and_round_trip() {
        for algorithm in Algorithm::ALL {
            let d = Digest::of(algorithm, b"abc");
            assert_eq!(d.hex().len(), algorithm.hex_len());
            assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
            assert_eq!(Digest::from_hex(algorithm, d.hex()), Some(d.clone()));
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        }
        assert!(serde_json::from_str::<Digest>(r#""sha256:/etc""#).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        // Any string that is not a valid digest is refused: parsing agrees
        // with the grammar (matched by an independent regex) on arbitrary
        // strings and on near-digests, and what parses is plain hex, so no
        // '/', '.', ',', ':' or NUL can reach a path.
        #[test]
        fn only_valid_digests_parse(
            s in "\\PC{0,140}|(sha256|sha512|sha384|SHA256):[0-9a-fA-F/.,:]{60,130}|sha(256|512):[0-9a-f]{64}([0-9a-f]{64})?",
        ) {
            let grammar = regex::Regex::new("^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$").unwrap();
            let parsed = s.parse::<Digest>();
            prop_assert_eq!(parsed.is_ok(), grammar.is_match(&s), "{:?}", s);
            if let Ok(d) = parsed {
                prop_assert_eq!(d.as_str(), s.as_str());
                prop_assert_eq!(d.hex().len(), d.algorithm().hex_len());
                prop_assert!(is_lower_hex(d.hex()));
            }
        }

        #[test]
        fn well_formed_digests_parse(hex in "[0-9a-f]{64}", long in "[0-9a-f]{128}") {
            let (short, long) = (format!("sha256:{hex}"), format!("sha512:{long}"));
            prop_assert!(short.parse::<Digest>().is_ok());
            prop_assert!(long.parse::<Digest>().is_ok());
        }
    }
}
