//! Cosign signatures of container images, checked offline against a
//! signature policy in containers-policy.json(5)'s format: which images are
//! signed, by which key, for which identity.
//!
//! The daemon calls it while pulling: with the reference the pod named (the
//! *logical* one, not the mirror), the manifest digest `D` that reference
//! resolved to, and a [`SignatureSource`] that fetches the signature image
//! through the same mirrors as the pull. The answer is a [`Verification`]
//! (accepted; `verified` when signatures vouch for it) or a [`Refusal`]
//! whose [`RefusalReason`] says why: no signature, bad signature, wrong
//! digest, identity mismatch, rejected by policy, or signatures unreadable.
//!
//! How it fits together:
//!
//! - [`policy`] loads `policy.json` ([`SignaturePolicy`]): `default`,
//!   `transports.docker` scopes, and the requirements
//!   `insecureAcceptAnything`, `reject` and `sigstoreSigned` with keys.
//!   Requirements it cannot check are refused at load, never ignored.
//! - [`scope`] picks the most specific scope for an image; [`identity`]
//!   decides which signed identities a `signedIdentity` accepts.
//! - [`key`] reads cosign public keys (ECDSA P-256, Ed25519); [`payload`]
//!   the simple-signing document a signature covers.
//! - [`source`] defines how signature images are fetched (bounded by
//!   [`Limits`]); [`registry`] does it with image-store's bounded
//!   distribution client.
//! - [`verify`] applies the policy ([`PolicyVerifier`], behind the
//!   [`ImageVerifier`] trait); [`outcome`] holds the results.
//!
//! Cosign's conventions, which are the contract: the signatures of manifest
//! `sha256:<hex>` in repository `R` are the image `R:sha256-<hex>.sig`;
//! each layer of media type [`SIMPLE_SIGNING_MEDIA_TYPE`] is a payload,
//! and its descriptor's [`SIGNATURE_ANNOTATION`] holds the base64
//! signature over the payload's exact bytes.
//!
//! # Examples
//!
//! ```
//! use image_signature::{
//!     ImageVerifier, MemorySource, PolicyVerifier, RefusalKind, SignaturePolicy,
//! };
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let policy = SignaturePolicy::from_json(br#"{
//!     "default": [{"type": "reject"}],
//!     "transports": {"docker": {
//!         "quay.io/open": [{"type": "insecureAcceptAnything"}],
//!         "quay.io/signed": [{
//!             "type": "sigstoreSigned",
//!             "keyData": "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUNvd0JRWURLMlZ3QXlFQUdiOUVDV21FemY2RlFickJaOXc3bHNoUWhxb3d0cmJMREZ3NHJYQXhadUU9Ci0tLS0tRU5EIFBVQkxJQyBLRVktLS0tLQo=",
//!             "signedIdentity": {"type": "matchRepository"}
//!         }]
//!     }}
//! }"#)?;
//! let verifier = PolicyVerifier::new(policy);
//! let source = MemorySource::default(); // a RegistrySource in the daemon
//! let digest = format!("sha256:{}", "0".repeat(64));
//!
//! let open = verifier.verify(&"quay.io/open/app:1".parse()?, &digest, &source).await?;
//! assert!(!open.verified); // accepted, but nothing vouches for it
//!
//! let signed = verifier.verify(&"quay.io/signed/app:1".parse()?, &digest, &source).await;
//! assert_eq!(signed.unwrap_err().kind(), RefusalKind::NoSignature);
//!
//! let other = verifier.verify(&"busybox".parse()?, &digest, &source).await;
//! assert_eq!(other.unwrap_err().kind(), RefusalKind::RejectedByPolicy);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

mod error;
pub mod identity;
pub mod key;
pub mod outcome;
pub mod payload;
pub mod policy;
pub mod registry;
pub mod scope;
pub mod source;
pub mod verify;

pub use error::{InvalidPolicy, KeyError, PayloadError, PolicyError, SourceError};
pub use identity::{IdentityKind, SignedIdentity};
pub use key::{KeyAlgorithm, PublicKey};
pub use outcome::{
    AcceptedSignature, Refusal, RefusalKind, RefusalReason, RejectedSignature, SignatureFault,
    Verification,
};
pub use payload::{SimpleSigningPayload, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE};
pub use policy::{Requirement, RequirementKind, SignaturePolicy};
pub use registry::RegistrySource;
pub use scope::PolicyScope;
pub use source::{
    parse_signature_manifest, signature_tag, LayerDescriptor, Limits, MemorySource, SignatureImage,
    SignatureLayer, SignatureSource,
};
pub use verify::{ImageVerifier, PolicyVerifier};

#[cfg(any(test, feature = "mock"))]
pub use source::MockSignatureSource;
#[cfg(any(test, feature = "mock"))]
pub use verify::MockImageVerifier;
