//! What an image's signatures proved, as the trust decision takes it, and
//! whether a container of that image may run where its pod runs.
//!
//! The pod's handler is decided at RunPodSandbox, before any image is
//! known; each CreateContainer then asks [`TrustPolicy::admit_image`] with
//! the evidence recorded at pull. Under `trusted_images = "verified"` only
//! the untrusted handler (the sandbox) runs images without a verified
//! signature; every other handler, including the trusted one a privileged
//! pod lands on, needs one.

use serde::{Deserialize, Serialize};

use crate::config::TrustedImages;
use crate::decision::Decision;
use crate::error::DecisionError;
use crate::policy::TrustPolicy;

/// What the signature policy said about an image when it was pulled.
///
/// # Examples
///
/// ```
/// use trust_policy::ImageEvidence;
///
/// let signed = ImageEvidence::verified("quay.io/app:1", "signed by key sha256:ab12 as quay.io/app");
/// assert!(signed.verified);
/// let open = ImageEvidence::unverified("busybox", "no signature policy is configured");
/// assert!(!open.verified);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEvidence {
    /// The image as the container named it.
    pub image: String,
    /// Whether a `sigstoreSigned` requirement verified it.
    pub verified: bool,
    /// One phrase for a person: who signed it for what, or why nothing
    /// vouches for it.
    pub summary: String,
}

impl ImageEvidence {
    /// Evidence that signatures verified `image`.
    pub fn verified(image: impl Into<String>, summary: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            verified: true,
            summary: summary.into(),
        }
    }

    /// No signature vouches for `image`, and `why`.
    pub fn unverified(image: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            verified: false,
            summary: why.into(),
        }
    }
}

/// A container's image admitted where its pod runs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageAdmission {
    /// The evidence the admission rests on.
    pub evidence: ImageEvidence,
    /// One sentence for a person.
    pub reason: String,
}

impl TrustPolicy {
    /// Whether a container of the image `evidence` describes may run in a
    /// pod placed by `pod`.
    ///
    /// # Errors
    ///
    /// [`DecisionError::UnverifiedImage`] under `trusted_images =
    /// "verified"` when the pod does not run on the untrusted handler and
    /// the image is not verified.
    ///
    /// # Examples
    ///
    /// ```
    /// use trust_policy::{Decision, ImageEvidence, TrustConfig, TrustPolicy, TrustedImages};
    ///
    /// let config = TrustConfig {
    ///     untrusted_handler: Some("runsc".into()),
    ///     trusted_images: TrustedImages::Verified,
    ///     ..TrustConfig::default()
    /// };
    /// let policy = TrustPolicy::new(config, ["runc", "runsc"])?;
    /// let on = |handler: &str| Decision { handler: handler.into(), trusted: handler == "runc", reason: String::new() };
    /// let unsigned = ImageEvidence::unverified("busybox", "no signature was required");
    ///
    /// assert!(policy.admit_image(&on("runsc"), &unsigned).is_ok());
    /// let err = policy.admit_image(&on("runc"), &unsigned).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "image busybox may not run on handler runc: trusted_images=verified admits only \
    ///      images a sigstoreSigned requirement verified (its evidence: no signature was required); \
    ///      sign it, or run the pod untrusted (on runsc)"
    /// );
    /// # Ok::<(), trust_policy::ConfigError>(())
    /// ```
    pub fn admit_image(
        &self,
        pod: &Decision,
        evidence: &ImageEvidence,
    ) -> Result<ImageAdmission, DecisionError> {
        let config = self.config();
        let sandboxed = config.untrusted_handler.as_deref() == Some(pod.handler.as_str());
        let reason = match config.trusted_images {
            TrustedImages::Any => "trusted_images=any admits every image".to_owned(),
            TrustedImages::Verified if sandboxed => format!(
                "the pod runs in the sandbox ({}), which runs any image the pull policy admits",
                pod.handler
            ),
            TrustedImages::Verified if evidence.verified => format!(
                "verified ({}): may run on handler {}",
                evidence.summary, pod.handler
            ),
            TrustedImages::Verified => {
                return Err(DecisionError::UnverifiedImage {
                    image: evidence.image.clone(),
                    handler: pod.handler.clone(),
                    why: evidence.summary.clone(),
                    untrusted_handler: config.untrusted_handler.clone(),
                })
            }
        };
        Ok(ImageAdmission {
            evidence: evidence.clone(),
            reason,
        })
    }
}
