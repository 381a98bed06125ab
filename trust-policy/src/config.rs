//! The operator's settings: which handler runs trusted pods, which runs
//! untrusted ones, and what to do by default and with privileged pods.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ParseSettingError;

/// The trust settings, as they appear under `[runtime]` in the daemon's TOML.
///
/// Missing keys take their defaults; unknown keys are an error so a typo does
/// not silently fall back to a default. The handler names must be among the
/// known handlers given to [`TrustPolicy::new`](crate::TrustPolicy::new).
///
/// # Examples
///
/// ```
/// use trust_policy::{PrivilegedUntrusted, TrustConfig, WorkloadTrust};
///
/// let config: TrustConfig = toml::from_str(r#"
///     default_handler = "runc"
///     untrusted_handler = "runsc"
///     default_workload_trust = "untrusted"
///     privileged_untrusted = "reject"
/// "#)?;
/// assert_eq!(config.untrusted_handler.as_deref(), Some("runsc"));
/// assert_eq!(config.default_workload_trust, WorkloadTrust::Untrusted);
/// assert_eq!(config.privileged_untrusted, PrivilegedUntrusted::Reject);
///
/// let defaults: TrustConfig = toml::from_str("")?;
/// assert_eq!(defaults, TrustConfig::default());
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// The runtime handler for trusted workloads; `runc` by default.
    pub default_handler: String,
    /// The runtime handler for untrusted workloads, e.g. `runsc`; `None` (an
    /// empty string in TOML, the default) runs them on `default_handler`.
    #[serde(with = "empty_is_none")]
    pub untrusted_handler: Option<String>,
    /// Whether a pod is trusted unless it says otherwise. Under
    /// `untrusted`, every pod that is not privileged is untrusted, whatever
    /// its annotations say: a `true` hint cannot lift this default.
    pub default_workload_trust: WorkloadTrust,
    /// What to do with a pod that is privileged yet annotated untrusted.
    pub privileged_untrusted: PrivilegedUntrusted,
    /// Which images may run outside the sandbox: any (the default), or only
    /// images a signature verified. Under `verified`, a `true` hint may
    /// lift an untrusted default, because the images are then checked.
    pub trusted_images: TrustedImages,
}

impl Default for TrustConfig {
    /// `runc` for everything, every pod trusted: the behaviour of a runtime
    /// with no sandboxing handler.
    ///
    /// # Examples
    ///
    /// ```
    /// use trust_policy::TrustConfig;
    ///
    /// let config = TrustConfig::default();
    /// assert_eq!(config.default_handler, "runc");
    /// assert_eq!(config.untrusted_handler, None);
    /// ```
    fn default() -> Self {
        Self {
            default_handler: "runc".to_owned(),
            untrusted_handler: None,
            default_workload_trust: WorkloadTrust::default(),
            privileged_untrusted: PrivilegedUntrusted::default(),
            trusted_images: TrustedImages::default(),
        }
    }
}

/// TOML has no null, so the configuration spells "no untrusted handler" as
/// `""`; the Rust side gets an `Option` so nobody compares with `""`.
mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_deref().unwrap_or(""))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        let value = String::deserialize(deserializer)?;
        Ok((!value.is_empty()).then_some(value))
    }
}

/// Implements `as_str`, `Display` and `FromStr` from one name table, so the
/// three can never disagree with each other (serde's names are checked
/// against them in the tests).
macro_rules! setting_names {
    ($ty:ident, $setting:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            const NAMES: &'static [&'static str] = &[$($name),+];

            /// The configuration spelling of this value.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("use trust_policy::", stringify!($ty), ";")]
            #[doc = concat!("for value in [", $("trust_policy::", stringify!($ty), "::", stringify!($variant), ", ",)+ "] {")]
            ///     assert_eq!(value.as_str().parse(), Ok(value));
            /// }
            /// ```
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = ParseSettingError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($name => Ok(Self::$variant),)+
                    _ => Err(ParseSettingError {
                        setting: $setting,
                        value: value.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}

/// Whether a workload is trusted when its pod carries no trust annotation.
///
/// # Examples
///
/// ```
/// use trust_policy::WorkloadTrust;
///
/// assert_eq!(WorkloadTrust::default(), WorkloadTrust::Trusted);
/// assert_eq!("untrusted".parse(), Ok(WorkloadTrust::Untrusted));
/// assert_eq!(WorkloadTrust::Untrusted.to_string(), "untrusted");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadTrust {
    /// Pods run on the default handler unless annotated untrusted.
    #[default]
    Trusted,
    /// Unprivileged pods run on the untrusted handler unless annotated trusted.
    Untrusted,
}

setting_names!(WorkloadTrust, "default_workload_trust", {
    Trusted => "trusted",
    Untrusted => "untrusted",
});

/// What to do with a pod annotated untrusted that is also privileged, which a
/// sandboxing runtime cannot honour.
///
/// # Examples
///
/// ```
/// use trust_policy::PrivilegedUntrusted;
///
/// assert_eq!(PrivilegedUntrusted::default(), PrivilegedUntrusted::TrustedRuntime);
/// assert_eq!("reject".parse(), Ok(PrivilegedUntrusted::Reject));
/// assert_eq!(PrivilegedUntrusted::TrustedRuntime.to_string(), "trusted-runtime");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrivilegedUntrusted {
    /// Run it on the trusted handler and warn (CRI-O's behaviour).
    #[default]
    TrustedRuntime,
    /// Refuse to run it.
    Reject,
}

setting_names!(PrivilegedUntrusted, "privileged_untrusted", {
    TrustedRuntime => "trusted-runtime",
    Reject => "reject",
});

/// Which images may run on a handler other than the untrusted one.
///
/// # Examples
///
/// ```
/// use trust_policy::TrustedImages;
///
/// assert_eq!(TrustedImages::default(), TrustedImages::Any);
/// assert_eq!("verified".parse(), Ok(TrustedImages::Verified));
/// assert_eq!(TrustedImages::Verified.to_string(), "verified");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustedImages {
    /// Any image the pull policy admits (the behaviour without signatures).
    #[default]
    Any,
    /// Only images a `sigstoreSigned` requirement verified at pull;
    /// `insecureAcceptAnything` is not evidence.
    Verified,
}

setting_names!(TrustedImages, "trusted_images", {
    Any => "any",
    Verified => "verified",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_toml_parses() {
        let config: TrustConfig = toml::from_str(
            r#"
            default_handler = "runc"            # runtime for trusted workloads
            untrusted_handler = "runsc"         # "" = none
            default_workload_trust = "trusted"  # or "untrusted"
            privileged_untrusted = "trusted-runtime"   # or "reject"
            "#,
        )
        .unwrap();
        assert_eq!(
            config,
            TrustConfig {
                default_handler: "runc".into(),
                untrusted_handler: Some("runsc".into()),
                default_workload_trust: WorkloadTrust::Trusted,
                privileged_untrusted: PrivilegedUntrusted::TrustedRuntime,
                trusted_images: TrustedImages::Any,
            }
        );
    }

    #[test]
    fn empty_untrusted_handler_means_none() {
        let config: TrustConfig = toml::from_str(r#"untrusted_handler = """#).unwrap();
        assert_eq!(config.untrusted_handler, None);
        assert_eq!(config, TrustConfig::default());
    }

    #[test]
    fn round_trips_through_toml() {
        for config in [
            TrustConfig::default(),
            TrustConfig {
                default_handler: "crun".into(),
                untrusted_handler: Some("runsc".into()),
                default_workload_trust: WorkloadTrust::Untrusted,
                privileged_untrusted: PrivilegedUntrusted::Reject,
                trusted_images: TrustedImages::Verified,
            },
        ] {
            let text = toml::to_string(&config).unwrap();
            assert_eq!(
                toml::from_str::<TrustConfig>(&text).unwrap(),
                config,
                "{text}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_values_are_errors() {
        let err = toml::from_str::<TrustConfig>(r#"untrusted_handlr = "runsc""#).unwrap_err();
        assert!(err.to_string().contains("untrusted_handlr"), "{err}");
        let err =
            toml::from_str::<TrustConfig>(r#"default_workload_trust = "Trusted""#).unwrap_err();
        assert!(err.to_string().contains("Trusted"), "{err}");
        let err = toml::from_str::<TrustConfig>(r#"privileged_untrusted = "trusted_runtime""#)
            .unwrap_err();
        assert!(err.to_string().contains("trusted_runtime"), "{err}");
    }

    /// The daemon keeps its handler tables next to these keys under
    /// `[runtime]`; flattening must still parse and still catch typos.
    #[test]
    fn embeds_in_a_larger_table_with_flatten() {
        #[derive(Debug, Deserialize)]
        struct Runtime {
            #[serde(flatten)]
            trust: TrustConfig,
            #[serde(default)]
            handlers: std::collections::BTreeMap<String, toml::Value>,
        }
        #[derive(Debug, Deserialize)]
        struct Daemon {
            runtime: Runtime,
        }
        let daemon: Daemon = toml::from_str(
            r#"
            [runtime]
            untrusted_handler = "runsc"
            default_workload_trust = "untrusted"
            [runtime.handlers.runc]
            path = "/usr/sbin/runc"
            [runtime.handlers.runsc]
            path = "/usr/bin/runsc"
            "#,
        )
        .unwrap();
        assert_eq!(
            daemon.runtime.trust.untrusted_handler.as_deref(),
            Some("runsc")
        );
        assert_eq!(
            daemon.runtime.trust.default_workload_trust,
            WorkloadTrust::Untrusted
        );
        assert_eq!(daemon.runtime.handlers.len(), 2);
    }

    /// Display/FromStr and serde each carry their own copy of the names;
    /// this keeps them equal.
    #[test]
    fn serde_names_match_display_names() {
        fn check<T>(values: &[T])
        where
            T: Copy + fmt::Display + FromStr<Err = ParseSettingError> + Serialize + PartialEq,
            T: for<'de> Deserialize<'de> + fmt::Debug,
        {
            #[derive(Serialize, Deserialize)]
            struct Wrap<T> {
                v: T,
            }
            for &value in values {
                let text = toml::to_string(&Wrap { v: value }).unwrap();
                assert_eq!(text.trim(), format!("v = \"{value}\""));
                assert_eq!(value.to_string().parse::<T>().unwrap(), value);
                let back: Wrap<T> = toml::from_str(&text).unwrap();
                assert_eq!(back.v, value);
            }
        }
        check(&[WorkloadTrust::Trusted, WorkloadTrust::Untrusted]);
        check(&[
            PrivilegedUntrusted::TrustedRuntime,
            PrivilegedUntrusted::Reject,
        ]);
        check(&[TrustedImages::Any, TrustedImages::Verified]);
    }

    #[test]
    fn parse_errors_list_the_accepted_values() {
        let err = "always".parse::<PrivilegedUntrusted>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "privileged_untrusted: unknown value \"always\"; expected one of: trusted-runtime, reject"
        );
    }
}
