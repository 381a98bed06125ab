//! Typed errors: one type for a bad configuration, one for a pod the policy
//! cannot place, and one for a setting spelled wrong.

use crate::input::{CRIO_TRUSTED_SANDBOX_ANNOTATION, TRUSTED_SANDBOX_ANNOTATION};

/// Joins handler names for a message, saying so when there are none, so an
/// operator never reads "known handlers: " and wonders what was cut off.
fn handler_list(known: &[String]) -> String {
    if known.is_empty() {
        "(none)".to_owned()
    } else {
        known.join(", ")
    }
}

/// A setting value that is not one of the accepted spellings.
///
/// Returned by the [`FromStr`](std::str::FromStr) implementations of
/// [`WorkloadTrust`](crate::WorkloadTrust) and
/// [`PrivilegedUntrusted`](crate::PrivilegedUntrusted).
///
/// # Examples
///
/// ```
/// use trust_policy::WorkloadTrust;
///
/// let err = "maybe".parse::<WorkloadTrust>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "default_workload_trust: unknown value \"maybe\"; expected one of: trusted, untrusted"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: unknown value {value:?}; expected one of: {}", expected.join(", "))]
pub struct ParseSettingError {
    /// The configuration key the value was meant for.
    pub setting: &'static str,
    /// The value as given.
    pub value: String,
    /// Every accepted spelling.
    pub expected: &'static [&'static str],
}

/// Why a [`TrustConfig`](crate::TrustConfig) cannot become a
/// [`TrustPolicy`](crate::TrustPolicy).
///
/// # Examples
///
/// ```
/// use trust_policy::{ConfigError, TrustConfig, TrustPolicy};
///
/// let config = TrustConfig { untrusted_handler: Some("kata".into()), ..TrustConfig::default() };
/// let err = TrustPolicy::new(config, ["runc", "runsc"]).unwrap_err();
/// assert!(matches!(err, ConfigError::UnknownHandler { key: "untrusted_handler", .. }));
/// assert_eq!(
///     err.to_string(),
///     "trust policy: untrusted_handler = \"kata\" is not a known runtime handler; known handlers: runc, runsc"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `default_handler` is empty, so trusted pods would have nowhere to run.
    #[error(
        "trust policy: default_handler is empty; name the runtime handler for trusted workloads"
    )]
    EmptyDefaultHandler,
    /// A handler named in the configuration is not among the known handlers.
    #[error(
        "trust policy: {key} = {handler:?} is not a known runtime handler; known handlers: {}",
        handler_list(known)
    )]
    UnknownHandler {
        /// The configuration key naming the handler.
        key: &'static str,
        /// The handler name as configured.
        handler: String,
        /// Every known handler, sorted.
        known: Vec<String>,
    },
    /// The untrusted handler is the trusted one, which would make an untrusted
    /// verdict meaningless.
    #[error(
        "trust policy: untrusted_handler = {handler:?} is also default_handler; \
         set untrusted_handler = \"\" to run untrusted pods on the default handler"
    )]
    SameHandler {
        /// The handler named by both keys.
        handler: String,
    },
}

/// Why the policy cannot decide where a pod runs.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use trust_policy::{DecisionError, PodTrustInput, TrustConfig, TrustPolicy};
///
/// let policy = TrustPolicy::new(TrustConfig::default(), ["runc"])?;
/// let annotations = HashMap::new();
/// let input = PodTrustInput { runtime_handler: "kata", ..PodTrustInput::new(&annotations) };
/// let err = policy.decide(&input).unwrap_err();
/// assert!(matches!(err, DecisionError::UnknownHandler { .. }));
/// assert_eq!(
///     err.to_string(),
///     "runtime handler \"kata\" is not configured; known handlers: runc"
/// );
/// # Ok::<(), trust_policy::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// The pod asked for a runtime handler (RuntimeClass) that is not configured.
    #[error(
        "runtime handler {handler:?} is not configured; known handlers: {}",
        handler_list(known)
    )]
    UnknownHandler {
        /// The handler the pod asked for.
        handler: String,
        /// Every known handler, sorted.
        known: Vec<String>,
    },
    /// A trust annotation holds something other than `true` or `false`.
    #[error("pod annotation {key}={value:?}: a trust hint must be \"true\" or \"false\"")]
    InvalidHint {
        /// The annotation key.
        key: &'static str,
        /// The annotation value as given.
        value: String,
    },
    /// Both trust annotations are present and say opposite things.
    #[error(
        "pod annotations {}={cri_o} and {}={cri_server} disagree on whether the pod is trusted",
        CRIO_TRUSTED_SANDBOX_ANNOTATION,
        TRUSTED_SANDBOX_ANNOTATION
    )]
    ConflictingHints {
        /// The value of [`CRIO_TRUSTED_SANDBOX_ANNOTATION`].
        cri_o: bool,
        /// The value of [`TRUSTED_SANDBOX_ANNOTATION`].
        cri_server: bool,
    },
    /// The pod asked for a runtime handler (RuntimeClass) other than the
    /// untrusted handler while annotated untrusted: running it on the
    /// requested handler would ignore its own request to be sandboxed.
    #[error(
        "runtime handler {handler:?} (RuntimeClass) contradicts {hint}: untrusted pods run on \
         {untrusted_handler:?}; drop the annotation or request {untrusted_handler:?}"
    )]
    HandlerContradictsHint {
        /// The handler the pod asked for.
        handler: String,
        /// The trust annotation(s), as `annotation KEY=false`.
        hint: String,
        /// The configured untrusted handler.
        untrusted_handler: String,
    },
    /// The pod is both privileged and marked untrusted, and the policy is
    /// `privileged_untrusted = "reject"`.
    #[error("{reason}")]
    PrivilegedUntrustedRejected {
        /// Why the pod is privileged, why it is untrusted, and which setting
        /// refuses it, in one sentence.
        reason: String,
    },
    /// A pod asks for its own user namespace and for a privilege that
    /// defeats it (Kubernetes refuses `hostUsers: false` with these too).
    #[error(
        "a pod with its own user namespace (hostUsers: false) cannot also have {causes}: \
         its root would reach the host's"
    )]
    UserNamespaceWithPrivilege {
        /// The privileges asked for, joined.
        causes: String,
    },
    /// Under `trusted_images = "verified"`, a container's image has no
    /// signature evidence and its pod does not run in the sandbox.
    #[error(
        "image {image} may not run on handler {handler}: trusted_images=verified admits only \
         images a sigstoreSigned requirement verified (its evidence: {why}); sign it, or run the pod \
         untrusted{}",
        untrusted_handler.as_deref().map(|h| format!(" (on {h})")).unwrap_or_default()
    )]
    UnverifiedImage {
        /// The image as the container named it.
        image: String,
        /// The handler the pod runs on.
        handler: String,
        /// What the evidence says instead (no policy, accepted without a
        /// signature, ...).
        why: String,
        /// Where untrusted pods run, when a handler is configured.
        untrusted_handler: Option<String>,
    },
}
