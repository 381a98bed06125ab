//! Image references, normalised the way docker and containers/image do:
//! `busybox` is `docker.io/library/busybox:latest`, `foo/bar` is
//! `docker.io/foo/bar:latest`, and a reference with a digest but no tag keeps
//! no tag.
//!
//! The grammar is distribution's (as oci-spec ports it), matched by this
//! module's own regex rather than oci-spec's parser; this wrapper also
//! rejects the image-id forms CRI callers use and names the input in errors.
//!
//! oci-spec spells the tag `[\w][\w.-]{0,127}` with Rust's Unicode `\w`
//! (Go's `\w`, which distribution means, is ASCII): its compiled automaton,
//! which it keeps for the life of the process, holds about 7 MiB on the
//! heap, as much again as the whole idle daemon. The same grammar with an
//! ASCII `\w` compiles to a few KiB.

use oci_client::Reference;
use std::fmt;
use std::sync::OnceLock;

/// distribution's reference grammar: name (optional domain, then path
/// components), optional tag, optional digest. Groups: 1 name, 2 tag,
/// 3 digest.
const REFERENCE_REGEXP: &str = concat!(
    r"^((?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])",
    r"(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?/)?",
    r"[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?",
    r"(?:(?:/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?)",
    r"(?::([0-9A-Za-z_][0-9A-Za-z_.-]{0,127}))?",
    r"(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$",
);

/// The longest repository path distribution accepts.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

fn reference_regexp() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(REFERENCE_REGEXP).expect("static grammar"))
}

/// Parses `s` as oci-spec's `Reference::from_str` does (same grammar,
/// defaults and normalisation, same error texts), except that a tag is
/// ASCII only.
fn parse_reference(s: &str) -> Result<Reference, &'static str> {
    let caps = reference_regexp()
        .captures(s)
        .ok_or("invalid reference format")?;
    let (registry, repository) = split_domain(&caps[1]);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err("repository name must not be more than 255 characters");
    }
    let tag = caps.get(2).map(|m| m.as_str().to_string());
    let digest = caps.get(3).map(|m| m.as_str().to_string());
    if let Some(d) = &digest {
        let want = match d.split_once(':') {
            Some(("sha256", _)) => 64,
            Some(("sha384", _)) => 96,
            Some(("sha512", _)) => 128,
            Some(_) => return Err("unsupported digest algorithm"),
            None => return Err("invalid checksum digest format"),
        };
        if d.split_once(':').map_or(0, |(_, hex)| hex.len()) != want {
            return Err("invalid checksum digest length");
        }
    }
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t, d),
        (None, Some(d)) => Reference::with_digest(registry, repository, d),
        (Some(t), None) => Reference::with_tag(registry, repository, t),
        (None, None) => Reference::with_tag(registry, repository, "latest".into()),
    })
}

/// Splits a name into registry and repository: the first component is a
/// registry if it has a `.` or `:` or is `localhost`; otherwise the image
/// is on Docker Hub, where one-component names are in `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut rest) = match name.split_once('/') {
        Some((left, right)) if left.contains('.') || left.contains(':') || left == "localhost" => {
            (left.to_string(), right.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !rest.contains('/') {
        rest = format!("library/{rest}");
    }
    (domain, rest)
}

/// A parsed, normalised image reference.
///
/// # Examples
///
/// ```
/// use image_store::ImageReference;
/// let r: ImageReference = "busybox".parse()?;
/// assert_eq!(r.name(), "docker.io/library/busybox");
/// assert_eq!(r.tag(), Some("latest"));
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// # Ok::<(), image_store::ReferenceError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageReference {
    inner: Reference,
}

/// A reference that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {input:?}: {reason}")]
pub struct ReferenceError {
    /// What was given.
    pub input: String,
    /// Why it is not a reference.
    pub reason: String,
}

impl std::str::FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ReferenceError {
            input: s.to_string(),
            reason,
        };
        if s.trim() != s || s.is_empty() {
            return Err(fail("empty or surrounded by whitespace".into()));
        }
        // A bare image id is a valid repository name to the grammar
        // (64 lowercase hex characters) but never what a caller means.
        if image_id_of(s).is_some() {
            return Err(fail("is an image id, not a reference".into()));
        }
        let inner = parse_reference(s).map_err(|e| fail(e.to_string()))?;
        // oci-spec's grammar lets an uppercase first component through as a
        // repository on docker.io; distribution rejects it.
        if inner.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(fail("repository name must be lowercase".into()));
        }
        Ok(Self { inner })
    }
}

impl ImageReference {
    /// `registry/repository`, e.g. `registry.k8s.io/pause`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.inner.registry(), self.inner.repository())
    }

    /// The registry host (and port), e.g. `docker.io`.
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// `name:tag`, the RepoTags entry this reference contributes, if tagged.
    pub fn repo_tag(&self) -> Option<String> {
        self.tag().map(|t| format!("{}:{t}", self.name()))
    }

    /// `name@digest` for a given manifest digest: a RepoDigests entry.
    pub fn repo_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner.whole())
    }
}

/// If `s` names an image by id (`sha256:<64 hex>` or the bare 64 hex
/// characters), the canonical `sha256:<hex>` form.
///
/// # Examples
///
/// ```
/// use image_store::reference::image_id_of;
/// let hex = "a".repeat(64);
/// assert_eq!(image_id_of(&hex), Some(format!("sha256:{hex}")));
/// assert_eq!(image_id_of("busybox"), None);
/// ```
pub fn image_id_of(s: &str) -> Option<String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> ImageReference {
        s.parse().unwrap()
    }

    #[test]
    fn short_names_go_to_docker_library_latest() {
        let r = parse("busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(
            r.repo_tag().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
    }

    #[test]
    fn user_repositories_on_docker_hub() {
        assert_eq!(parse("foo/bar:1").to_string(), "docker.io/foo/bar:1");
    }

    #[test]
    fn registry_with_port_and_nested_path() {
        let r = parse("registry.k8s.io/e2e-test-images/busybox:1.29-2");
        assert_eq!(r.registry(), "registry.k8s.io");
        assert_eq!(r.repository(), "e2e-test-images/busybox");
        assert_eq!(r.tag(), Some("1.29-2"));
        let r = parse("127.0.0.1:5000/a/b");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.tag(), Some("latest"));
    }

    #[test]
    fn digest_only_has_no_tag() {
        let d = format!("sha256:{}", "0".repeat(64));
        let r = parse(&format!("busybox@{d}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.repo_tag(), None);
        assert_eq!(r.repo_digest(&d), format!("docker.io/library/busybox@{d}"));
    }

    #[test]
    fn malformed_references_are_errors_naming_the_input() {
        for bad in [
            "",
            " busybox",
            "Busybox",
            "busybox:",
            "a@sha256:12",
            "a:b:c",
            "-x",
        ] {
            let err = bad.parse::<ImageReference>().unwrap_err();
            assert_eq!(err.input, bad);
        }
        let id = "f".repeat(64);
        assert!(id.parse::<ImageReference>().is_err());
    }

    #[test]
    fn tags_are_ascii_words() {
        assert_eq!(parse("a:v1.2_x-y").tag(), Some("v1.2_x-y"));
        assert_eq!(
            parse(&format!("a:{}", "t".repeat(128))).tag().map(str::len),
            Some(128)
        );
        for bad in ["a:é", "a:tag\u{0660}", "a:.x", "a:-x"] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad}");
        }
        assert!(format!("a:{}", "t".repeat(129))
            .parse::<ImageReference>()
            .is_err());
        assert_eq!(
            parse("index.docker.io/busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(parse("localhost/x").registry(), "localhost");
    }

    #[test]
    fn image_ids() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(image_id_of(&hex).unwrap(), format!("sha256:{hex}"));
        assert_eq!(
            image_id_of(&format!("sha256:{hex}")).unwrap(),
            format!("sha256:{hex}")
        );
        assert_eq!(image_id_of(&hex[1..]), None);
        assert_eq!(image_id_of(&hex.to_uppercase()), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        // The grammar is oci-spec's but for the tag's ASCII `\w`: on ASCII
        // input both parsers agree, on results and on error texts. The
        // strategies lean to near-references so that many parse.
        #[test]
        fn agrees_with_oci_spec_on_ascii(
            host in "(([a-zA-Z0-9-]{1,6}[.]?){1,3}(:[0-9]{1,5})?/)?",
            path in "[a-zA-Z0-9]{1,6}(([._/:@-]|__){1,2}[a-zA-Z0-9]{1,6}){0,4}",
            tag in "(:[A-Za-z0-9_.-]{0,10})?",
            digest in "(@(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|[a-z0-9]{1,6}:[0-9a-fA-F]{0,100}))?",
        ) {
            let s = format!("{host}{path}{tag}{digest}");
            let ours = parse_reference(&s).map_err(str::to_string);
            let theirs = s.parse::<Reference>().map_err(|e| e.to_string());
            prop_assert_eq!(ours, theirs);
        }
    }

    proptest! {
        // Fuzz: arbitrary input never panics, and whatever parses prints
        // back to a reference that parses to the same thing.
        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC{0,80}") {
            if let Ok(r) = s.parse::<ImageReference>() {
                let again: ImageReference = r.to_string().parse().unwrap();
                prop_assert_eq!(again, r);
            }
        }

        #[test]
        fn reference_like_strings_round_trip(
            host in proptest::option::of("[a-z]{1,8}\\.[a-z]{2,3}(:[0-9]{2,5})?"),
            path in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}",
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            let mut s = String::new();
            if let Some(h) = &host { s.push_str(h); s.push('/'); }
            s.push_str(&path);
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            if let Ok(r) = s.parse::<ImageReference>() {
                prop_assert_eq!(r.tag(), Some(tag.as_deref().unwrap_or("latest")));
                let again: ImageReference = r.to_string().parse().unwrap();
                prop_assert_eq!(again, r);
            }
        }
    }
}
