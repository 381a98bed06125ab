//! Errors of loading a policy, reading a key or a payload, and fetching
//! signatures. Refusals of an image are not errors of the library: they are
//! [`crate::Refusal`] values.

use std::path::PathBuf;

/// A `policy.json` that cannot be used. Every variant names where in the
/// file the problem is (`default[0]`, `transports.docker["quay.io"][1]`, …).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("signature policy {path}: cannot read: {source}")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`crate::policy::MAX_POLICY_BYTES`].
    #[error("signature policy {origin}: larger than {limit} bytes")]
    TooLarge {
        /// The file, or `<bytes>`.
        origin: String,
        /// The limit.
        limit: usize,
    },
    /// Not JSON of the policy's shape: bad syntax, an unknown or duplicated
    /// field, a missing `default`.
    #[error("signature policy {origin}: {source}")]
    Syntax {
        /// The file, or `<bytes>`.
        origin: String,
        /// serde_json's message, with line and column.
        source: serde_json::Error,
    },
    /// Something at `location` is well-formed JSON but not a valid policy.
    #[error("signature policy {origin}: {location}: {reason}")]
    Invalid {
        /// The file, or `<bytes>`.
        origin: String,
        /// Where in the file.
        location: String,
        /// What is wrong.
        reason: InvalidPolicy,
    },
}

/// Why a well-formed part of a policy is refused.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPolicy {
    /// A requirement list must say something (the spec forbids `[]`).
    #[error("the list of requirements is empty")]
    EmptyRequirements,
    /// A requirement type the spec defines but this library does not
    /// implement; refused rather than ignored, so no policy is weaker than
    /// its author wrote.
    #[error("requirement {requirement} is not supported: {why}")]
    UnsupportedRequirement {
        /// The requirement (`signedBy`, `sigstoreSigned with fulcio`, …).
        requirement: String,
        /// What is missing.
        why: &'static str,
    },
    /// A `type` the spec does not define.
    #[error("unknown requirement type {0:?}")]
    UnknownRequirement(String),
    /// A field that the requirement's type does not take.
    #[error("field {field:?} does not belong in a {requirement} requirement")]
    FieldNotAllowed {
        /// The field.
        field: &'static str,
        /// The requirement's type.
        requirement: String,
    },
    /// `sigstoreSigned` needs exactly one of `keyPath`, `keyPaths`,
    /// `keyData`, `keyDatas`.
    #[error("exactly one of keyPath, keyPaths, keyData and keyDatas must be given ({0})")]
    KeySources(&'static str),
    /// A trusted key that cannot be used.
    #[error("key {key}: {source}")]
    Key {
        /// `keyPath "/etc/…"` or `keyData`/`keyDatas[1]`.
        key: String,
        /// Why.
        source: KeyError,
    },
    /// A `signedIdentity` `type` the spec does not define.
    #[error("unknown signedIdentity type {0:?}")]
    UnknownIdentity(String),
    /// A `signedIdentity` whose fields do not fit its type.
    #[error("signedIdentity {identity}: {why}")]
    Identity {
        /// The identity type.
        identity: String,
        /// What is wrong.
        why: String,
    },
    /// A `docker` scope that could never match an image reference.
    #[error("scope {scope:?}: {why}")]
    Scope {
        /// The scope as written.
        scope: String,
        /// Why it could never match.
        why: String,
    },
}

/// A public key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// Key files are looked up by absolute path only: a daemon's working
    /// directory is no place to find trust roots.
    #[error("the path is not absolute")]
    RelativePath,
    /// Larger than [`crate::key::MAX_KEY_BYTES`].
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// `keyData` that is not base64.
    #[error("keyData is not base64: {0}")]
    Base64(base64::DecodeError),
    /// Not exactly one PEM `PUBLIC KEY` block.
    #[error("not one PEM PUBLIC KEY block: {0}")]
    Pem(String),
    /// A key of an algorithm we cannot verify (RSA, other curves, …).
    #[error("unsupported key type: {0} (ECDSA P-256 and Ed25519 are)")]
    UnsupportedAlgorithm(String),
    /// Malformed key material.
    #[error("invalid key: {0}")]
    Invalid(String),
}

/// A simple-signing payload that is not one.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Larger than the limit.
    #[error("payload of {size} bytes is larger than {limit}")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON of the payload's exact shape.
    #[error("payload is not a simple-signing document: {0}")]
    Json(serde_json::Error),
    /// `critical.type` is not `cosign container image signature`.
    #[error("payload type is {0:?}, not \"cosign container image signature\"")]
    WrongType(String),
    /// `critical.image.docker-manifest-digest` is not a digest.
    #[error("docker-manifest-digest {0:?} is not a digest")]
    BadDigest(String),
    /// `optional` is neither `null` nor an object, or its `creator` or
    /// `timestamp` is of the wrong type.
    #[error("optional: {0}")]
    Optional(&'static str),
}

/// "N bytes, more than L" when the size is known, else "more than L bytes".
fn over_limit(size: Option<usize>, limit: usize) -> String {
    match size {
        Some(size) => format!("{size} bytes, more than {limit}"),
        None => format!("more than {limit} bytes"),
    }
}

/// Signatures that could not be fetched or read. The image is then neither
/// verified nor known to be unsigned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum SourceError {
    /// Every endpoint failed for a reason other than "no such tag".
    #[error("signatures of {image}: every endpoint failed: {}", attempts.join("; "))]
    Unreachable {
        /// The logical image reference.
        image: String,
        /// One line per endpoint tried.
        attempts: Vec<String>,
    },
    /// The signature manifest is larger than the limit. Nothing past the
    /// limit was read.
    #[error("signature manifest {location}: {}", over_limit(*.size, *.limit))]
    ManifestTooLarge {
        /// Where the manifest came from.
        location: String,
        /// Its size, when known (declared by the registry, or read whole);
        /// `None` when the registry sent more than the limit without
        /// saying how much.
        size: Option<usize>,
        /// The limit.
        limit: usize,
    },
    /// The signature manifest is not an image manifest.
    #[error("signature manifest {location}: {why}")]
    BadManifest {
        /// Where the manifest came from.
        location: String,
        /// What is wrong.
        why: String,
    },
    /// More simple-signing layers than the limit.
    #[error("signature manifest {location}: {count} signatures, more than {limit}")]
    TooManySignatures {
        /// Where the manifest came from.
        location: String,
        /// How many it lists.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The caller's manifest digest is not `sha256:<64 hex>`.
    #[error("signatures of {image}: {digest:?} is not a sha256 manifest digest")]
    BadDigest {
        /// The logical image reference.
        image: String,
        /// The digest given.
        digest: String,
    },
}
