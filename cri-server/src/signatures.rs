//! The daemon's signature policy (`[image] signature_policy`): the image
//! store's pull check, made of `image-signature`'s [`PolicyVerifier`] and
//! [`RegistrySource`], and its reload on SIGHUP.
//!
//! Every pull is checked once its reference resolves to the top manifest
//! digest `D`, before anything else is fetched: signatures are fetched
//! through the same mirrors as the image, with the pull's credentials. An
//! accepted image records [`PullEvidence`] (`verified` when signatures
//! vouched for it; `[runtime] trusted_images = "verified"` reads it at
//! CreateContainer); a refused one fails the pull with PermissionDenied and
//! is not stored.
//!
//! Reload ([`Signatures::reload`], on SIGHUP): the policy file is read again;
//! if it does not load, the daemon keeps the policy it has and logs why.
//! Otherwise new pulls use the new policy at once (a pull under way is
//! checked again before it is recorded), and stored images are re-evaluated
//! in the background ([`image_store::ImageStore::recheck_evidence`]): each
//! evidence entry is replaced by the new policy's answer, a refusal becoming
//! unverified evidence that says why. Re-evaluation has no credentials (the
//! store keeps none): an image whose signatures need them stays unverified
//! until it is pulled again.

use crate::config::ImageConfig;
use crate::metrics::{SignatureCounts, SignatureResult};
use async_trait::async_trait;
use image_signature::verify::StaticSource;
use image_signature::{
    ImageVerifier, PolicyError, PolicyScope, PolicyVerifier, Refusal, RegistrySource,
    SignaturePolicy, Verification,
};
use image_store::digest::Digest;
use image_store::{
    ImageReference, ImageStore, PullCheck, PullEvidence, PullOptions, PullRefusal, Registries,
    RegistryAuth,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Makes the signature source for one pull's authentication.
type SourceFor = Arc<dyn Fn(&RegistryAuth) -> Box<StaticSource> + Send + Sync>;

/// The pull check: a policy verifier and where signatures come from.
pub struct SignatureCheck {
    verifier: Arc<dyn ImageVerifier>,
    source: SourceFor,
    counts: SignatureCounts,
}

impl SignatureCheck {
    /// Checks pulls against `policy`, fetching signatures through
    /// `registries` (the daemon's mirrors, TLS files and stored
    /// credentials) under the pulls' stall timeout (`options`), counting
    /// results in `counts`.
    pub fn new(
        policy: SignaturePolicy,
        registries: Registries,
        options: PullOptions,
        counts: SignatureCounts,
    ) -> Self {
        let source: SourceFor = Arc::new(move |auth: &RegistryAuth| {
            let source = RegistrySource::new(registries.clone(), auth.clone());
            Box::new(source.with_options(options.clone())) as Box<StaticSource>
        });
        Self::with(Arc::new(PolicyVerifier::new(policy)), source, counts)
    }

    /// A check of any verifier and source: for tests with doubles.
    fn with(verifier: Arc<dyn ImageVerifier>, source: SourceFor, counts: SignatureCounts) -> Self {
        Self {
            verifier,
            source,
            counts,
        }
    }
}

#[async_trait]
impl PullCheck for SignatureCheck {
    async fn check(
        &self,
        reference: &ImageReference,
        digest: &Digest,
        auth: &RegistryAuth,
    ) -> Result<PullEvidence, PullRefusal> {
        let source = (self.source)(auth);
        let verdict = self
            .verifier
            .verify(reference, digest.as_str(), source.as_ref())
            .await;
        match verdict {
            Ok(verification) => {
                self.counts.count(match verification.verified {
                    true => SignatureResult::Verified,
                    false => SignatureResult::Accepted,
                });
                tracing::info!(image = %reference, %digest, summary = %summary(&verification), "signature policy accepted");
                Ok(evidence(&verification))
            }
            Err(refused) => {
                self.counts.count(SignatureResult::Refused);
                tracing::info!(image = %reference, %digest, %refused, "signature policy refused");
                Err(refusal(refused))
            }
        }
    }
}

/// An accepted image's evidence: the verdict, one phrase, and the whole
/// [`Verification`] as JSON.
pub fn evidence(verification: &Verification) -> PullEvidence {
    PullEvidence {
        reference: verification.image.clone(),
        digest: verification.digest.clone(),
        verified: verification.verified,
        summary: summary(verification),
        detail: serde_json::to_value(verification).unwrap_or_default(),
    }
}

/// Who vouched for the image, for what, under which scope; or that nothing
/// was checked.
///
/// # Examples
///
/// ```
/// use image_signature::{PolicyScope, RequirementKind, Verification};
/// let accepted = Verification {
///     image: "quay.io/app:1".into(),
///     digest: format!("sha256:{}", "a".repeat(64)),
///     scope: PolicyScope::Default,
///     requirements: vec![RequirementKind::InsecureAcceptAnything],
///     verified: false,
///     signatures: vec![],
/// };
/// assert_eq!(
///     cri_server::signatures::summary(&accepted),
///     "accepted by insecureAcceptAnything (scope default), no signature checked"
/// );
/// ```
pub fn summary(verification: &Verification) -> String {
    let scope = scope_name(&verification.scope);
    if !verification.verified {
        return format!("accepted by insecureAcceptAnything (scope {scope}), no signature checked");
    }
    let signers: Vec<String> = verification
        .signatures
        .iter()
        .map(|s| {
            format!(
                "signed by key {} as {}",
                short_fingerprint(&s.key_fingerprint),
                s.signed_identity
            )
        })
        .collect();
    format!("{} (scope {scope})", signers.join(" and "))
}

/// `sha256:` and the first 12 hex digits: enough to tell keys apart in a
/// sentence; the detail has the whole fingerprint.
fn short_fingerprint(fingerprint: &str) -> String {
    match fingerprint.get(..19) {
        Some(short) if short.len() < fingerprint.len() => format!("{short}…"),
        _ => fingerprint.to_string(),
    }
}

/// The scope as an operator wrote it: `"registry.k8s.io/signed"`, or
/// `default` / `transports.docker[""]` for the catch-alls.
fn scope_name(scope: &PolicyScope) -> String {
    match scope {
        PolicyScope::Scope { scope, .. } => format!("{scope:?}"),
        other => other.to_string(),
    }
}

/// A [`Refusal`] as the pull fails with it: the scope that matched, the
/// manifest and why. The image is named by the pull's own error.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused by signature policy (scope {}, manifest {}): {}",
    scope_name(&.0.scope),
    .0.digest,
    .0.reason
)]
pub struct SignatureRefused(pub Refusal);

/// The image store's refusal of `refused`: its message, and the whole
/// [`Refusal`] as JSON for the evidence it leaves on a stored image.
pub fn refusal(refused: Refusal) -> PullRefusal {
    let detail = serde_json::to_value(&refused).unwrap_or_default();
    PullRefusal::new(SignatureRefused(refused), detail)
}

/// Why a policy reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load; the previous policy stays.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Reading it on a blocking thread failed (a panic in the loader).
    #[error("reading the signature policy: background task failed")]
    Task,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// `[image] signature_policy` is empty: there is nothing to reload.
    NotConfigured,
    /// The policy at this path is in force; stored images are being
    /// re-evaluated in the background.
    Policy(PathBuf),
}

/// The configured policy, held so that it can be reloaded.
pub struct Signatures {
    path: Option<PathBuf>,
    store: ImageStore,
    registries: Registries,
    /// `[image] pull_stall_timeout_seconds`, for signature fetches too.
    options: PullOptions,
    counts: SignatureCounts,
}

/// The policy `config` names, loaded; `None` when it names none.
pub fn load_policy(config: &ImageConfig) -> Result<Option<SignaturePolicy>, PolicyError> {
    configured(config).map(SignaturePolicy::load).transpose()
}

fn configured(config: &ImageConfig) -> Option<&Path> {
    let path = config.signature_policy.as_path();
    (!path.as_os_str().is_empty()).then_some(path)
}

impl Signatures {
    /// Installs `policy` (from [`load_policy`]) as `store`'s pull check,
    /// fetching signatures through the store's registries, counting in
    /// `counts`; without one, no check is installed and pulls behave as
    /// before.
    pub fn install(
        config: &ImageConfig,
        policy: Option<SignaturePolicy>,
        store: ImageStore,
        counts: SignatureCounts,
    ) -> Self {
        let signatures = Signatures {
            path: configured(config).map(Path::to_path_buf),
            registries: store.registries(),
            store,
            options: pull_options(config),
            counts,
        };
        if let (Some(path), Some(policy)) = (&signatures.path, policy) {
            for result in [
                SignatureResult::Verified,
                SignatureResult::Accepted,
                SignatureResult::Refused,
            ] {
                // Every series from 0, so a first refusal is a change.
                signatures.counts.get(result);
            }
            signatures.set(policy);
            tracing::info!(policy = %path.display(), "signature policy in force");
        }
        signatures
    }

    fn set(&self, policy: SignaturePolicy) {
        let check = SignatureCheck::new(
            policy,
            self.registries.clone(),
            self.options.clone(),
            self.counts.clone(),
        );
        self.store.set_pull_check(Some(Arc::new(check)));
    }

    /// Reads the policy file again and puts it in force, then re-evaluates
    /// every stored image's evidence in the background. A file that does
    /// not load changes nothing.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let Some(path) = self.path.clone() else {
            return Ok(Reloaded::NotConfigured);
        };
        let policy = load_blocking(path.clone()).await?;
        self.put_in_force(policy);
        Ok(Reloaded::Policy(path))
    }

    /// Takes a reloaded `[image]` table and its `registries` (loaded from
    /// it), for pulls and for fetching signatures (the same mirrors, TLS
    /// files and credentials), and its `signature_policy`, put in force as
    /// [`Signatures::reload`] does. A policy that does not load changes
    /// nothing, registries included; an emptied path removes the check, so
    /// pulls are no longer checked.
    pub async fn reconfigure(
        &mut self,
        config: &ImageConfig,
        registries: Registries,
    ) -> Result<Reloaded, ReloadError> {
        let path = configured(config).map(Path::to_path_buf);
        let policy = match &path {
            Some(path) => Some(load_blocking(path.clone()).await?),
            None => None,
        };
        self.store.set_registries(registries.clone());
        self.registries = registries;
        self.options = pull_options(config);
        self.path = path.clone();
        match (path, policy) {
            (Some(path), Some(policy)) => {
                self.put_in_force(policy);
                Ok(Reloaded::Policy(path))
            }
            _ => {
                self.store.set_pull_check(None);
                Ok(Reloaded::NotConfigured)
            }
        }
    }

    /// Installs `policy` and re-evaluates stored images in the background.
    fn put_in_force(&self, policy: SignaturePolicy) {
        self.set(policy);
        let store = self.store.clone();
        tokio::spawn(async move {
            match store.recheck_evidence().await {
                Ok(report) => tracing::info!(
                    replaced = report.replaced,
                    changed = report.changed,
                    skipped = report.skipped,
                    superseded = report.superseded,
                    "stored images re-evaluated against the reloaded signature policy"
                ),
                Err(error) => {
                    tracing::warn!(%error, "re-evaluating stored images' signatures failed")
                }
            }
        });
    }
}

/// The stall timeout of `config` (checked when the configuration loaded).
fn pull_options(config: &ImageConfig) -> PullOptions {
    config
        .pull_stall_timeout_seconds
        .pull_options()
        .unwrap_or_default()
}

/// Loads the policy at `path` off the async workers (it reads key files).
async fn load_blocking(path: PathBuf) -> Result<SignaturePolicy, ReloadError> {
    tokio::task::spawn_blocking(move || SignaturePolicy::load(&path))
        .await
        .map_err(|_| ReloadError::Task)?
        .map_err(ReloadError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_signature::{
        AcceptedSignature, IdentityKind, KeyAlgorithm, MockImageVerifier, MockSignatureSource,
        RefusalKind, RefusalReason, RequirementKind, SourceError,
    };
    use std::sync::Mutex;
    use tonic::Code;

    const IMAGE: &str = "registry.k8s.io/signed/good:latest";

    fn digest() -> Digest {
        format!("sha256:{}", "d".repeat(64)).parse().unwrap()
    }

    fn scope() -> PolicyScope {
        PolicyScope::Scope {
            transport: "docker".into(),
            scope: "registry.k8s.io/signed".into(),
        }
    }

    fn verified() -> Verification {
        Verification {
            image: IMAGE.into(),
            digest: digest().to_string(),
            scope: scope(),
            requirements: vec![RequirementKind::SigstoreSigned],
            verified: true,
            signatures: vec![AcceptedSignature {
                requirement: 0,
                key_fingerprint: format!("sha256:0123456789ab{}", "f".repeat(52)),
                key_algorithm: KeyAlgorithm::EcdsaP256Sha256,
                signed_identity: "registry.k8s.io/signed/good".into(),
                identity_rule: IdentityKind::MatchRepository,
                layer_digest: format!("sha256:{}", "1".repeat(64)),
            }],
        }
    }

    fn refused(reason: RefusalReason) -> Refusal {
        Refusal {
            image: IMAGE.into(),
            digest: digest().to_string(),
            scope: scope(),
            requirement: Some(0),
            reason,
            rejected: vec![],
        }
    }

    #[test]
    fn a_verification_becomes_evidence_with_one_phrase_and_the_whole_record() {
        let evidence = evidence(&verified());
        assert!(evidence.verified);
        assert_eq!(
            (evidence.reference.as_str(), evidence.digest),
            (IMAGE, digest().to_string())
        );
        assert_eq!(
            evidence.summary,
            "signed by key sha256:0123456789ab… as registry.k8s.io/signed/good \
             (scope \"registry.k8s.io/signed\")"
        );
        assert_eq!(evidence.detail, serde_json::to_value(verified()).unwrap());
        assert_eq!(
            evidence.detail["signatures"][0]["keyFingerprint"],
            verified().signatures[0].key_fingerprint
        );
        let open = Verification {
            scope: PolicyScope::TransportDefault {
                transport: "docker".into(),
            },
            requirements: vec![RequirementKind::InsecureAcceptAnything],
            verified: false,
            signatures: vec![],
            ..verified()
        };
        assert_eq!(
            summary(&open),
            "accepted by insecureAcceptAnything (scope transports.docker[\"\"]), no signature checked"
        );
    }

    /// The gRPC status a pull refused for `reason` fails with.
    fn status_of(reason: RefusalReason) -> tonic::Status {
        let error = image_store::Error::PolicyRefused {
            image: IMAGE.into(),
            digest: digest(),
            refusal: refusal(refused(reason)),
        };
        tonic::Status::from(crate::error::Error::from(error))
    }

    #[test]
    fn every_refusal_is_permission_denied_naming_the_image_the_scope_and_why() {
        let reasons = [
            (
                RefusalReason::NoSignature,
                "a signature is required, but there is none",
            ),
            (
                RefusalReason::BadSignature,
                "no signature verifies with a trusted key",
            ),
            (
                RefusalReason::WrongDigest {
                    signed: "sha256:0ld".into(),
                },
                "a trusted signature is for manifest sha256:0ld, not this one",
            ),
            (
                RefusalReason::IdentityMismatch {
                    signed_identity: "registry.k8s.io/other".into(),
                    rule: IdentityKind::MatchRepository,
                },
                "claims identity registry.k8s.io/other",
            ),
            (
                RefusalReason::RejectedByPolicy,
                "the policy rejects this image",
            ),
        ];
        for (reason, why) in reasons {
            let status = status_of(reason);
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            let message = status.message();
            for part in [IMAGE, "scope \"registry.k8s.io/signed\"", why] {
                assert!(message.contains(part), "{part:?} not in {message}");
            }
        }
    }

    #[test]
    fn a_joined_pulls_refusal_is_permission_denied_too() {
        let error = image_store::Error::SharedPull {
            image: IMAGE.into(),
            source: Arc::new(image_store::Error::PolicyRefused {
                image: IMAGE.into(),
                digest: digest(),
                refusal: refusal(refused(RefusalReason::NoSignature)),
            }),
        };
        let status = tonic::Status::from(crate::error::Error::from(error));
        assert_eq!(status.code(), Code::PermissionDenied);
        let stale = refusal(refused(RefusalReason::NoSignature))
            .evidence(&IMAGE.parse().unwrap(), &digest());
        assert!(!stale.verified);
        assert!(
            stale.summary.starts_with("refused by signature policy"),
            "{}",
            stale.summary
        );
        assert_eq!(stale.detail["reason"]["kind"], "noSignature");
    }

    /// A check over `verifier` whose sources are `MockSignatureSource`s
    /// answering "none", recording the authentication each was made for.
    fn check_over(
        verifier: Arc<dyn ImageVerifier>,
    ) -> (
        SignatureCheck,
        Arc<Mutex<Vec<RegistryAuth>>>,
        SignatureCounts,
    ) {
        let auths = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&auths);
        let source: SourceFor = Arc::new(move |auth: &RegistryAuth| {
            seen.lock().unwrap().push(auth.clone());
            let mut source = MockSignatureSource::new();
            source.expect_signatures().returning(|_, _, _| Ok(None));
            Box::new(source) as Box<StaticSource>
        });
        let counts = SignatureCounts::default();
        (
            SignatureCheck::with(verifier, source, counts.clone()),
            auths,
            counts,
        )
    }

    #[tokio::test]
    async fn the_check_asks_the_policy_with_the_pulls_auth_and_counts_results() {
        let policy = SignaturePolicy::from_json(
            br#"{"default": [{"type": "reject"}], "transports": {"docker": {
                "registry.k8s.io/open": [{"type": "insecureAcceptAnything"}],
                "registry.k8s.io/signed": [{"type": "sigstoreSigned",
                    "keyData": "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUNvd0JRWURLMlZ3QXlFQUdiOUVDV21FemY2RlFickJaOXc3bHNoUWhxb3d0cmJMREZ3NHJYQXhadUU9Ci0tLS0tRU5EIFBVQkxJQyBLRVktLS0tLQo="}]
            }}}"#,
        )
        .unwrap();
        let (check, auths, counts) = check_over(Arc::new(PolicyVerifier::new(policy)));
        let auth = RegistryAuth::Basic {
            username: "me".into(),
            password: "pw".into(),
        };
        let signed: ImageReference = IMAGE.parse().unwrap();
        let refusal = check.check(&signed, &digest(), &auth).await.unwrap_err();
        assert!(
            refusal.to_string().contains("a signature is required"),
            "{refusal}"
        );
        assert_eq!(refusal.detail["reason"]["kind"], "noSignature");
        assert_eq!(*auths.lock().unwrap(), std::slice::from_ref(&auth));
        let open: ImageReference = "registry.k8s.io/open/app:1".parse().unwrap();
        let accepted = check.check(&open, &digest(), &auth).await.unwrap();
        assert!(!accepted.verified);
        let elsewhere: ImageReference = "quay.io/app:1".parse().unwrap();
        let rejected = check.check(&elsewhere, &digest(), &auth).await.unwrap_err();
        assert!(rejected.to_string().contains("scope default"), "{rejected}");
        assert_eq!(counts.get(SignatureResult::Refused), 2);
        assert_eq!(counts.get(SignatureResult::Accepted), 1);
    }

    // The verifier's own signature returns a Refusal unboxed
    // (image-signature allows it there too).
    #[allow(clippy::result_large_err)]
    #[tokio::test]
    async fn a_verifiers_answers_map_to_evidence_and_refusals() {
        let mut verifier = MockImageVerifier::new();
        verifier
            .expect_verify()
            .withf(|image, digest, _| {
                image.to_string() == IMAGE && *digest == super::tests::digest().to_string()
            })
            .times(1)
            .returning(|_, _, _| Ok(verified()));
        verifier.expect_verify().times(1).returning(|_, _, _| {
            let error = SourceError::Unreachable {
                image: IMAGE.into(),
                attempts: vec!["http://127.0.0.1:1: refused".into()],
            };
            Err(refused(RefusalReason::Unreadable { error }))
        });
        let (check, _, counts) = check_over(Arc::new(verifier));
        let image: ImageReference = IMAGE.parse().unwrap();
        let anonymous = RegistryAuth::Anonymous;
        let first = check.check(&image, &digest(), &anonymous).await.unwrap();
        assert_eq!(first, evidence(&verified()));
        let second = check
            .check(&image, &digest(), &anonymous)
            .await
            .unwrap_err();
        assert!(
            second.to_string().contains("signatures could not be read"),
            "{second}"
        );
        assert_eq!(
            refused(RefusalReason::NoSignature).kind(),
            RefusalKind::NoSignature
        );
        assert_eq!(counts.get(SignatureResult::Verified), 1);
        assert_eq!(counts.get(SignatureResult::Refused), 1);
    }

    #[tokio::test]
    async fn a_policy_that_does_not_load_is_refused_at_reload_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images"), Registries::default())
            .await
            .unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(
            &path,
            r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        let config = ImageConfig {
            signature_policy: path.clone(),
            ..Default::default()
        };
        let policy = load_policy(&config).unwrap();
        assert!(policy.is_some());
        let counts = SignatureCounts::default();
        let signatures = Signatures::install(&config, policy, store.clone(), counts.clone());
        assert_eq!(
            signatures.reload().await.unwrap(),
            Reloaded::Policy(path.clone())
        );
        std::fs::write(
            &path,
            r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}]}"#,
        )
        .unwrap();
        let err = signatures.reload().await.unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("signedBy"),
            "{err}"
        );
        assert!(load_policy(&config).is_err());
        // Nothing configured: nothing loaded, nothing to reload.
        let none = ImageConfig::default();
        assert!(load_policy(&none).unwrap().is_none());
        let off = Signatures::install(&none, None, store, counts);
        assert_eq!(off.reload().await.unwrap(), Reloaded::NotConfigured);
    }
}
