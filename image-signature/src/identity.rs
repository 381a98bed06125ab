//! `signedIdentity`: which image identities a signature may claim for the
//! image being checked, with containers/image's semantics
//! (`signature/policy_reference_match.go`):
//!
//! | type | the signature's `docker-reference` must be |
//! |---|---|
//! | `matchExact` | the image's reference, tag or digest and all; neither may be a bare repository |
//! | `matchRepoDigestOrExact` (default) | for a tagged image, exactly its reference; for an image named by digest, any reference in its repository |
//! | `matchRepository` | any reference in the image's repository |
//! | `exactReference` | exactly `dockerReference` (which has a tag or digest) |
//! | `exactRepository` | any reference in `dockerRepository` |
//! | `remapIdentity` | as `matchRepoDigestOrExact`, after the image's `prefix` is replaced by `signedPrefix` |
//!
//! "The image's reference" is the *logical* one the pod named, not the
//! mirror it was fetched from. References are compared in their normalised
//! form (`busybox` is `docker.io/library/busybox`), and a reference with
//! neither tag nor digest stays a bare repository: cosign signs those, so
//! only the repository modes accept cosign's own signatures.

use crate::error::InvalidPolicy;
use image_store::ImageReference;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::OnceLock;

/// A normalised docker reference that remembers whether it had a tag or a
/// digest (distribution's `reference.Named`), unlike [`ImageReference`],
/// which gives a bare name the tag `latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamedRef {
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl NamedRef {
    /// Parses and normalises like distribution's `ParseNormalizedNamed`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let parsed: ImageReference = s.parse().ok()?;
        // A tag is a `:` in the last path component (a port's `:` is in the
        // first one and always followed by a `/`).
        let before_digest = s.split('@').next().unwrap_or(s);
        let last = before_digest.rsplit('/').next().unwrap_or(before_digest);
        let tagged = last.contains(':');
        Some(Self {
            name: parsed.name(),
            tag: if tagged {
                parsed.tag().map(str::to_string)
            } else {
                None
            },
            digest: parsed.digest().map(str::to_string),
        })
    }

    /// Parses a reference that must already be in canonical form
    /// (distribution's `ParseNamed`): `busybox` is refused, only
    /// `docker.io/library/busybox` is.
    fn parse_canonical(s: &str) -> Option<Self> {
        Self::parse(s).filter(|r| r.to_string() == s)
    }

    /// The image reference as the daemon resolved it: a bare name has
    /// already been given `latest`, as the docker transport does.
    pub(crate) fn of_image(image: &ImageReference) -> Self {
        Self {
            name: image.name(),
            tag: image.tag().map(str::to_string),
            digest: image.digest().map(str::to_string),
        }
    }

    fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }
}

impl fmt::Display for NamedRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// What a `sigstoreSigned` requirement accepts as the signed identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedIdentity {
    /// `matchExact`.
    MatchExact,
    /// `matchRepoDigestOrExact`, the default.
    MatchRepoDigestOrExact,
    /// `matchRepository`.
    MatchRepository,
    /// `exactReference` with its `dockerReference`, as written.
    ExactReference(String),
    /// `exactRepository` with its `dockerRepository`, as written.
    ExactRepository(String),
    /// `remapIdentity`.
    RemapIdentity {
        /// The image-side prefix (`host[:port]`, a namespace or a
        /// repository).
        prefix: String,
        /// What replaces it before matching.
        signed_prefix: String,
    },
}

/// The `signedIdentity` type, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IdentityKind {
    /// `matchExact`.
    MatchExact,
    /// `matchRepoDigestOrExact`.
    MatchRepoDigestOrExact,
    /// `matchRepository`.
    MatchRepository,
    /// `exactReference`.
    ExactReference,
    /// `exactRepository`.
    ExactRepository,
    /// `remapIdentity`.
    RemapIdentity,
}

impl SignedIdentity {
    /// `exactReference`: `docker_reference` must parse and carry a tag or
    /// digest.
    pub fn exact_reference(docker_reference: &str) -> Result<Self, InvalidPolicy> {
        let why = match NamedRef::parse(docker_reference) {
            None => "dockerReference is not an image reference",
            Some(r) if r.is_name_only() => "dockerReference has neither a tag nor a digest",
            Some(_) => return Ok(Self::ExactReference(docker_reference.to_string())),
        };
        Err(identity_error("exactReference", why))
    }

    /// `exactRepository`: `docker_repository` must parse.
    pub fn exact_repository(docker_repository: &str) -> Result<Self, InvalidPolicy> {
        match NamedRef::parse(docker_repository) {
            Some(_) => Ok(Self::ExactRepository(docker_repository.to_string())),
            None => Err(identity_error(
                "exactRepository",
                "dockerRepository is not a repository",
            )),
        }
    }

    /// `remapIdentity`: each prefix must be a `host[:port]` or a
    /// repository path under one, with no tag or digest.
    pub fn remap_identity(prefix: &str, signed_prefix: &str) -> Result<Self, InvalidPolicy> {
        for (field, value) in [("prefix", prefix), ("signedPrefix", signed_prefix)] {
            if !valid_remap_prefix(value) {
                return Err(identity_error(
                    "remapIdentity",
                    &format!("{field} {value:?} is neither host[:port] nor a repository under one"),
                ));
            }
        }
        Ok(Self::RemapIdentity {
            prefix: prefix.to_string(),
            signed_prefix: signed_prefix.to_string(),
        })
    }

    /// The type, for reports.
    pub fn kind(&self) -> IdentityKind {
        match self {
            Self::MatchExact => IdentityKind::MatchExact,
            Self::MatchRepoDigestOrExact => IdentityKind::MatchRepoDigestOrExact,
            Self::MatchRepository => IdentityKind::MatchRepository,
            Self::ExactReference(_) => IdentityKind::ExactReference,
            Self::ExactRepository(_) => IdentityKind::ExactRepository,
            Self::RemapIdentity { .. } => IdentityKind::RemapIdentity,
        }
    }

    /// Whether a signature claiming `signed` may stand for `image`.
    /// A `signed` that is not a reference matches nothing.
    pub fn matches(&self, image: &ImageReference, signed: &str) -> bool {
        let Some(signed) = NamedRef::parse(signed) else {
            return false;
        };
        let intended = NamedRef::of_image(image);
        match self {
            Self::MatchExact => {
                !intended.is_name_only()
                    && !signed.is_name_only()
                    && signed.to_string() == intended.to_string()
            }
            Self::MatchRepoDigestOrExact => repo_digest_or_exact(&intended, &signed),
            Self::MatchRepository => signed.name == intended.name,
            Self::ExactReference(wanted) => NamedRef::parse(wanted).is_some_and(|wanted| {
                !signed.is_name_only() && signed.to_string() == wanted.to_string()
            }),
            Self::ExactRepository(wanted) => {
                NamedRef::parse(wanted).is_some_and(|wanted| signed.name == wanted.name)
            }
            Self::RemapIdentity {
                prefix,
                signed_prefix,
            } => remap(&intended, prefix, signed_prefix)
                .is_some_and(|remapped| repo_digest_or_exact(&remapped, &signed)),
        }
    }
}

fn identity_error(identity: &str, why: &str) -> InvalidPolicy {
    InvalidPolicy::Identity {
        identity: identity.to_string(),
        why: why.to_string(),
    }
}

/// `matchRepoDigestOrExact`: a tagged image (tag and digest both count as
/// tagged) needs the exact reference; an image named by digest only needs
/// the repository (its digest is checked against the payload separately).
fn repo_digest_or_exact(intended: &NamedRef, signed: &NamedRef) -> bool {
    if signed.is_name_only() {
        return false;
    }
    if intended.tag.is_some() {
        signed.to_string() == intended.to_string()
    } else if intended.digest.is_some() {
        signed.name == intended.name
    } else {
        false
    }
}

/// The image's reference with `prefix` replaced by `signed_prefix` when its
/// name is `prefix` or under it (at a `/`); unchanged otherwise. `None`
/// when the result is no canonical reference.
fn remap(intended: &NamedRef, prefix: &str, signed_prefix: &str) -> Option<NamedRef> {
    let under = intended
        .name
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !under {
        return Some(intended.clone());
    }
    let rewritten = intended.to_string().replacen(prefix, signed_prefix, 1);
    NamedRef::parse_canonical(&rewritten)
}

/// distribution's domain (`host[:port]`) and path grammar, for
/// `remapIdentity` prefixes.
fn remap_prefix_regexes() -> &'static (Regex, Regex) {
    static RE: OnceLock<(Regex, Regex)> = OnceLock::new();
    RE.get_or_init(|| {
        let label = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!(r"{label}(?:\.{label})*(?::[0-9]+)?");
        let component = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*";
        let host = Regex::new(&format!("^{domain}$")).expect("static grammar");
        let repository =
            Regex::new(&format!("^{domain}(?:/{component})+$")).expect("static grammar");
        (host, repository)
    })
}

fn valid_remap_prefix(s: &str) -> bool {
    let (host, repository) = remap_prefix_regexes();
    host.is_match(s) || repository.is_match(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00";

    fn image(s: &str) -> ImageReference {
        s.parse().unwrap()
    }

    #[test]
    fn named_refs_keep_bare_repositories_bare() {
        let r = NamedRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert!(r.is_name_only());
        let r = NamedRef::parse("localhost:5000/a/b").unwrap();
        assert_eq!(r.to_string(), "localhost:5000/a/b");
        let r = NamedRef::parse("index.docker.io/library/busybox:1").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:1");
        let r = NamedRef::parse(&format!("quay.io/a:v1@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("quay.io/a:v1@{D}"));
        assert!(NamedRef::parse("Not A Ref").is_none());
        assert!(NamedRef::parse_canonical("busybox").is_none());
        assert!(NamedRef::parse_canonical("docker.io/library/busybox:1").is_some());
    }

    /// (mode, image, signed identity, matches)
    fn table() -> Vec<(SignedIdentity, String, String, bool)> {
        use SignedIdentity::*;
        let by_digest = format!("quay.io/app@{D}");
        let mirrored_digest = format!("mirror.local/vendor/i@{D}");
        let remap =
            SignedIdentity::remap_identity("mirror.local/vendor", "vendor.example").unwrap();
        let rows: Vec<(SignedIdentity, &str, &str, bool)> = vec![
            (MatchExact, "quay.io/app:v1", "quay.io/app:v1", true),
            (MatchExact, "quay.io/app:v1", "quay.io/app:v2", false),
            (MatchExact, "quay.io/app:v1", "quay.io/app", false),
            (MatchExact, "busybox:1", "docker.io/library/busybox:1", true),
            (MatchExact, &by_digest, &by_digest, true),
            (MatchExact, &by_digest, "quay.io/app:v1", false),
            (
                MatchRepoDigestOrExact,
                "quay.io/app:v1",
                "quay.io/app:v1",
                true,
            ),
            (
                MatchRepoDigestOrExact,
                "quay.io/app:v1",
                "quay.io/app",
                false,
            ),
            (
                MatchRepoDigestOrExact,
                "quay.io/app:v1",
                "quay.io/app:v2",
                false,
            ),
            (MatchRepoDigestOrExact, &by_digest, "quay.io/app:v9", true),
            (MatchRepoDigestOrExact, &by_digest, "quay.io/app", false),
            (
                MatchRepoDigestOrExact,
                &by_digest,
                "quay.io/other:v1",
                false,
            ),
            (MatchRepository, "quay.io/app:v1", "quay.io/app", true),
            (MatchRepository, "quay.io/app:v1", "quay.io/app:v2", true),
            (MatchRepository, &by_digest, "quay.io/app", true),
            (MatchRepository, "quay.io/app:v1", "quay.io/app2", false),
            (MatchRepository, "quay.io/app:v1", "mirror.local/app", false),
            (
                MatchRepository,
                "busybox",
                "index.docker.io/library/busybox",
                true,
            ),
            (MatchRepository, "quay.io/app", "not a reference", false),
            (
                ExactReference("quay.io/app:v1".into()),
                "other.io/x:y",
                "quay.io/app:v1",
                true,
            ),
            (
                ExactReference("quay.io/app:v1".into()),
                "quay.io/app:v1",
                "quay.io/app",
                false,
            ),
            (
                ExactRepository("quay.io/app".into()),
                "other.io/x:y",
                "quay.io/app:v3",
                true,
            ),
            (
                ExactRepository("quay.io/app".into()),
                "other.io/x:y",
                "quay.io/app",
                true,
            ),
            (
                ExactRepository("quay.io/app".into()),
                "quay.io/app:y",
                "quay.io/ap",
                false,
            ),
            (
                remap.clone(),
                "mirror.local/vendor/p/i:1",
                "vendor.example/p/i:1",
                true,
            ),
            (
                remap.clone(),
                "mirror.local/vendor/p/i:1",
                "mirror.local/vendor/p/i:1",
                false,
            ),
            (
                remap.clone(),
                "mirror.local/vendor/p/i:1",
                "vendor.example/p/i",
                false,
            ),
            (
                remap.clone(),
                "mirror.local/vendorx/i:1",
                "mirror.local/vendorx/i:1",
                true,
            ),
            (
                remap.clone(),
                "mirror.local/vendorx/i:1",
                "vendor.examplex/i:1",
                false,
            ),
            (remap, &mirrored_digest, "vendor.example/i:any", true),
        ];
        rows.into_iter()
            .map(|(m, i, s, ok)| (m, i.to_string(), s.to_string(), ok))
            .collect()
    }

    #[test]
    fn every_mode_matches_as_containers_image_does() {
        for (mode, img, signed, want) in table() {
            assert_eq!(
                mode.matches(&image(&img), &signed),
                want,
                "{mode:?}: image {img}, signed {signed}"
            );
        }
    }

    #[test]
    fn parameters_are_checked_at_load() {
        assert!(SignedIdentity::exact_reference("quay.io/app:v1").is_ok());
        assert!(SignedIdentity::exact_reference("quay.io/app").is_err());
        assert!(SignedIdentity::exact_reference("Bad Ref").is_err());
        assert!(SignedIdentity::exact_repository("quay.io/app").is_ok());
        assert!(SignedIdentity::exact_repository("").is_err());
        for ok in [
            "quay.io",
            "localhost:5000",
            "quay.io/ns",
            "docker.io/library",
        ] {
            assert!(
                SignedIdentity::remap_identity(ok, "quay.io").is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "",
            "quay.io/",
            "quay.io/app:v1",
            "library/busybox/x:1",
            "*.quay.io",
        ] {
            assert!(
                SignedIdentity::remap_identity("quay.io", bad).is_err(),
                "{bad}"
            );
        }
    }
}
