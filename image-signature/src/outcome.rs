//! What a check of an image yields, in the form the daemon records with the
//! image and shows in ImageStatus verbose info: a [`Verification`] when
//! the policy accepts the image (`verified` says whether a signature did),
//! a [`Refusal`] when it does not. Both serialise with serde.

use crate::error::SourceError;
use crate::identity::IdentityKind;
use crate::key::KeyAlgorithm;
use crate::policy::RequirementKind;
use crate::scope::PolicyScope;
use serde::{Deserialize, Serialize};

/// The policy accepts the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// The logical reference checked (normalised).
    pub image: String,
    /// The manifest digest checked.
    pub digest: String,
    /// The policy scope whose requirements applied.
    pub scope: PolicyScope,
    /// Those requirements' types, in order.
    pub requirements: Vec<RequirementKind>,
    /// Whether signatures vouch for the image: at least one `sigstoreSigned`
    /// requirement applied and every one was met. `false` means accepted
    /// by `insecureAcceptAnything` alone.
    pub verified: bool,
    /// The signature that met each `sigstoreSigned` requirement.
    pub signatures: Vec<AcceptedSignature>,
}

/// A signature that met a `sigstoreSigned` requirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedSignature {
    /// The requirement's index in its scope's list.
    pub requirement: usize,
    /// `sha256:<hex>` of the SPKI DER of the key that verified it.
    pub key_fingerprint: String,
    /// That key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// The identity the signature claims (`docker-reference`).
    pub signed_identity: String,
    /// The `signedIdentity` rule that accepted it.
    pub identity_rule: IdentityKind,
    /// The signature layer's digest (the payload's sha256).
    pub layer_digest: String,
}

/// The policy refuses the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("image {image} (manifest {digest}) refused by signature policy {scope}: {reason}")]
pub struct Refusal {
    /// The logical reference checked (normalised).
    pub image: String,
    /// The manifest digest checked.
    pub digest: String,
    /// The policy scope whose requirements applied.
    pub scope: PolicyScope,
    /// The index of the requirement that failed, when one did.
    pub requirement: Option<usize>,
    /// Why, summarised: the most telling fault among the signatures.
    pub reason: RefusalReason,
    /// Every signature looked at, and what was wrong with it.
    pub rejected: Vec<RejectedSignature>,
}

impl Refusal {
    /// The reason's kind, for metrics and tests.
    pub fn kind(&self) -> RefusalKind {
        self.reason.kind()
    }
}

/// Why an image is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RefusalReason {
    /// A signature is required and there is none.
    #[error("a signature is required, but there is none")]
    NoSignature,
    /// There are signatures, but none verifies with a trusted key (or
    /// none is well-formed).
    #[error("no signature verifies with a trusted key")]
    BadSignature,
    /// A trusted signature, but of another manifest.
    #[error("a trusted signature is for manifest {signed}, not this one")]
    WrongDigest {
        /// The digest it signs.
        signed: String,
    },
    /// A trusted signature of this manifest, but for an identity the
    /// policy does not accept for this image.
    #[error("a trusted signature claims identity {signed_identity}, which {rule:?} does not accept for this image")]
    IdentityMismatch {
        /// The identity it claims.
        signed_identity: String,
        /// The rule it failed.
        rule: IdentityKind,
    },
    /// A `reject` requirement applies.
    #[error("the policy rejects this image")]
    RejectedByPolicy,
    /// Signatures are required but could not be read: the image is neither
    /// verified nor known to be unsigned.
    #[error("signatures could not be read: {error}")]
    Unreadable {
        /// Why.
        error: SourceError,
    },
}

/// [`RefusalReason`] without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RefusalKind {
    /// [`RefusalReason::NoSignature`].
    NoSignature,
    /// [`RefusalReason::BadSignature`].
    BadSignature,
    /// [`RefusalReason::WrongDigest`].
    WrongDigest,
    /// [`RefusalReason::IdentityMismatch`].
    IdentityMismatch,
    /// [`RefusalReason::RejectedByPolicy`].
    RejectedByPolicy,
    /// [`RefusalReason::Unreadable`].
    Unreadable,
}

impl RefusalReason {
    /// The kind, without details.
    pub fn kind(&self) -> RefusalKind {
        match self {
            RefusalReason::NoSignature => RefusalKind::NoSignature,
            RefusalReason::BadSignature => RefusalKind::BadSignature,
            RefusalReason::WrongDigest { .. } => RefusalKind::WrongDigest,
            RefusalReason::IdentityMismatch { .. } => RefusalKind::IdentityMismatch,
            RefusalReason::RejectedByPolicy => RefusalKind::RejectedByPolicy,
            RefusalReason::Unreadable { .. } => RefusalKind::Unreadable,
        }
    }
}

/// A signature that did not meet a requirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedSignature {
    /// The requirement's index in its scope's list.
    pub requirement: usize,
    /// The signature layer's digest.
    pub layer_digest: String,
    /// What was wrong.
    pub fault: SignatureFault,
}

/// What is wrong with one signature, in the order the checks run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum SignatureFault {
    /// The payload is larger than the limit and was not read.
    #[error("payload larger than the limit")]
    PayloadTooLarge,
    /// The payload's sha256 is not the layer's digest.
    #[error("payload digest is {actual}, not the layer's")]
    PayloadDigestMismatch {
        /// The payload's digest.
        actual: String,
    },
    /// The layer has no `dev.cosignproject.cosign/signature` annotation.
    #[error("no signature annotation")]
    MissingSignature,
    /// The annotation is not base64.
    #[error("signature annotation is not base64")]
    NotBase64,
    /// No trusted key verifies the signature over the payload.
    #[error("no trusted key verifies it")]
    Unverified,
    /// Verified, but the payload is not a simple-signing document.
    #[error("invalid payload: {why}")]
    InvalidPayload {
        /// The parser's message.
        why: String,
    },
    /// Verified, but for another manifest.
    #[error("signs manifest {signed}")]
    WrongDigest {
        /// The digest it signs.
        signed: String,
    },
    /// Verified and for this manifest, but for an identity not accepted.
    #[error("claims identity {signed_identity}")]
    IdentityMismatch {
        /// The identity it claims.
        signed_identity: String,
    },
}
