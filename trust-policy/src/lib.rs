//! The trust decision: which OCI runtime handler a pod sandbox runs on, and
//! why.
//!
//! Trusted pods run on the default handler (typically `runc`); untrusted pods
//! run on a sandboxing handler such as gVisor's `runsc`. This crate is pure
//! logic with no I/O, so the CRI server, tests and other projects can all ask
//! the same question and get the same answer with a reason a person can read.
//!
//! # Map
//!
//! - [`TrustConfig`] (`config`): the operator's settings, deserialized from
//!   the daemon's `[runtime]` TOML table.
//! - [`PodTrustInput`] (`input`): the pod facts that matter: the requested
//!   runtime handler, the trust annotations, and the privilege flags.
//! - [`TrustPolicy`] (`policy`): a config validated against the known
//!   handlers; [`TrustPolicy::decide`] holds every rule.
//! - [`Decision`] (`decision`): handler, verdict and reason.
//! - [`ImageEvidence`] and [`ImageAdmission`] (`evidence`): what an image's
//!   signatures proved, and [`TrustPolicy::admit_image`], whether a
//!   container of it may run where its pod runs (`trusted_images`).
//! - [`ConfigError`], [`DecisionError`], [`ParseSettingError`] (`error`).
//!
//! The rules are CRI-O's (2017), fail-safe: a pod author's annotation can
//! make a pod untrusted but never lift the node's untrusted default; an
//! explicit RuntimeClass handler selects its handler, but one that
//! contradicts an untrusted annotation is refused; malformed or conflicting
//! annotations are errors instead of silently counting as trusted.
//! [`TrustPolicy::decide`] lists them.
//!
//! # Examples
//!
//! ```
//! use std::collections::HashMap;
//! use trust_policy::{PodTrustInput, TrustConfig, TrustPolicy, TRUSTED_SANDBOX_ANNOTATION};
//!
//! let config: TrustConfig = toml::from_str(r#"
//!     default_handler = "runc"
//!     untrusted_handler = "runsc"
//! "#)?;
//! let policy = TrustPolicy::new(config, ["runc", "runsc"])?;
//!
//! let annotations = HashMap::from([(TRUSTED_SANDBOX_ANNOTATION.to_owned(), "false".to_owned())]);
//! let decision = policy.decide(&PodTrustInput::new(&annotations))?;
//! assert_eq!(decision.handler, "runsc");
//! println!("{}", decision.reason);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod config;
mod decision;
mod error;
mod evidence;
mod input;
mod policy;

pub use config::{PrivilegedUntrusted, TrustConfig, TrustedImages, WorkloadTrust};
pub use decision::Decision;
pub use error::{ConfigError, DecisionError, ParseSettingError};
pub use evidence::{ImageAdmission, ImageEvidence};
pub use input::{
    PodTrustInput, PrivilegeCause, CRIO_TRUSTED_SANDBOX_ANNOTATION, TRUSTED_SANDBOX_ANNOTATION,
};
pub use policy::TrustPolicy;
