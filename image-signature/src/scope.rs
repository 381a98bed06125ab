//! Which requirements apply to an image: the most specific `docker` scope
//! that matches, else the transport's `""` scope, else the policy's
//! `default` (containers-policy.json(5); containers/image's
//! `requirementsForImageRef` and `docker/policyconfiguration`).
//!
//! For `registry.example:5000/ns/app:v1` the scopes tried are, in order:
//! `registry.example:5000/ns/app:v1` (the image itself; `name@digest` for a
//! digest reference), `registry.example:5000/ns/app`,
//! `registry.example:5000/ns`, `registry.example:5000`, then the wildcards
//! `*.example` (the host's parent domains, port dropped), then `""`.

use crate::error::InvalidPolicy;
use crate::identity::NamedRef;
use image_store::ImageReference;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::OnceLock;

/// The transport the daemon pulls with; the only one whose scopes are
/// consulted.
pub const DOCKER_TRANSPORT: &str = "docker";

/// The part of the policy that decided.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PolicyScope {
    /// The top-level `default`.
    Default,
    /// `transports.<transport>[""]`.
    TransportDefault {
        /// The transport, `docker`.
        transport: String,
    },
    /// `transports.<transport>[<scope>]`.
    Scope {
        /// The transport, `docker`.
        transport: String,
        /// The scope as written in the policy.
        scope: String,
    },
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyScope::Default => f.write_str("default"),
            PolicyScope::TransportDefault { transport } => {
                write!(f, "transports.{transport}[\"\"]")
            }
            PolicyScope::Scope { transport, scope } => {
                write!(f, "transports.{transport}[{scope:?}]")
            }
        }
    }
}

/// The scopes to try for `image`, most specific first, `""` excluded.
///
/// # Examples
///
/// ```
/// use image_signature::scope::candidates;
/// let image = "quay.io:443/ns/app:v1".parse()?;
/// assert_eq!(
///     candidates(&image),
///     ["quay.io:443/ns/app:v1", "quay.io:443/ns/app", "quay.io:443/ns", "quay.io:443", "*.io"]
/// );
/// # Ok::<(), image_store::ReferenceError>(())
/// ```
pub fn candidates(image: &ImageReference) -> Vec<String> {
    let name = image.name();
    // A reference with both a tag and a digest is looked up by its digest:
    // the digest is what gets pulled and run. (containers/image refuses
    // such references in its docker transport altogether.)
    let mut out = vec![match (image.digest(), image.tag()) {
        (Some(digest), _) => format!("{name}@{digest}"),
        (None, Some(tag)) => format!("{name}:{tag}"),
        (None, None) => format!("{name}:latest"),
    }];
    let mut prefix = name.as_str();
    loop {
        out.push(prefix.to_string());
        match prefix.rfind('/') {
            Some(slash) => prefix = &prefix[..slash],
            None => break,
        }
    }
    let mut host = prefix.split(':').next().unwrap_or(prefix);
    while let Some(dot) = host.find('.') {
        host = &host[dot + 1..];
        out.push(format!("*.{host}"));
    }
    out
}

/// Checks a `docker` scope key at load. containers/image accepts any
/// string and lets a malformed one silently never match; we refuse it,
/// since a scope that never matches is a policy that does not say what its
/// author meant.
pub(crate) fn validate_docker_scope(scope: &str) -> Result<(), InvalidPolicy> {
    let fail = |why: &str| {
        Err(InvalidPolicy::Scope {
            scope: scope.to_string(),
            why: why.to_string(),
        })
    };
    if scope.is_empty() {
        return Ok(());
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        return if host_regex().is_match(domain) && !domain.contains(':') {
            Ok(())
        } else {
            fail("a wildcard is `*.` then a domain without a port")
        };
    }
    if scope.contains('*') {
        return fail("`*` is only allowed as a leading `*.` (e.g. `*.example.com`)");
    }
    let host = scope.split('/').next().unwrap_or(scope);
    // Image names only have a registry host when it has a `.` or a port or
    // is `localhost` (`busybox` is `docker.io/library/busybox`).
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return fail("not in fully expanded form: it must start with a registry host (e.g. docker.io/library/busybox)");
    }
    if host == scope {
        return if host_regex().is_match(scope) {
            Ok(())
        } else {
            fail("not a host[:port]")
        };
    }
    if host == "index.docker.io" {
        return fail("images are named docker.io/…, never index.docker.io/…");
    }
    match NamedRef::parse(scope) {
        Some(r) if r.to_string() == scope || is_docker_hub_namespace(scope) => Ok(()),
        Some(r) => fail(&format!("not in fully expanded form; did you mean {r:?}?")),
        None => fail("not an image reference, repository or namespace"),
    }
}

/// `docker.io/<one component>` is a namespace scope (like
/// `docker.io/library`), though as a reference it would expand to
/// `docker.io/library/<component>`.
fn is_docker_hub_namespace(scope: &str) -> bool {
    scope
        .strip_prefix("docker.io/")
        .is_some_and(|rest| !rest.contains(['/', ':', '@']))
}

fn host_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let label = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        Regex::new(&format!(r"^{label}(?:\.{label})*(?::[0-9]+)?$")).expect("static grammar")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &str) -> ImageReference {
        s.parse().unwrap()
    }

    #[test]
    fn candidates_go_from_the_image_to_wildcard_domains() {
        assert_eq!(
            candidates(&image("busybox")),
            [
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox",
                "docker.io/library",
                "docker.io",
                "*.io"
            ]
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            candidates(&image(&format!("a.b.example.com:5000/x@{d}")))[..2],
            [
                format!("a.b.example.com:5000/x@{d}"),
                "a.b.example.com:5000/x".into()
            ]
        );
        assert_eq!(
            candidates(&image("a.b.example.com:5000/x:1"))[3..],
            ["*.b.example.com", "*.example.com", "*.com"]
        );
        assert_eq!(
            candidates(&image(&format!("localhost/x:t@{d}")))[0],
            format!("localhost/x@{d}")
        );
        assert_eq!(
            candidates(&image("localhost/x")).last().unwrap(),
            "localhost"
        );
    }

    #[test]
    fn scopes_are_checked() {
        for ok in [
            "",
            "docker.io",
            "localhost:5000",
            "*.example.com",
            "docker.io/library",
            "docker.io/library/busybox",
            "docker.io/library/busybox:latest",
            "quay.io/ns/app",
            "registry.k8s.io/pause:3.9",
        ] {
            assert!(validate_docker_scope(ok).is_ok(), "{ok}");
        }
        for bad in [
            "busybox",
            "library/busybox",
            "index.docker.io/library/busybox",
            "example*.*.com",
            "*.example.com:5000",
            "*.",
            "quay.io/App",
            "quay.io/",
            "bad host",
        ] {
            assert!(validate_docker_scope(bad).is_err(), "{bad}");
        }
    }
}
