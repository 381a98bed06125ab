//! Deciding an image: the policy's requirements for the logical reference,
//! each checked against the signatures of manifest `D`.
//!
//! A signature counts for a `sigstoreSigned` requirement only when, in this
//! order: its payload is the layer the manifest names (sha256), a key of
//! the requirement verifies the annotation's signature over exactly those
//! bytes, the payload is a well-formed simple-signing document, it signs
//! `D`, and its identity is one the requirement's `signedIdentity` accepts
//! for the logical reference. One such signature meets the requirement;
//! every requirement of the scope must be met (containers-policy.json(5)).

// A Refusal is ~200 bytes and made at most once per pull; boxing it would
// make every caller unwrap a Box for no measurable gain.
#![allow(clippy::result_large_err)]

use crate::error::SourceError;
use crate::identity::SignedIdentity;
use crate::key::PublicKey;
use crate::outcome::{
    AcceptedSignature, Refusal, RefusalReason, RejectedSignature, SignatureFault, Verification,
};
use crate::payload::{sha256_hex, SimpleSigningPayload, SIGNATURE_ANNOTATION};
use crate::policy::{Requirement, SignaturePolicy};
use crate::scope::PolicyScope;
use crate::source::{Limits, SignatureImage, SignatureLayer, SignatureSource};
use async_trait::async_trait;
use base64::Engine as _;
use image_store::ImageReference;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A [`SignatureSource`] as [`ImageVerifier::verify`] takes it: a type
/// that owns what it needs (as [`crate::RegistrySource`] does), which is
/// what lets mockall mock the verifier.
pub type StaticSource = dyn SignatureSource + 'static;

/// Decides whether an image may be trusted on the strength of its
/// signatures. [`PolicyVerifier`] is the implementation; with the `mock`
/// feature, `MockImageVerifier` (mockall) stands in for it in other
/// crates' tests.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ImageVerifier: Send + Sync {
    /// Checks manifest `digest` (what `image` resolved to; the index's
    /// digest for a multi-arch image) against the policy for `image`, the
    /// reference the pod named, fetching signatures from `source`.
    async fn verify(
        &self,
        image: &ImageReference,
        digest: &str,
        source: &StaticSource,
    ) -> Result<Verification, Refusal>;
}

/// A [`SignaturePolicy`] applied with [`Limits`].
#[derive(Clone, Debug)]
pub struct PolicyVerifier {
    policy: Arc<SignaturePolicy>,
    limits: Limits,
}

impl PolicyVerifier {
    /// Applies `policy` with the default limits.
    pub fn new(policy: SignaturePolicy) -> Self {
        Self {
            policy: Arc::new(policy),
            limits: Limits::default(),
        }
    }

    /// The same, with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The policy applied.
    pub fn policy(&self) -> &SignaturePolicy {
        &self.policy
    }
}

/// What every refusal of one check shares.
struct Context<'a> {
    image: &'a ImageReference,
    digest: &'a str,
    scope: PolicyScope,
}

impl Context<'_> {
    fn refuse(
        &self,
        requirement: Option<usize>,
        reason: RefusalReason,
        rejected: Vec<RejectedSignature>,
    ) -> Refusal {
        Refusal {
            image: self.image.to_string(),
            digest: self.digest.to_string(),
            scope: self.scope.clone(),
            requirement,
            reason,
            rejected,
        }
    }
}

#[async_trait]
impl ImageVerifier for PolicyVerifier {
    async fn verify(
        &self,
        image: &ImageReference,
        digest: &str,
        source: &StaticSource,
    ) -> Result<Verification, Refusal> {
        let (scope, requirements) = self.policy.requirements_for(image);
        let cx = Context {
            image,
            digest,
            scope,
        };
        if let Some(i) = requirements.iter().position(|r| *r == Requirement::Reject) {
            return Err(cx.refuse(Some(i), RefusalReason::RejectedByPolicy, Vec::new()));
        }
        let needs_signatures = requirements
            .iter()
            .any(|r| matches!(r, Requirement::SigstoreSigned { .. }));
        let signatures = if needs_signatures {
            fetch(&cx, source, &self.limits).await?
        } else {
            SignatureImage::default()
        };
        let mut accepted = Vec::new();
        for (i, requirement) in requirements.iter().enumerate() {
            if let Requirement::SigstoreSigned {
                keys,
                signed_identity,
            } = requirement
            {
                let check = Check {
                    image,
                    digest,
                    keys,
                    identity: signed_identity,
                    limits: &self.limits,
                };
                match check.requirement(i, &signatures.layers) {
                    Ok(signature) => accepted.push(signature),
                    Err((reason, rejected)) => return Err(cx.refuse(Some(i), reason, rejected)),
                }
            }
        }
        Ok(Verification {
            image: image.to_string(),
            digest: digest.to_string(),
            scope: cx.scope,
            requirements: requirements.iter().map(Requirement::kind).collect(),
            verified: !accepted.is_empty(),
            signatures: accepted,
        })
    }
}

/// The signature image, with "there is none" as an empty one.
async fn fetch(
    cx: &Context<'_>,
    source: &StaticSource,
    limits: &Limits,
) -> Result<SignatureImage, Refusal> {
    let unreadable = |error| cx.refuse(None, RefusalReason::Unreadable { error }, Vec::new());
    if sha256_hex(cx.digest).is_none() {
        return Err(unreadable(SourceError::BadDigest {
            image: cx.image.to_string(),
            digest: cx.digest.to_string(),
        }));
    }
    let found = match source.signatures(cx.image, cx.digest, limits).await {
        Ok(found) => found.unwrap_or_default(),
        Err(error) => return Err(unreadable(error)),
    };
    // Checked again here: a source of someone else's making may not.
    if found.layers.len() > limits.signatures {
        return Err(unreadable(SourceError::TooManySignatures {
            location: found.location,
            count: found.layers.len(),
            limit: limits.signatures,
        }));
    }
    Ok(found)
}

/// One `sigstoreSigned` requirement applied to one image.
struct Check<'a> {
    image: &'a ImageReference,
    digest: &'a str,
    keys: &'a [PublicKey],
    identity: &'a SignedIdentity,
    limits: &'a Limits,
}

impl Check<'_> {
    /// The first signature that meets the requirement, or why none does.
    fn requirement(
        &self,
        index: usize,
        layers: &[SignatureLayer],
    ) -> Result<AcceptedSignature, (RefusalReason, Vec<RejectedSignature>)> {
        let mut rejected = Vec::new();
        for layer in layers {
            match self.layer(layer) {
                Ok(mut signature) => {
                    signature.requirement = index;
                    return Ok(signature);
                }
                Err(fault) => {
                    tracing::debug!(image = %self.image, layer = %layer.digest, %fault, "signature not accepted");
                    rejected.push(RejectedSignature {
                        requirement: index,
                        layer_digest: layer.digest.clone(),
                        fault,
                    });
                }
            }
        }
        Err((self.summary(&rejected), rejected))
    }

    /// Checks one signature layer.
    fn layer(&self, layer: &SignatureLayer) -> Result<AcceptedSignature, SignatureFault> {
        let payload = layer
            .payload
            .as_deref()
            .filter(|p| p.len() <= self.limits.payload_bytes)
            .ok_or(SignatureFault::PayloadTooLarge)?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(payload)));
        if actual != layer.digest {
            return Err(SignatureFault::PayloadDigestMismatch { actual });
        }
        let encoded = layer
            .annotations
            .get(SIGNATURE_ANNOTATION)
            .ok_or(SignatureFault::MissingSignature)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SignatureFault::NotBase64)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.verify(payload, &signature))
            .ok_or(SignatureFault::Unverified)?;
        let parsed = SimpleSigningPayload::parse(payload)
            .map_err(|e| SignatureFault::InvalidPayload { why: e.to_string() })?;
        if parsed.manifest_digest != self.digest {
            return Err(SignatureFault::WrongDigest {
                signed: parsed.manifest_digest,
            });
        }
        if !self.identity.matches(self.image, &parsed.docker_reference) {
            return Err(SignatureFault::IdentityMismatch {
                signed_identity: parsed.docker_reference,
            });
        }
        Ok(AcceptedSignature {
            requirement: 0,
            key_fingerprint: key.fingerprint().to_string(),
            key_algorithm: key.algorithm(),
            signed_identity: parsed.docker_reference,
            identity_rule: self.identity.kind(),
            layer_digest: layer.digest.clone(),
        })
    }

    /// The most telling reason among the rejections: a trusted signature
    /// for the wrong identity says more than one for the wrong manifest,
    /// which says more than an untrusted or malformed one.
    fn summary(&self, rejected: &[RejectedSignature]) -> RefusalReason {
        if rejected.is_empty() {
            return RefusalReason::NoSignature;
        }
        let identity = rejected.iter().find_map(|r| match &r.fault {
            SignatureFault::IdentityMismatch { signed_identity } => {
                Some(RefusalReason::IdentityMismatch {
                    signed_identity: signed_identity.clone(),
                    rule: self.identity.kind(),
                })
            }
            _ => None,
        });
        let digest = || {
            rejected.iter().find_map(|r| match &r.fault {
                SignatureFault::WrongDigest { signed } => Some(RefusalReason::WrongDigest {
                    signed: signed.clone(),
                }),
                _ => None,
            })
        };
        identity
            .or_else(digest)
            .unwrap_or(RefusalReason::BadSignature)
    }
}

#[cfg(test)]
mod tests;
