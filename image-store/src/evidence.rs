//! What a check at pull time (a signature policy) said about an image,
//! recorded with it so that the runtime can decide later where a container
//! of it may run, and show why.
//!
//! The store does not interpret it: a [`PullEvidence`] is what the caller's
//! check returned for one reference the image was pulled under, kept until
//! the image is removed or the check is run again.

use serde::{Deserialize, Serialize};

/// The verdict of a pull-time check on one reference of an image.
///
/// # Examples
///
/// ```
/// use image_store::PullEvidence;
///
/// let evidence = PullEvidence {
///     reference: "quay.io/app:1".into(),
///     digest: format!("sha256:{}", "a".repeat(64)),
///     verified: true,
///     summary: "signed by key sha256:ab12 for quay.io/app".into(),
///     detail: serde_json::json!({"verified": true}),
/// };
/// let text = serde_json::to_string(&evidence)?;
/// assert_eq!(serde_json::from_str::<PullEvidence>(&text)?, evidence);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullEvidence {
    /// The reference pulled, as the caller named it (normalised), not the
    /// mirror it came from.
    pub reference: String,
    /// The manifest digest the check covered (the index's for a
    /// multi-platform image).
    pub digest: String,
    /// Whether signatures vouched for it.
    pub verified: bool,
    /// One phrase for a person: who signed it for what, or why nothing
    /// vouches for it.
    pub summary: String,
    /// The check's full record, for verbose status.
    pub detail: serde_json::Value,
}
