//! The outcome of a trust decision.

use serde::{Deserialize, Serialize};

/// Where a pod runs and why.
///
/// `trusted` is the policy's verdict on the workload, which is not always the
/// same as "runs on the trusted handler": an untrusted pod lands on the
/// trusted handler when no untrusted handler is configured, or when it is
/// privileged under `privileged_untrusted = "trusted-runtime"`. For a pod that
/// named its runtime handler explicitly, `trusted` is false exactly when that
/// handler is the configured untrusted handler.
///
/// It serializes so the daemon can keep it with the sandbox's state and show
/// the reason later.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use trust_policy::{PodTrustInput, TrustConfig, TrustPolicy};
///
/// let config = TrustConfig { untrusted_handler: Some("runsc".into()), ..TrustConfig::default() };
/// let policy = TrustPolicy::new(config, ["runc", "runsc"])?;
/// let annotations = HashMap::from([(
///     "io.kubernetes.cri-o.TrustedSandbox".to_owned(),
///     "false".to_owned(),
/// )]);
/// let decision = policy.decide(&PodTrustInput::new(&annotations))?;
/// assert_eq!(decision.handler, "runsc");
/// assert!(!decision.trusted);
/// assert_eq!(
///     decision.reason,
///     "untrusted by annotation io.kubernetes.cri-o.TrustedSandbox=false: runs on untrusted handler runsc"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The runtime handler the pod runs on; always a known handler.
    pub handler: String,
    /// Whether the policy treats the workload as trusted.
    pub trusted: bool,
    /// One sentence for a person: what the verdict rests on and where the pod
    /// runs.
    pub reason: String,
}
