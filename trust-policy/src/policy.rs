//! The rules that turn a pod's facts into a [`Decision`].

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::config::{PrivilegedUntrusted, TrustConfig, TrustedImages, WorkloadTrust};
use crate::decision::Decision;
use crate::error::{ConfigError, DecisionError};
use crate::input::{PodTrustInput, PrivilegeCause, TrustHint};

/// A validated trust configuration together with the handlers that exist.
///
/// Pure logic, no I/O: cheap to build, safe to share between threads, and
/// [`decide`](Self::decide) only reads.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use trust_policy::{PodTrustInput, TrustConfig, TrustPolicy, WorkloadTrust};
///
/// let config = TrustConfig {
///     untrusted_handler: Some("runsc".into()),
///     default_workload_trust: WorkloadTrust::Untrusted,
///     ..TrustConfig::default()
/// };
/// let policy = TrustPolicy::new(config, ["runc", "runsc"])?;
///
/// let annotations = HashMap::new();
/// let plain = policy.decide(&PodTrustInput::new(&annotations))?;
/// assert_eq!((plain.handler.as_str(), plain.trusted), ("runsc", false));
///
/// // Host-network pods cannot be sandboxed, so the default does not apply.
/// let host = policy.decide(&PodTrustInput { host_network: true, ..PodTrustInput::new(&annotations) })?;
/// assert_eq!((host.handler.as_str(), host.trusted), ("runc", true));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    config: TrustConfig,
    known: BTreeSet<String>,
}

impl TrustPolicy {
    /// Checks `config` against the handlers the daemon has configured.
    ///
    /// Empty names in `known_handlers` are ignored: in CRI an empty
    /// `runtime_handler` means "none requested", so it can never pick one.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `default_handler` is empty, when either configured
    /// handler is not among `known_handlers` (the error names the key), or
    /// when both keys name the same handler.
    ///
    /// # Examples
    ///
    /// ```
    /// use trust_policy::{ConfigError, TrustConfig, TrustPolicy};
    ///
    /// assert!(TrustPolicy::new(TrustConfig::default(), ["runc", "runsc"]).is_ok());
    /// assert!(matches!(
    ///     TrustPolicy::new(TrustConfig::default(), ["crun"]),
    ///     Err(ConfigError::UnknownHandler { key: "default_handler", .. })
    /// ));
    /// ```
    pub fn new<I, S>(config: TrustConfig, known_handlers: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let known: BTreeSet<String> = known_handlers
            .into_iter()
            .map(Into::into)
            .filter(|name| !name.is_empty())
            .collect();
        if config.default_handler.is_empty() {
            return Err(ConfigError::EmptyDefaultHandler);
        }
        let unknown = |key, handler: &str| ConfigError::UnknownHandler {
            key,
            handler: handler.to_owned(),
            known: known.iter().cloned().collect(),
        };
        if !known.contains(&config.default_handler) {
            return Err(unknown("default_handler", &config.default_handler));
        }
        if let Some(untrusted) = &config.untrusted_handler {
            if !known.contains(untrusted) {
                return Err(unknown("untrusted_handler", untrusted));
            }
            if *untrusted == config.default_handler {
                return Err(ConfigError::SameHandler {
                    handler: untrusted.clone(),
                });
            }
        }
        Ok(Self { config, known })
    }

    /// The configuration this policy was built from.
    ///
    /// # Examples
    ///
    /// ```
    /// use trust_policy::{TrustConfig, TrustPolicy};
    ///
    /// let policy = TrustPolicy::new(TrustConfig::default(), ["runc"])?;
    /// assert_eq!(policy.config().default_handler, "runc");
    /// # Ok::<(), trust_policy::ConfigError>(())
    /// ```
    pub fn config(&self) -> &TrustConfig {
        &self.config
    }

    /// The known handler names, sorted.
    ///
    /// # Examples
    ///
    /// ```
    /// use trust_policy::{TrustConfig, TrustPolicy};
    ///
    /// let policy = TrustPolicy::new(TrustConfig::default(), ["runsc", "runc", ""])?;
    /// assert_eq!(policy.known_handlers().collect::<Vec<_>>(), ["runc", "runsc"]);
    /// # Ok::<(), trust_policy::ConfigError>(())
    /// ```
    pub fn known_handlers(&self) -> impl Iterator<Item = &str> {
        self.known.iter().map(String::as_str)
    }

    /// Decides which handler runs the pod, and why.
    ///
    /// The rules, in order (CRI-O's, with invalid input made an error and
    /// every pod-author input able only to *lower* trust, never to raise it):
    ///
    /// 1. The trust annotations must be `true`/`false` and must agree, even
    ///    when a handler is requested, so a typo is caught rather than hidden.
    /// 2. A requested `runtime_handler` (RuntimeClass, which only a cluster
    ///    administrator defines) selects its handler; it must be known. The
    ///    pod is untrusted exactly when that handler is the untrusted
    ///    handler. An untrusted hint together with any other handler is a
    ///    contradiction and refused ([`DecisionError::HandlerContradictsHint`]),
    ///    never resolved silently in favour of the less isolated runtime.
    /// 3. Otherwise the pod is untrusted if an annotation says so, or if
    ///    `default_workload_trust = "untrusted"` and the pod is not
    ///    privileged. A `true` hint cannot lift the untrusted default (any
    ///    pod author can write an annotation) unless
    ///    `trusted_images = "verified"`: then every container's image must
    ///    prove itself ([`TrustPolicy::admit_image`]).
    /// 4. Trusted pods run on `default_handler`; untrusted ones on
    ///    `untrusted_handler`, or `default_handler` when none is configured.
    /// 5. A privileged pod annotated untrusted runs on `default_handler` with
    ///    a warning under `privileged_untrusted = "trusted-runtime"`, and is
    ///    refused under `"reject"`.
    ///
    /// # Errors
    ///
    /// [`DecisionError`] for an unknown requested handler, an invalid or
    /// conflicting trust annotation, a requested handler that contradicts an
    /// untrusted hint, or a privileged untrusted pod under
    /// `privileged_untrusted = "reject"`.
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
    /// let input = PodTrustInput { privileged: true, ..PodTrustInput::new(&annotations) };
    /// let decision = policy.decide(&input)?;
    /// assert_eq!(decision.handler, "runc");
    /// assert_eq!(
    ///     decision.reason,
    ///     "untrusted by annotation io.kubernetes.cri-o.TrustedSandbox=false, \
    ///      but privileged (privileged security context): runs on trusted handler runc \
    ///      (privileged_untrusted=trusted-runtime)"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decide(&self, input: &PodTrustInput<'_>) -> Result<Decision, DecisionError> {
        let hint = input.trust_hint()?;
        let causes = input.privilege_causes();
        if input.user_namespace && !causes.is_empty() {
            return Err(DecisionError::UserNamespaceWithPrivilege {
                causes: join(&causes),
            });
        }
        let mut decision = if input.runtime_handler.is_empty() {
            self.decide_by_trust(hint, &causes)?
        } else {
            self.decide_explicit(input.runtime_handler, hint)?
        };
        if input.user_namespace {
            decision
                .reason
                .push_str("; in its own user namespace (hostUsers: false): not privileged");
        }
        tracing::debug!(
            handler = %decision.handler,
            trusted = decision.trusted,
            reason = %decision.reason,
            "trust decision"
        );
        Ok(decision)
    }

    fn decide_explicit(
        &self,
        handler: &str,
        hint: Option<TrustHint>,
    ) -> Result<Decision, DecisionError> {
        if !self.known.contains(handler) {
            return Err(DecisionError::UnknownHandler {
                handler: handler.to_owned(),
                known: self.known.iter().cloned().collect(),
            });
        }
        let untrusted = self.config.untrusted_handler.as_deref();
        let mut reason = format!("runtime handler {handler} requested explicitly (RuntimeClass)");
        match (hint, untrusted) {
            // The pod says it must be sandboxed and asks for a handler that
            // is not the sandbox: neither may win silently.
            (Some(hint), Some(untrusted)) if !hint.trusted && untrusted != handler => {
                return Err(DecisionError::HandlerContradictsHint {
                    handler: handler.to_owned(),
                    hint: hint.to_string(),
                    untrusted_handler: untrusted.to_owned(),
                });
            }
            (Some(hint), Some(untrusted)) if !hint.trusted && untrusted == handler => {
                let _ = write!(reason, "; {hint} agrees");
            }
            (Some(hint), _) => {
                // The writer is a String, which cannot fail.
                let _ = write!(reason, "; {hint} ignored");
            }
            (None, _) => {}
        }
        Ok(Decision {
            handler: handler.to_owned(),
            trusted: untrusted != Some(handler),
            reason,
        })
    }

    fn decide_by_trust(
        &self,
        hint: Option<TrustHint>,
        privilege: &[PrivilegeCause],
    ) -> Result<Decision, DecisionError> {
        let (trusted, why) = self.verdict(hint, privilege);
        self.place(trusted, why, privilege)
    }

    /// Whether the pod is trusted, and why, from the hint, the node's
    /// default and the pod's privileges.
    fn verdict(&self, hint: Option<TrustHint>, privilege: &[PrivilegeCause]) -> (bool, String) {
        let privileged = !privilege.is_empty();
        match (hint, self.config.default_workload_trust) {
            (Some(hint), WorkloadTrust::Untrusted) if hint.trusted && privileged => (
                true,
                format!(
                    "trusted despite default_workload_trust=untrusted because privileged ({}); \
                     {hint}",
                    join(privilege)
                ),
            ),
            // Evidence makes the hint safe: every container's image must
            // then be verified before it runs outside the sandbox
            // (`admit_image`).
            (Some(hint), WorkloadTrust::Untrusted)
                if hint.trusted && self.config.trusted_images == TrustedImages::Verified =>
            {
                (
                    true,
                    format!(
                        "trusted by {hint} despite default_workload_trust=untrusted, because \
                         trusted_images=verified admits only signed images"
                    ),
                )
            }
            // Any pod author can write the annotation: it can lower trust,
            // never lift the node's untrusted default (CRI-O's rule), unless
            // images are checked (above).
            (Some(hint), WorkloadTrust::Untrusted) if hint.trusted => (
                false,
                format!(
                    "untrusted by default (default_workload_trust=untrusted); \
                     {hint} cannot lift the default"
                ),
            ),
            (Some(hint), _) => {
                let verdict = if hint.trusted { "trusted" } else { "untrusted" };
                (hint.trusted, format!("{verdict} by {hint}"))
            }
            (None, WorkloadTrust::Trusted) => (
                true,
                "trusted by default (default_workload_trust=trusted)".to_owned(),
            ),
            // A sandboxing runtime cannot contain a pod that shares host
            // namespaces or asks for privileges, so the default yields.
            (None, WorkloadTrust::Untrusted) if privileged => (
                true,
                format!(
                    "trusted despite default_workload_trust=untrusted because privileged ({})",
                    join(privilege)
                ),
            ),
            (None, WorkloadTrust::Untrusted) => (
                false,
                "untrusted by default (default_workload_trust=untrusted)".to_owned(),
            ),
        }
    }

    /// The handler a pod of this verdict runs on: the trusted one, the
    /// untrusted one, or none (a privileged untrusted pod under
    /// `privileged_untrusted = reject`).
    fn place(
        &self,
        trusted: bool,
        why: String,
        privilege: &[PrivilegeCause],
    ) -> Result<Decision, DecisionError> {
        let trusted_handler = &self.config.default_handler;
        let privileged = !privilege.is_empty();
        if trusted {
            return Ok(Decision {
                handler: trusted_handler.clone(),
                trusted,
                reason: format!("{why}: runs on trusted handler {trusted_handler}"),
            });
        }
        // Only a `false` annotation can make a privileged pod untrusted.
        if privileged {
            let mode = self.config.privileged_untrusted;
            return match mode {
                PrivilegedUntrusted::Reject => Err(DecisionError::PrivilegedUntrustedRejected {
                    reason: format!(
                        "pod is privileged ({}) and {why}; privileged_untrusted={mode} refuses to run it",
                        join(privilege)
                    ),
                }),
                PrivilegedUntrusted::TrustedRuntime => {
                    let reason = format!(
                        "{why}, but privileged ({}): runs on trusted handler {trusted_handler} \
                         (privileged_untrusted={mode})",
                        join(privilege)
                    );
                    tracing::warn!(handler = %trusted_handler, "{reason}");
                    Ok(Decision {
                        handler: trusted_handler.clone(),
                        trusted,
                        reason,
                    })
                }
            };
        }
        Ok(match &self.config.untrusted_handler {
            Some(untrusted) => Decision {
                handler: untrusted.clone(),
                trusted,
                reason: format!("{why}: runs on untrusted handler {untrusted}"),
            },
            None => Decision {
                handler: trusted_handler.clone(),
                trusted,
                reason: format!(
                    "{why}, but no untrusted_handler is configured: \
                     runs on trusted handler {trusted_handler}"
                ),
            },
        })
    }
}

fn join(causes: &[PrivilegeCause]) -> String {
    causes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
