//! Tests for the rules: hand-written golden rows with exact reasons, an
//! exhaustive table over every input combination checked against an oracle
//! written as a flat first-match table, and properties over random input.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;
use crate::evidence::ImageEvidence;
use crate::input::{CRIO_TRUSTED_SANDBOX_ANNOTATION as CRIO, TRUSTED_SANDBOX_ANNOTATION as OURS};

const KNOWN: [&str; 3] = ["runc", "runsc", "kata"];

fn policy(
    untrusted: Option<&str>,
    default_trust: WorkloadTrust,
    mode: PrivilegedUntrusted,
) -> TrustPolicy {
    policy_with(untrusted, default_trust, mode, TrustedImages::Any)
}

fn policy_with(
    untrusted: Option<&str>,
    default_trust: WorkloadTrust,
    mode: PrivilegedUntrusted,
    images: TrustedImages,
) -> TrustPolicy {
    TrustPolicy::new(
        TrustConfig {
            default_handler: "runc".into(),
            untrusted_handler: untrusted.map(Into::into),
            default_workload_trust: default_trust,
            privileged_untrusted: mode,
            trusted_images: images,
        },
        KNOWN,
    )
    .expect("test configuration is valid")
}

fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Captures what `decide` logs at WARN and above.
fn capture_warnings<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

// ---------------------------------------------------------------------------
// Golden rows: exact outcome and exact reason, written out by hand.

struct Golden {
    untrusted: Option<&'static str>,
    default_trust: WorkloadTrust,
    mode: PrivilegedUntrusted,
    runtime_handler: &'static str,
    annotations: &'static [(&'static str, &'static str)],
    host_network: bool,
    privileged: bool,
    expect: Result<(&'static str, bool, &'static str), &'static str>,
}

#[test]
fn golden_rows() {
    use PrivilegedUntrusted::{Reject, TrustedRuntime};
    use WorkloadTrust::{Trusted, Untrusted};
    let rows = [
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: TrustedRuntime,
            runtime_handler: "",
            annotations: &[],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runc",
                true,
                "trusted by default (default_workload_trust=trusted): runs on trusted handler runc",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Untrusted,
            mode: TrustedRuntime,
            runtime_handler: "",
            annotations: &[],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runsc",
                false,
                "untrusted by default (default_workload_trust=untrusted): runs on untrusted handler runsc",
            )),
        },
        Golden {
            untrusted: None,
            default_trust: Untrusted,
            mode: TrustedRuntime,
            runtime_handler: "",
            annotations: &[],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runc",
                false,
                "untrusted by default (default_workload_trust=untrusted), but no untrusted_handler \
                 is configured: runs on trusted handler runc",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Untrusted,
            mode: Reject,
            runtime_handler: "",
            annotations: &[],
            host_network: true,
            privileged: true,
            expect: Ok((
                "runc",
                true,
                "trusted despite default_workload_trust=untrusted because privileged \
                 (privileged security context, host network): runs on trusted handler runc",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Untrusted,
            mode: TrustedRuntime,
            runtime_handler: "",
            annotations: &[(OURS, "true")],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runsc",
                false,
                "untrusted by default (default_workload_trust=untrusted); annotation \
                 io.cri-server.trusted-sandbox=true cannot lift the default: runs on untrusted \
                 handler runsc",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Untrusted,
            mode: TrustedRuntime,
            runtime_handler: "",
            annotations: &[(CRIO, "true")],
            host_network: false,
            privileged: true,
            expect: Ok((
                "runc",
                true,
                "trusted despite default_workload_trust=untrusted because privileged \
                 (privileged security context); annotation io.kubernetes.cri-o.TrustedSandbox=true: \
                 runs on trusted handler runc",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: TrustedRuntime,
            runtime_handler: "",
            annotations: &[(CRIO, "true")],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runc",
                true,
                "trusted by annotation io.kubernetes.cri-o.TrustedSandbox=true: runs on trusted handler runc",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: TrustedRuntime,
            runtime_handler: "",
            annotations: &[(CRIO, "false"), (OURS, "False")],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runsc",
                false,
                "untrusted by annotations io.kubernetes.cri-o.TrustedSandbox=false and \
                 io.cri-server.trusted-sandbox=false: runs on untrusted handler runsc",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: TrustedRuntime,
            runtime_handler: "",
            annotations: &[(CRIO, "false")],
            host_network: true,
            privileged: false,
            expect: Ok((
                "runc",
                false,
                "untrusted by annotation io.kubernetes.cri-o.TrustedSandbox=false, but privileged \
                 (host network): runs on trusted handler runc (privileged_untrusted=trusted-runtime)",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: Reject,
            runtime_handler: "",
            annotations: &[(CRIO, "false")],
            host_network: true,
            privileged: false,
            expect: Err(
                "pod is privileged (host network) and untrusted by annotation \
                 io.kubernetes.cri-o.TrustedSandbox=false; privileged_untrusted=reject refuses to run it",
            ),
        },
        Golden {
            untrusted: None,
            default_trust: Trusted,
            mode: Reject,
            runtime_handler: "",
            annotations: &[(OURS, "false")],
            host_network: false,
            privileged: true,
            expect: Err(
                "pod is privileged (privileged security context) and untrusted by annotation \
                 io.cri-server.trusted-sandbox=false; privileged_untrusted=reject refuses to run it",
            ),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: Reject,
            runtime_handler: "runsc",
            annotations: &[(CRIO, "true")],
            host_network: true,
            privileged: false,
            expect: Ok((
                "runsc",
                false,
                "runtime handler runsc requested explicitly (RuntimeClass); \
                 annotation io.kubernetes.cri-o.TrustedSandbox=true ignored",
            )),
        },
        Golden {
            untrusted: None,
            default_trust: Untrusted,
            mode: TrustedRuntime,
            runtime_handler: "runsc",
            annotations: &[],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runsc",
                true,
                "runtime handler runsc requested explicitly (RuntimeClass)",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Untrusted,
            mode: TrustedRuntime,
            runtime_handler: "kata",
            annotations: &[(OURS, "false")],
            host_network: false,
            privileged: false,
            expect: Err(
                "runtime handler \"kata\" (RuntimeClass) contradicts annotation \
                 io.cri-server.trusted-sandbox=false: untrusted pods run on \"runsc\"; drop the \
                 annotation or request \"runsc\"",
            ),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: TrustedRuntime,
            runtime_handler: "runc",
            annotations: &[(CRIO, "false")],
            host_network: false,
            privileged: false,
            expect: Err(
                "runtime handler \"runc\" (RuntimeClass) contradicts annotation \
                 io.kubernetes.cri-o.TrustedSandbox=false: untrusted pods run on \"runsc\"; drop \
                 the annotation or request \"runsc\"",
            ),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: TrustedRuntime,
            runtime_handler: "runsc",
            annotations: &[(CRIO, "false")],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runsc",
                false,
                "runtime handler runsc requested explicitly (RuntimeClass); \
                 annotation io.kubernetes.cri-o.TrustedSandbox=false agrees",
            )),
        },
        Golden {
            untrusted: None,
            default_trust: Untrusted,
            mode: TrustedRuntime,
            runtime_handler: "runc",
            annotations: &[(CRIO, "false")],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runc",
                true,
                "runtime handler runc requested explicitly (RuntimeClass); \
                 annotation io.kubernetes.cri-o.TrustedSandbox=false ignored",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Untrusted,
            mode: TrustedRuntime,
            runtime_handler: "runc",
            annotations: &[],
            host_network: false,
            privileged: false,
            expect: Ok((
                "runc",
                true,
                "runtime handler runc requested explicitly (RuntimeClass)",
            )),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: TrustedRuntime,
            runtime_handler: "youki",
            annotations: &[],
            host_network: false,
            privileged: false,
            expect: Err("runtime handler \"youki\" is not configured; known handlers: kata, runc, runsc"),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: TrustedRuntime,
            runtime_handler: "",
            annotations: &[(CRIO, "yes")],
            host_network: false,
            privileged: false,
            expect: Err(
                "pod annotation io.kubernetes.cri-o.TrustedSandbox=\"yes\": \
                 a trust hint must be \"true\" or \"false\"",
            ),
        },
        Golden {
            untrusted: Some("runsc"),
            default_trust: Trusted,
            mode: TrustedRuntime,
            runtime_handler: "runc",
            annotations: &[(CRIO, "true"), (OURS, "false")],
            host_network: false,
            privileged: false,
            expect: Err(
                "pod annotations io.kubernetes.cri-o.TrustedSandbox=true and \
                 io.cri-server.trusted-sandbox=false disagree on whether the pod is trusted",
            ),
        },
    ];
    for (i, row) in rows.iter().enumerate() {
        let ann = annotations(row.annotations);
        let input = PodTrustInput {
            runtime_handler: row.runtime_handler,
            host_network: row.host_network,
            privileged: row.privileged,
            ..PodTrustInput::new(&ann)
        };
        let got = policy(row.untrusted, row.default_trust, row.mode)
            .decide(&input)
            .map(|d| (d.handler, d.trusted, d.reason))
            .map_err(|e| e.to_string());
        let want = row
            .expect
            .map(|(h, t, r)| (h.to_owned(), t, r.to_owned()))
            .map_err(ToOwned::to_owned);
        assert_eq!(got, want, "golden row {i}");
    }
}

// ---------------------------------------------------------------------------
// Exhaustive table.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    Absent,
    True,
    False,
    Garbage,
}

#[derive(Debug, Clone, Copy)]
enum HintKeys {
    CriO,
    Ours,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Runs {
        handler: &'static str,
        trusted: bool,
        warns: bool,
    },
    UnknownHandler,
    InvalidHint,
    Rejected,
    Contradiction,
}

fn runs(handler: &'static str, trusted: bool) -> Expect {
    Expect::Runs {
        handler,
        trusted,
        warns: false,
    }
}

/// Whether a container of an image with (`verified`) or without signature
/// evidence may run in a pod on `handler`: the image half of the table.
fn image_oracle(
    handler: &str,
    untrusted: Option<&str>,
    images: TrustedImages,
    verified: bool,
) -> bool {
    match (images, untrusted == Some(handler), verified) {
        (TrustedImages::Any, _, _) => true,
        (TrustedImages::Verified, true, _) => true,
        (TrustedImages::Verified, false, verified) => verified,
    }
}

/// The specification as a flat first-match table. It is deliberately shaped
/// unlike `decide` (which first forms a verdict, then places it): each row
/// names the inputs it matches and the outcome, so a reader can check rows
/// against the issue text one by one.
fn oracle(
    explicit: Option<&'static str>,
    hint: Hint,
    default_trust: WorkloadTrust,
    privileged: bool,
    untrusted_configured: bool,
    mode: PrivilegedUntrusted,
    images: TrustedImages,
) -> Expect {
    use Expect::*;
    use PrivilegedUntrusted::{Reject, TrustedRuntime};
    use WorkloadTrust::{Trusted, Untrusted};
    // Only checked images make the hint safe enough to lift the default.
    if (explicit, hint, default_trust, privileged, images)
        == (None, Hint::True, Untrusted, false, TrustedImages::Verified)
    {
        return runs("runc", true);
    }
    #[rustfmt::skip]
    let expect = match (explicit, hint, default_trust, privileged, untrusted_configured, mode) {
        // explicit    hint           default    priv   untrusted cfg  mode
        (_,            Hint::Garbage, _,         _,     _,     _)              => InvalidHint,
        (Some("youki"), _,            _,         _,     _,     _)              => UnknownHandler,
        (Some("runsc"), _,            _,         _,     true,  _)              => runs("runsc", false),
        (Some(_),       Hint::False,  _,         _,     true,  _)              => Contradiction,
        (Some(h),       _,            _,         _,     _,     _)              => runs(h, true),
        (None,         Hint::True,    Trusted,   _,     _,     _)              => runs("runc", true),
        (None,         Hint::True,    Untrusted, true,  _,     _)              => runs("runc", true),
        (None,         Hint::True,    Untrusted, false, true,  _)              => runs("runsc", false),
        (None,         Hint::True,    Untrusted, false, false, _)              => runs("runc", false),
        (None,         Hint::False,   _,         true,  _,     Reject)         => Rejected,
        (None,         Hint::False,   _,         true,  _,     TrustedRuntime) => Runs { handler: "runc", trusted: false, warns: true },
        (None,         Hint::False,   _,         false, true,  _)              => runs("runsc", false),
        (None,         Hint::False,   _,         false, false, _)              => runs("runc", false),
        (None,         Hint::Absent,  Trusted,   _,     _,     _)              => runs("runc", true),
        (None,         Hint::Absent,  Untrusted, true,  _,     _)              => runs("runc", true),
        (None,         Hint::Absent,  Untrusted, false, true,  _)              => runs("runsc", false),
        (None,         Hint::Absent,  Untrusted, false, false, _)              => runs("runc", false),
    };
    expect
}

#[test]
fn every_combination_matches_the_oracle() {
    let privilege_sets: [&[PrivilegeCause]; 6] = [
        &[],
        &[PrivilegeCause::SecurityContext],
        &[PrivilegeCause::HostNetwork],
        &[PrivilegeCause::HostPid],
        &[PrivilegeCause::HostIpc],
        &[
            PrivilegeCause::SecurityContext,
            PrivilegeCause::HostNetwork,
            PrivilegeCause::HostPid,
            PrivilegeCause::HostIpc,
        ],
    ];
    let mut rows = 0;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for hint in [Hint::Absent, Hint::True, Hint::False, Hint::Garbage] {
        for keys in [HintKeys::CriO, HintKeys::Ours, HintKeys::Both] {
            if hint == Hint::Absent && !matches!(keys, HintKeys::CriO) {
                continue;
            }
            for default_trust in [WorkloadTrust::Trusted, WorkloadTrust::Untrusted] {
                for causes in privilege_sets {
                    for untrusted in [Some("runsc"), None] {
                        for explicit in [None, Some("runc"), Some("runsc"), Some("youki")] {
                            for (mode, images) in MODES_AND_IMAGES {
                                rows += 1;
                                let expect = oracle(
                                    explicit,
                                    hint,
                                    default_trust,
                                    !causes.is_empty(),
                                    untrusted.is_some(),
                                    mode,
                                    images,
                                );
                                *outcomes.entry(format!("{expect:?}")).or_default() += 1;
                                let placed = check_row(
                                    hint,
                                    keys,
                                    default_trust,
                                    causes,
                                    untrusted,
                                    explicit,
                                    (mode, images),
                                    expect,
                                );
                                if let Some((policy, decision)) = placed {
                                    check_images(&policy, &decision, untrusted, images);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(rows, 10 * 2 * 6 * 2 * 4 * 4);
    // Every outcome the table can name is reached: four errors and five
    // placements (runc trusted/untrusted/untrusted-with-warning, runsc
    // untrusted, runsc trusted when requested by name without being the
    // untrusted handler).
    assert_eq!(outcomes.len(), 9, "{outcomes:#?}");
}

/// Every `privileged_untrusted` with every `trusted_images`.
const MODES_AND_IMAGES: [(PrivilegedUntrusted, TrustedImages); 4] = [
    (PrivilegedUntrusted::TrustedRuntime, TrustedImages::Any),
    (PrivilegedUntrusted::Reject, TrustedImages::Any),
    (PrivilegedUntrusted::TrustedRuntime, TrustedImages::Verified),
    (PrivilegedUntrusted::Reject, TrustedImages::Verified),
];

/// A placed pod's containers, with and without signature evidence, against
/// [`image_oracle`].
fn check_images(
    policy: &TrustPolicy,
    pod: &Decision,
    untrusted: Option<&str>,
    images: TrustedImages,
) {
    for verified in [true, false] {
        let evidence = ImageEvidence {
            image: "registry.test/app:1".into(),
            verified,
            summary: if verified {
                "signed by key k"
            } else {
                "unsigned"
            }
            .into(),
        };
        let row = format!("pod on {} ({images}), verified={verified}", pod.handler);
        match (
            image_oracle(&pod.handler, untrusted, images, verified),
            policy.admit_image(pod, &evidence),
        ) {
            (true, Ok(admission)) => assert_eq!(admission.evidence, evidence, "{row}"),
            (false, Err(err @ DecisionError::UnverifiedImage { .. })) => {
                let message = err.to_string();
                assert!(message.contains("registry.test/app:1"), "{row}: {message}");
                assert!(message.contains(&pod.handler), "{row}: {message}");
                assert!(message.contains("unsigned"), "{row}: {message}");
            }
            (want, got) => panic!("{row}: expected admitted={want}, got {got:?}"),
        }
    }
}

/// Checks one row of the pod table; a placed pod comes back with its
/// policy, for the image half of the table.
#[allow(clippy::too_many_arguments)]
fn check_row(
    hint: Hint,
    keys: HintKeys,
    default_trust: WorkloadTrust,
    causes: &[PrivilegeCause],
    untrusted: Option<&'static str>,
    explicit: Option<&'static str>,
    (mode, images): (PrivilegedUntrusted, TrustedImages),
    expect: Expect,
) -> Option<(TrustPolicy, Decision)> {
    let value = match hint {
        Hint::Absent => None,
        Hint::True => Some("true"),
        Hint::False => Some("false"),
        Hint::Garbage => Some("maybe"),
    };
    let mut ann = annotations(&[("io.kubernetes.pod.name", "p")]);
    if let Some(value) = value {
        let keys: &[&str] = match keys {
            HintKeys::CriO => &[CRIO],
            HintKeys::Ours => &[OURS],
            HintKeys::Both => &[CRIO, OURS],
        };
        for key in keys {
            ann.insert((*key).to_owned(), value.to_owned());
        }
    }
    let input = PodTrustInput {
        runtime_handler: explicit.unwrap_or(""),
        annotations: &ann,
        privileged: causes.contains(&PrivilegeCause::SecurityContext),
        host_network: causes.contains(&PrivilegeCause::HostNetwork),
        host_pid: causes.contains(&PrivilegeCause::HostPid),
        host_ipc: causes.contains(&PrivilegeCause::HostIpc),
        user_namespace: false,
    };
    let row = format!(
        "hint={hint:?} keys={keys:?} default={default_trust} causes={causes:?} \
         untrusted={untrusted:?} explicit={explicit:?} mode={mode} images={images}"
    );
    let policy = policy_with(untrusted, default_trust, mode, images);
    let (got, warnings) = capture_warnings(|| policy.decide(&input));
    match (expect, got) {
        (
            Expect::Runs {
                handler,
                trusted,
                warns,
            },
            Ok(decision),
        ) => {
            assert_eq!(decision.handler, handler, "{row}");
            assert_eq!(decision.trusted, trusted, "{row}");
            assert!(
                decision.reason.contains(handler),
                "{row}: {}",
                decision.reason
            );
            if explicit.is_some() {
                assert!(
                    decision
                        .reason
                        .contains("requested explicitly (RuntimeClass)"),
                    "{row}: {}",
                    decision.reason
                );
            }
            if value.is_some() {
                // Whatever decided, the reason cites the annotation it saw.
                assert!(
                    decision.reason.contains(CRIO) || decision.reason.contains(OURS),
                    "{row}: {}",
                    decision.reason
                );
            }
            let overridden = decision
                .reason
                .contains("privileged_untrusted=trusted-runtime");
            assert_eq!(overridden, warns, "{row}: {}", decision.reason);
            assert_eq!(!warnings.is_empty(), warns, "{row}: {warnings:?}");
            if warns {
                assert!(warnings.contains("WARN"), "{row}: {warnings}");
                assert!(warnings.contains(&decision.reason), "{row}: {warnings}");
                for cause in causes {
                    assert!(decision.reason.contains(&cause.to_string()), "{row}");
                }
            }
            return Some((policy, decision));
        }
        (Expect::UnknownHandler, Err(DecisionError::UnknownHandler { handler, known })) => {
            assert_eq!(Some(handler.as_str()), explicit, "{row}");
            assert_eq!(known, ["kata", "runc", "runsc"], "{row}");
        }
        (Expect::InvalidHint, Err(DecisionError::InvalidHint { key, value })) => {
            assert!(key == CRIO || key == OURS, "{row}");
            assert_eq!(value, "maybe", "{row}");
        }
        (Expect::Rejected, Err(err @ DecisionError::PrivilegedUntrustedRejected { .. })) => {
            let message = err.to_string();
            assert!(
                message.contains("privileged_untrusted=reject"),
                "{row}: {message}"
            );
            assert!(message.contains("=false"), "{row}: {message}");
            for cause in causes {
                assert!(message.contains(&cause.to_string()), "{row}: {message}");
            }
            assert!(warnings.is_empty(), "{row}: {warnings}");
        }
        (Expect::Contradiction, Err(err @ DecisionError::HandlerContradictsHint { .. })) => {
            let message = err.to_string();
            assert!(message.contains(explicit.unwrap()), "{row}: {message}");
            assert!(message.contains("=false"), "{row}: {message}");
            assert!(message.contains(untrusted.unwrap()), "{row}: {message}");
        }
        (expect, got) => panic!("{row}: expected {expect:?}, got {got:?}"),
    }
    None
}

// ---------------------------------------------------------------------------
// Configuration validation.

#[test]
fn new_rejects_bad_configurations() {
    let config = |default: &str, untrusted: Option<&str>| TrustConfig {
        default_handler: default.into(),
        untrusted_handler: untrusted.map(Into::into),
        ..TrustConfig::default()
    };
    assert_eq!(
        TrustPolicy::new(config("", None), KNOWN).unwrap_err(),
        ConfigError::EmptyDefaultHandler
    );
    assert_eq!(
        TrustPolicy::new(config("crun", None), KNOWN).unwrap_err(),
        ConfigError::UnknownHandler {
            key: "default_handler",
            handler: "crun".into(),
            known: vec!["kata".into(), "runc".into(), "runsc".into()],
        }
    );
    assert_eq!(
        TrustPolicy::new(config("runc", Some("gvisor")), KNOWN).unwrap_err(),
        ConfigError::UnknownHandler {
            key: "untrusted_handler",
            handler: "gvisor".into(),
            known: vec!["kata".into(), "runc".into(), "runsc".into()],
        }
    );
    assert_eq!(
        TrustPolicy::new(config("runc", Some("runc")), KNOWN).unwrap_err(),
        ConfigError::SameHandler {
            handler: "runc".into()
        }
    );
    let empty: [&str; 0] = [];
    assert_eq!(
        TrustPolicy::new(config("runc", None), empty)
            .unwrap_err()
            .to_string(),
        "trust policy: default_handler = \"runc\" is not a known runtime handler; known handlers: (none)"
    );
    // An empty known name cannot smuggle in an empty default handler.
    assert_eq!(
        TrustPolicy::new(config("", None), ["", "runc"]).unwrap_err(),
        ConfigError::EmptyDefaultHandler
    );
}

#[test]
fn policy_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TrustPolicy>();
    assert_send_sync::<Decision>();
    assert_send_sync::<DecisionError>();
    assert_send_sync::<ConfigError>();
}

// ---------------------------------------------------------------------------
// Properties over random input.

fn arb_hint_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("true".to_owned())),
        Just(Some("false".to_owned())),
        Just(Some("TRUE".to_owned())),
        ".{0,8}".prop_map(Some),
    ]
}

fn arb_config() -> impl Strategy<Value = TrustConfig> {
    (
        prop::option::of(prop_oneof![Just("runsc"), Just("kata")]),
        prop_oneof![Just(WorkloadTrust::Trusted), Just(WorkloadTrust::Untrusted)],
        prop_oneof![
            Just(PrivilegedUntrusted::TrustedRuntime),
            Just(PrivilegedUntrusted::Reject)
        ],
        prop_oneof![Just(TrustedImages::Any), Just(TrustedImages::Verified)],
    )
        .prop_map(
            |(untrusted, default_workload_trust, privileged_untrusted, trusted_images)| {
                TrustConfig {
                    default_handler: "runc".into(),
                    untrusted_handler: untrusted.map(Into::into),
                    default_workload_trust,
                    privileged_untrusted,
                    trusted_images,
                }
            },
        )
}

proptest! {
    #[test]
    fn decisions_keep_their_invariants(
        config in arb_config(),
        cri_o in arb_hint_value(),
        ours in arb_hint_value(),
        extra in prop::collection::hash_map("[a-z./-]{1,20}", ".{0,10}", 0..4),
        runtime_handler in prop_oneof![Just(""), Just("runc"), Just("runsc"), Just("kata"), Just("x")],
        flags in any::<[bool; 4]>(),
    ) {
        let untrusted = config.untrusted_handler.clone();
        let policy = TrustPolicy::new(config, KNOWN).unwrap();
        let mut ann = extra;
        ann.remove(CRIO);
        ann.remove(OURS);
        let bare = PodTrustInput {
            runtime_handler,
            annotations: &ann,
            privileged: flags[0],
            host_network: flags[1],
            host_pid: flags[2],
            host_ipc: flags[3],
            user_namespace: false,
        };
        let mut hinted = HashMap::new();
        if let Some(v) = &cri_o { hinted.insert(CRIO.to_owned(), v.clone()); }
        if let Some(v) = &ours { hinted.insert(OURS.to_owned(), v.clone()); }
        let with_hints_only = PodTrustInput { annotations: &hinted, ..bare };
        let mut all = ann.clone();
        all.extend(hinted.clone());
        let input = PodTrustInput { annotations: &all, ..bare };

        let got = policy.decide(&input);
        // Annotations other than the two trust keys never matter.
        prop_assert_eq!(&got, &policy.decide(&with_hints_only));
        if let Ok(d) = &got {
            prop_assert!(KNOWN.contains(&d.handler.as_str()));
            prop_assert!(d.reason.contains(&d.handler));
            if untrusted.as_deref() == Some(d.handler.as_str()) {
                prop_assert!(!d.trusted);
            }
            if runtime_handler.is_empty() {
                // Nothing privileged lands in the sandbox unless asked for by name.
                if input.is_privileged() {
                    prop_assert_eq!(d.handler.as_str(), "runc");
                }
                // An untrusted verdict uses the untrusted handler when it can.
                if !d.trusted && !input.is_privileged() {
                    prop_assert_eq!(Some(d.handler.as_str()), untrusted.as_deref().or(Some("runc")));
                }
            } else {
                prop_assert_eq!(d.handler.as_str(), runtime_handler);
            }
        }
        // A `true` hint never moves a pod: it cannot lift the untrusted
        // default (any pod author can write it), unless images are checked;
        // then it can only move it to the trusted handler.
        let no_hints = HashMap::new();
        let trusting = HashMap::from([(CRIO.to_owned(), "true".to_owned())]);
        let placed = |a| {
            policy
                .decide(&PodTrustInput { annotations: a, ..bare })
                .map(|d| (d.handler, d.trusted))
        };
        if policy.config().trusted_images == TrustedImages::Any {
            prop_assert_eq!(placed(&trusting), placed(&no_hints));
        } else if placed(&trusting) != placed(&no_hints) {
            prop_assert_eq!(placed(&trusting), Ok(("runc".to_owned(), true)));
        }
        // A value that is not true/false never yields a decision.
        let bad = |v: &Option<String>| v.as_deref().is_some_and(|v| {
            !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false")
        });
        if bad(&cri_o) || bad(&ours) {
            let is_invalid_hint = matches!(got, Err(DecisionError::InvalidHint { .. }));
            prop_assert!(is_invalid_hint, "{:?}", got);
        }
    }
}

// ---------------------------------------------------------------------------
// Evidence: exact reasons for the rows that `trusted_images` changes.

#[test]
fn a_true_hint_lifts_the_untrusted_default_only_with_verified_images() {
    let hinted = annotations(&[(CRIO, "true")]);
    let input = PodTrustInput::new(&hinted);
    let verified = policy_with(
        Some("runsc"),
        WorkloadTrust::Untrusted,
        PrivilegedUntrusted::TrustedRuntime,
        TrustedImages::Verified,
    );
    let decision = verified.decide(&input).unwrap();
    assert_eq!(
        decision,
        Decision {
            handler: "runc".into(),
            trusted: true,
            reason: "trusted by annotation io.kubernetes.cri-o.TrustedSandbox=true despite \
                     default_workload_trust=untrusted, because trusted_images=verified admits \
                     only signed images: runs on trusted handler runc"
                .into(),
        }
    );
    let signed = ImageEvidence::verified("registry.test/app:1", "signed by key sha256:ab");
    assert_eq!(
        verified.admit_image(&decision, &signed).unwrap().reason,
        "verified (signed by key sha256:ab): may run on handler runc"
    );
    let unsigned = ImageEvidence::unverified("registry.test/app:1", "it has no signature");
    assert_eq!(
        verified
            .admit_image(&decision, &unsigned)
            .unwrap_err()
            .to_string(),
        "image registry.test/app:1 may not run on handler runc: trusted_images=verified admits \
         only images a sigstoreSigned requirement verified (its evidence: it has no signature); sign it, \
         or run the pod untrusted (on runsc)"
    );

    let any = policy(
        Some("runsc"),
        WorkloadTrust::Untrusted,
        PrivilegedUntrusted::TrustedRuntime,
    );
    let decision = any.decide(&input).unwrap();
    assert_eq!(decision.handler, "runsc");
    assert_eq!(
        any.admit_image(&decision, &unsigned).unwrap().reason,
        "trusted_images=any admits every image"
    );
}

#[test]
fn the_sandbox_runs_unsigned_images_under_verified() {
    let untrusted = annotations(&[(CRIO, "false")]);
    let policy = policy_with(
        Some("runsc"),
        WorkloadTrust::Trusted,
        PrivilegedUntrusted::TrustedRuntime,
        TrustedImages::Verified,
    );
    let decision = policy.decide(&PodTrustInput::new(&untrusted)).unwrap();
    let unsigned = ImageEvidence::unverified("busybox", "no signature policy is configured");
    assert_eq!(
        policy.admit_image(&decision, &unsigned).unwrap().reason,
        "the pod runs in the sandbox (runsc), which runs any image the pull policy admits"
    );
    // Privileged and hinted untrusted lands on runc: runc needs evidence.
    let privileged = PodTrustInput {
        privileged: true,
        ..PodTrustInput::new(&untrusted)
    };
    let decision = policy.decide(&privileged).unwrap();
    assert_eq!(decision.handler, "runc");
    assert!(policy.admit_image(&decision, &unsigned).is_err());
}

#[test]
fn a_user_namespace_is_named_in_the_reason_and_never_privileged() {
    let policy = policy(
        Some("runsc"),
        WorkloadTrust::Trusted,
        PrivilegedUntrusted::TrustedRuntime,
    );
    let annotations = HashMap::new();
    let input = PodTrustInput {
        user_namespace: true,
        ..PodTrustInput::new(&annotations)
    };
    let decision = policy.decide(&input).unwrap();
    assert_eq!(decision.handler, "runc");
    assert!(decision.trusted);
    assert!(
        decision
            .reason
            .ends_with("in its own user namespace (hostUsers: false): not privileged"),
        "{}",
        decision.reason
    );
    for privileged in [
        PodTrustInput {
            privileged: true,
            ..input
        },
        PodTrustInput {
            host_network: true,
            ..input
        },
        PodTrustInput {
            host_pid: true,
            ..input
        },
    ] {
        let err = policy.decide(&privileged).unwrap_err();
        assert!(
            matches!(err, DecisionError::UserNamespaceWithPrivilege { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("user namespace"), "{err}");
    }
}
