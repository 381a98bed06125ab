//! What the policy looks at: the requested runtime handler, the trust
//! annotations, and whether the pod is privileged.

use std::collections::HashMap;
use std::fmt;

use crate::error::DecisionError;

/// The trust annotation CRI-O introduced; kept so existing pod specs work.
///
/// Its value must be `true` or `false` (ASCII case ignored, as CRI-O did);
/// anything else makes the decision fail rather than count as trusted.
///
/// # Examples
///
/// ```
/// assert_eq!(trust_policy::CRIO_TRUSTED_SANDBOX_ANNOTATION, "io.kubernetes.cri-o.TrustedSandbox");
/// ```
pub const CRIO_TRUSTED_SANDBOX_ANNOTATION: &str = "io.kubernetes.cri-o.TrustedSandbox";

/// This runtime's own trust annotation, equivalent to
/// [`CRIO_TRUSTED_SANDBOX_ANNOTATION`] and read with the same rules; when a
/// pod carries both, they must agree.
///
/// # Examples
///
/// ```
/// assert_eq!(trust_policy::TRUSTED_SANDBOX_ANNOTATION, "io.cri-server.trusted-sandbox");
/// ```
pub const TRUSTED_SANDBOX_ANNOTATION: &str = "io.cri-server.trusted-sandbox";

/// The facts about one pod sandbox that the trust decision depends on.
///
/// Build it from a CRI `RunPodSandboxRequest`: `runtime_handler` from the
/// request, `annotations` from the sandbox config, and the privilege flags
/// from the Linux security context (`privileged`, and the namespace options
/// for network, PID and IPC being `NODE`).
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use trust_policy::PodTrustInput;
///
/// let annotations = HashMap::from([(
///     "io.kubernetes.cri-o.TrustedSandbox".to_owned(),
///     "false".to_owned(),
/// )]);
/// let input = PodTrustInput { host_network: true, ..PodTrustInput::new(&annotations) };
/// assert!(input.is_privileged());
/// assert_eq!(input.runtime_handler, "");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PodTrustInput<'a> {
    /// The CRI `runtime_handler` (the pod's RuntimeClass handler); empty when
    /// the pod did not ask for one.
    pub runtime_handler: &'a str,
    /// The pod sandbox annotations.
    pub annotations: &'a HashMap<String, String>,
    /// The sandbox security context asks for a privileged sandbox.
    pub privileged: bool,
    /// The pod shares the host's network namespace.
    pub host_network: bool,
    /// The pod shares the host's PID namespace.
    pub host_pid: bool,
    /// The pod shares the host's IPC namespace.
    pub host_ipc: bool,
    /// The pod has a user namespace of its own (`hostUsers: false`): its
    /// root is an unprivileged host user, which the reason says.
    pub user_namespace: bool,
}

impl<'a> PodTrustInput<'a> {
    /// An unprivileged pod with the given annotations and no runtime handler
    /// requested; set the other fields with struct update syntax.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use trust_policy::PodTrustInput;
    ///
    /// let annotations = HashMap::new();
    /// let input = PodTrustInput { runtime_handler: "runsc", ..PodTrustInput::new(&annotations) };
    /// assert!(!input.is_privileged());
    /// ```
    pub fn new(annotations: &'a HashMap<String, String>) -> Self {
        Self {
            runtime_handler: "",
            annotations,
            privileged: false,
            host_network: false,
            host_pid: false,
            host_ipc: false,
            user_namespace: false,
        }
    }

    /// Every reason the pod counts as privileged, in a fixed order; empty for
    /// an unprivileged pod.
    ///
    /// Sharing a host namespace counts because a sandboxing runtime cannot
    /// isolate a pod from a namespace it shares with the host.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use trust_policy::{PodTrustInput, PrivilegeCause};
    ///
    /// let annotations = HashMap::new();
    /// let input = PodTrustInput { host_pid: true, privileged: true, ..PodTrustInput::new(&annotations) };
    /// assert_eq!(
    ///     input.privilege_causes(),
    ///     [PrivilegeCause::SecurityContext, PrivilegeCause::HostPid]
    /// );
    /// ```
    pub fn privilege_causes(&self) -> Vec<PrivilegeCause> {
        [
            (self.privileged, PrivilegeCause::SecurityContext),
            (self.host_network, PrivilegeCause::HostNetwork),
            (self.host_pid, PrivilegeCause::HostPid),
            (self.host_ipc, PrivilegeCause::HostIpc),
        ]
        .into_iter()
        .filter_map(|(set, cause)| set.then_some(cause))
        .collect()
    }

    /// Whether the pod is privileged: a privileged security context, or a
    /// host network, PID or IPC namespace.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use trust_policy::PodTrustInput;
    ///
    /// let annotations = HashMap::new();
    /// assert!(!PodTrustInput::new(&annotations).is_privileged());
    /// assert!(PodTrustInput { host_ipc: true, ..PodTrustInput::new(&annotations) }.is_privileged());
    /// ```
    pub fn is_privileged(&self) -> bool {
        self.privileged || self.host_network || self.host_pid || self.host_ipc
    }

    /// The trust hint the annotations carry, if any.
    ///
    /// Both annotation keys are read; a value other than `true`/`false`
    /// (ASCII case ignored, as CRI-O did) is an error rather than "trusted",
    /// because a typo must not quietly take a pod out of its sandbox.
    pub(crate) fn trust_hint(&self) -> Result<Option<TrustHint>, DecisionError> {
        let cri_o = parse_hint(self.annotations, CRIO_TRUSTED_SANDBOX_ANNOTATION)?;
        let cri_server = parse_hint(self.annotations, TRUSTED_SANDBOX_ANNOTATION)?;
        match (cri_o, cri_server) {
            (None, None) => Ok(None),
            (Some(trusted), None) => Ok(Some(TrustHint {
                trusted,
                keys: &[CRIO_TRUSTED_SANDBOX_ANNOTATION],
            })),
            (None, Some(trusted)) => Ok(Some(TrustHint {
                trusted,
                keys: &[TRUSTED_SANDBOX_ANNOTATION],
            })),
            (Some(cri_o), Some(cri_server)) if cri_o == cri_server => Ok(Some(TrustHint {
                trusted: cri_o,
                keys: &[CRIO_TRUSTED_SANDBOX_ANNOTATION, TRUSTED_SANDBOX_ANNOTATION],
            })),
            (Some(cri_o), Some(cri_server)) => {
                Err(DecisionError::ConflictingHints { cri_o, cri_server })
            }
        }
    }
}

fn parse_hint(
    annotations: &HashMap<String, String>,
    key: &'static str,
) -> Result<Option<bool>, DecisionError> {
    let Some(value) = annotations.get(key) else {
        return Ok(None);
    };
    if value.eq_ignore_ascii_case("true") {
        Ok(Some(true))
    } else if value.eq_ignore_ascii_case("false") {
        Ok(Some(false))
    } else {
        Err(DecisionError::InvalidHint {
            key,
            value: value.clone(),
        })
    }
}

/// One reason a pod counts as privileged.
///
/// # Examples
///
/// ```
/// use trust_policy::PrivilegeCause;
///
/// assert_eq!(PrivilegeCause::HostNetwork.to_string(), "host network");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrivilegeCause {
    /// The sandbox security context sets `privileged`.
    SecurityContext,
    /// The pod uses the host network namespace.
    HostNetwork,
    /// The pod uses the host PID namespace.
    HostPid,
    /// The pod uses the host IPC namespace.
    HostIpc,
}

impl fmt::Display for PrivilegeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SecurityContext => "privileged security context",
            Self::HostNetwork => "host network",
            Self::HostPid => "host PID namespace",
            Self::HostIpc => "host IPC namespace",
        })
    }
}

/// A trust verdict read from the annotations, with the keys it came from so
/// the decision's reason can cite them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrustHint {
    pub(crate) trusted: bool,
    pub(crate) keys: &'static [&'static str],
}

impl fmt::Display for TrustHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.keys {
            [key] => write!(f, "annotation {key}={}", self.trusted),
            keys => {
                f.write_str("annotations ")?;
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    write!(f, "{key}={}", self.trusted)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn hint(pairs: &[(&str, &str)]) -> Result<Option<TrustHint>, DecisionError> {
        PodTrustInput::new(&annotations(pairs)).trust_hint()
    }

    #[test]
    fn no_annotations_means_no_hint() {
        assert_eq!(hint(&[]), Ok(None));
        assert_eq!(hint(&[("io.kubernetes.cri-o.Other", "false")]), Ok(None));
    }

    #[test]
    fn either_key_alone_is_a_hint() {
        let h = hint(&[(CRIO_TRUSTED_SANDBOX_ANNOTATION, "false")])
            .unwrap()
            .unwrap();
        assert!(!h.trusted);
        assert_eq!(
            h.to_string(),
            "annotation io.kubernetes.cri-o.TrustedSandbox=false"
        );
        let h = hint(&[(TRUSTED_SANDBOX_ANNOTATION, "true")])
            .unwrap()
            .unwrap();
        assert!(h.trusted);
        assert_eq!(
            h.to_string(),
            "annotation io.cri-server.trusted-sandbox=true"
        );
    }

    #[test]
    fn agreeing_keys_are_both_cited() {
        let h = hint(&[
            (CRIO_TRUSTED_SANDBOX_ANNOTATION, "FALSE"),
            (TRUSTED_SANDBOX_ANNOTATION, "false"),
        ])
        .unwrap()
        .unwrap();
        assert!(!h.trusted);
        assert_eq!(
            h.to_string(),
            "annotations io.kubernetes.cri-o.TrustedSandbox=false and io.cri-server.trusted-sandbox=false"
        );
    }

    #[test]
    fn disagreeing_keys_are_an_error() {
        assert_eq!(
            hint(&[
                (CRIO_TRUSTED_SANDBOX_ANNOTATION, "true"),
                (TRUSTED_SANDBOX_ANNOTATION, "False"),
            ]),
            Err(DecisionError::ConflictingHints {
                cri_o: true,
                cri_server: false
            })
        );
    }

    #[test]
    fn case_is_ignored_but_nothing_else_is_accepted() {
        for (value, expected) in [("True", true), ("tRUE", true), ("False", false)] {
            let h = hint(&[(TRUSTED_SANDBOX_ANNOTATION, value)])
                .unwrap()
                .unwrap();
            assert_eq!(h.trusted, expected, "{value}");
        }
        for value in [
            "",
            "yes",
            "1",
            "0",
            " true",
            "false\n",
            "truee",
            "untrusted",
        ] {
            assert_eq!(
                hint(&[(CRIO_TRUSTED_SANDBOX_ANNOTATION, value)]),
                Err(DecisionError::InvalidHint {
                    key: CRIO_TRUSTED_SANDBOX_ANNOTATION,
                    value: value.to_owned()
                }),
                "{value:?}"
            );
        }
    }

    #[test]
    fn an_invalid_value_wins_over_a_valid_one() {
        // The key that is wrong gets named, whichever of the two it is.
        assert_eq!(
            hint(&[
                (CRIO_TRUSTED_SANDBOX_ANNOTATION, "false"),
                (TRUSTED_SANDBOX_ANNOTATION, "nope"),
            ]),
            Err(DecisionError::InvalidHint {
                key: TRUSTED_SANDBOX_ANNOTATION,
                value: "nope".to_owned()
            })
        );
    }

    #[test]
    fn every_privilege_flag_counts() {
        let ann = HashMap::new();
        let base = PodTrustInput::new(&ann);
        assert!(base.privilege_causes().is_empty());
        let cases = [
            (
                PodTrustInput {
                    privileged: true,
                    ..base
                },
                PrivilegeCause::SecurityContext,
            ),
            (
                PodTrustInput {
                    host_network: true,
                    ..base
                },
                PrivilegeCause::HostNetwork,
            ),
            (
                PodTrustInput {
                    host_pid: true,
                    ..base
                },
                PrivilegeCause::HostPid,
            ),
            (
                PodTrustInput {
                    host_ipc: true,
                    ..base
                },
                PrivilegeCause::HostIpc,
            ),
        ];
        for (input, cause) in cases {
            assert!(input.is_privileged(), "{cause}");
            assert_eq!(input.privilege_causes(), [cause]);
        }
    }
}
