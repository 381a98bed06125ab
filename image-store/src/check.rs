//! [`PullCheck`]: a check the store runs on every pull, once the reference
//! has resolved to its top manifest digest `D` and before anything else is
//! fetched or stored, such as a signature policy (the daemon's is cosign
//! signatures against a containers-policy.json).
//!
//! The store does not interpret the answer. Evidence is recorded with the
//! image, one entry per reference pulled; a refusal fails the pull with
//! [`crate::Error::PolicyRefused`] and nothing of the image is stored. The
//! check is swappable at runtime ([`crate::ImageStore::set_pull_check`]), so
//! a policy can be reloaded: pulls started afterwards use the new check
//! (they never join a pull that started under the old one), a pull that was
//! under way when it changed is checked again before it is recorded, and
//! [`crate::ImageStore::recheck_evidence`] re-evaluates what is stored.

/// The authentication a pull's caller gave, as a [`PullCheck`] receives it
/// (decoded from the caller's [`crate::Credentials`]; the node's auth file
/// is [`crate::Registries::auth_for`]'s to add, per endpoint).
pub use crate::auth::RegistryAuth;
use crate::digest::Digest;
use crate::evidence::PullEvidence;
use crate::reference::ImageReference;
use async_trait::async_trait;

/// A decision about an image, taken at pull time from its top manifest
/// digest. With the `mock` feature, `MockPullCheck` (mockall) stands in for
/// it in other crates' tests.
///
/// # Examples
///
/// ```
/// use image_store::{check::RegistryAuth, digest::Digest, ImageReference, PullCheck, PullEvidence, PullRefusal};
///
/// /// Accepts every image, vouching for none.
/// struct Open;
///
/// #[async_trait::async_trait]
/// impl PullCheck for Open {
///     async fn check(&self, reference: &ImageReference, digest: &Digest, _: &RegistryAuth)
///         -> Result<PullEvidence, PullRefusal> {
///         Ok(PullEvidence {
///             reference: reference.to_string(),
///             digest: digest.to_string(),
///             verified: false,
///             summary: "accepted without a check".into(),
///             detail: serde_json::Value::Null,
///         })
///     }
/// }
/// # let _ = std::sync::Arc::new(Open) as std::sync::Arc<dyn PullCheck>;
/// ```
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PullCheck: Send + Sync {
    /// Checks manifest `digest`, what `reference` resolved to (the index's
    /// digest for a multi-platform image), with the pull's authentication
    /// `auth` (for fetching what the check needs from the same registry).
    /// `reference` is the one the caller named, normalised: never the
    /// mirror it is fetched from. The store records the evidence under
    /// exactly this reference and digest, whatever the returned value's
    /// own fields say.
    async fn check(
        &self,
        reference: &ImageReference,
        digest: &Digest,
        auth: &RegistryAuth,
    ) -> Result<PullEvidence, PullRefusal>;
}

/// Why a [`PullCheck`] refused an image: carried by
/// [`crate::Error::PolicyRefused`], and recorded (as unverified evidence)
/// on a stored image whose evidence it makes stale.
#[derive(Debug, thiserror::Error)]
#[error("{cause}")]
pub struct PullRefusal {
    /// The check's own typed reason; its message is the refusal's.
    pub cause: Box<dyn std::error::Error + Send + Sync>,
    /// The check's full record of the refusal, for verbose status.
    pub detail: serde_json::Value,
}

impl PullRefusal {
    /// A refusal because of `cause`, with the check's record `detail`.
    pub fn new(
        cause: impl std::error::Error + Send + Sync + 'static,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            cause: Box::new(cause),
            detail,
        }
    }

    /// The refusal as evidence for `reference` at `digest`: not verified,
    /// the cause's message as its summary (so a check's cause should say
    /// that it refuses, and why).
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::PullRefusal;
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("refused: not signed")]
    /// struct Unsigned;
    /// let refusal = PullRefusal::new(Unsigned, serde_json::json!({"kind": "test"}));
    /// let digest = format!("sha256:{}", "a".repeat(64)).parse()?;
    /// let evidence = refusal.evidence(&"quay.io/app:1".parse()?, &digest);
    /// assert!(!evidence.verified);
    /// assert_eq!(evidence.summary, "refused: not signed");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn evidence(&self, reference: &ImageReference, digest: &Digest) -> PullEvidence {
        PullEvidence {
            reference: reference.to_string(),
            digest: digest.to_string(),
            verified: false,
            summary: self.cause.to_string(),
            detail: self.detail.clone(),
        }
    }
}

/// The check a pull runs under, and which installation of it that is: a
/// pull started under one generation is never joined by one started under
/// another, and is checked again before it is recorded if the generation
/// changed meanwhile.
#[derive(Clone, Default)]
pub(crate) struct CheckSlot {
    /// Bumped by every [`crate::ImageStore::set_pull_check`].
    pub generation: u64,
    /// The check; `None` runs none (evidence is left as it is).
    pub check: Option<std::sync::Arc<dyn PullCheck>>,
}

impl CheckSlot {
    /// Runs the check, if there is one, on `reference` at `digest`: the
    /// evidence to record (under exactly that reference and digest), or the
    /// refusal.
    pub async fn run(
        &self,
        reference: &ImageReference,
        digest: &Digest,
        auth: &RegistryAuth,
    ) -> Result<Option<PullEvidence>, PullRefusal> {
        let Some(check) = &self.check else {
            return Ok(None);
        };
        let mut evidence = check.check(reference, digest, auth).await?;
        evidence.reference = reference.to_string();
        evidence.digest = digest.to_string();
        Ok(Some(evidence))
    }
}
