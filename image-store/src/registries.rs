//! Registry configuration in the spirit of containers' `registries.conf`:
//! per-prefix mirrors tried in order, then the registry itself, and which
//! endpoints speak plain HTTP.
//!
//! The matching prefix of the image name is replaced by the mirror's
//! location, so the repository path is kept:
//! `registry.k8s.io/e2e-test-images/busybox` via mirror `127.0.0.1:5000` is
//! fetched as `127.0.0.1:5000/e2e-test-images/busybox`.

use crate::reference::ImageReference;
use serde::{Deserialize, Serialize};

/// Every registry entry; embedded in the daemon's TOML as
/// `[[image.registries]]` tables.
///
/// # Examples
///
/// ```
/// use image_store::RegistriesConfig;
/// let config: RegistriesConfig = toml::from_str(r#"
///     [[registries]]
///     prefix = "registry.k8s.io"
///     mirrors = ["127.0.0.1:5000"]
///     insecure = true
/// "#)?;
/// assert_eq!(config.registries[0].mirrors, ["127.0.0.1:5000"]);
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// Per-prefix entries; the longest matching prefix wins.
    #[serde(default)]
    pub registries: Vec<RegistryConfig>,
}

/// One `[[registries]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// An image-name prefix: a registry host (`registry.k8s.io`) or a host and
    /// repository path (`docker.io/library`).
    pub prefix: String,
    /// Mirror locations (`host[:port][/path]`), tried in order before the
    /// registry itself.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Whether the registry and its mirrors are reached over plain HTTP.
    #[serde(default)]
    pub insecure: bool,
    /// Only the mirrors are tried, never the registry itself: for nodes
    /// (and test machines) that must not reach past their mirrors.
    #[serde(default)]
    pub mirrors_only: bool,
}

/// Where to try fetching an image from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Repository path on that host.
    pub repository: String,
    /// Plain HTTP rather than HTTPS.
    pub insecure: bool,
}

impl RegistriesConfig {
    /// The endpoints to try for `reference`, in order: the mirrors of the
    /// longest matching prefix, then the registry itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::{ImageReference, RegistriesConfig, RegistryConfig};
    /// let config = RegistriesConfig { registries: vec![RegistryConfig {
    ///     prefix: "registry.k8s.io".into(),
    ///     mirrors: vec!["127.0.0.1:5000".into()],
    ///     insecure: true,
    ///     mirrors_only: false,
    /// }]};
    /// let r: ImageReference = "registry.k8s.io/e2e-test-images/busybox:1.29-2".parse()?;
    /// let endpoints = config.endpoints(&r);
    /// assert_eq!(endpoints[0].host, "127.0.0.1:5000");
    /// assert_eq!(endpoints[0].repository, "e2e-test-images/busybox");
    /// assert_eq!(endpoints[1].host, "registry.k8s.io");
    /// # Ok::<(), image_store::ReferenceError>(())
    /// ```
    pub fn endpoints(&self, reference: &ImageReference) -> Vec<Endpoint> {
        let name = reference.name();
        let entry = self
            .registries
            .iter()
            .filter(|r| prefix_matches(&r.prefix, &name))
            .max_by_key(|r| r.prefix.len());
        let mut out = Vec::new();
        if let Some(entry) = entry {
            let rest = &name[entry.prefix.trim_end_matches('/').len()..];
            for mirror in &entry.mirrors {
                let location = format!("{}{rest}", mirror.trim_end_matches('/'));
                if let Some((host, repository)) = location.split_once('/') {
                    out.push(Endpoint {
                        host: host.to_string(),
                        repository: repository.to_string(),
                        insecure: entry.insecure,
                    });
                }
            }
        }
        if entry.is_some_and(|e| e.mirrors_only) {
            return out;
        }
        out.push(Endpoint {
            host: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            insecure: entry
                .is_some_and(|e| e.insecure && registry_of(&e.prefix) == reference.registry()),
        });
        out
    }
}

fn registry_of(prefix: &str) -> &str {
    prefix.split('/').next().unwrap_or(prefix)
}

fn prefix_matches(prefix: &str, name: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    !prefix.is_empty()
        && (name == prefix
            || name
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_only_never_yields_the_registry_itself() {
        let config = RegistriesConfig {
            registries: vec![RegistryConfig {
                prefix: "registry.k8s.io".into(),
                mirrors: vec!["127.0.0.1:5000".into()],
                insecure: true,
                mirrors_only: true,
            }],
        };
        let r: ImageReference = "registry.k8s.io/pause:3.9".parse().unwrap();
        let hosts: Vec<_> = config.endpoints(&r).into_iter().map(|e| e.host).collect();
        assert_eq!(hosts, ["127.0.0.1:5000"]);
    }

    fn config() -> RegistriesConfig {
        RegistriesConfig {
            registries: vec![
                RegistryConfig {
                    prefix: "registry.k8s.io".into(),
                    mirrors: vec!["127.0.0.1:5000".into(), "mirror.example/k8s".into()],
                    insecure: true,
                    mirrors_only: false,
                },
                RegistryConfig {
                    prefix: "docker.io/library".into(),
                    mirrors: vec!["hub-mirror.example".into()],
                    insecure: false,
                    mirrors_only: false,
                },
                RegistryConfig {
                    prefix: "docker.io".into(),
                    mirrors: vec![],
                    insecure: false,
                    mirrors_only: false,
                },
            ],
        }
    }

    fn endpoints(r: &str) -> Vec<(String, String, bool)> {
        config()
            .endpoints(&r.parse().unwrap())
            .into_iter()
            .map(|e| (e.host, e.repository, e.insecure))
            .collect()
    }

    #[test]
    fn mirrors_in_order_then_registry_keeping_repository_path() {
        assert_eq!(
            endpoints("registry.k8s.io/e2e-test-images/busybox:1.29-2"),
            [
                (
                    "127.0.0.1:5000".into(),
                    "e2e-test-images/busybox".into(),
                    true
                ),
                (
                    "mirror.example".into(),
                    "k8s/e2e-test-images/busybox".into(),
                    true
                ),
                (
                    "registry.k8s.io".into(),
                    "e2e-test-images/busybox".into(),
                    true
                ),
            ]
        );
    }

    #[test]
    fn longest_prefix_wins_and_short_names_resolve() {
        assert_eq!(
            endpoints("busybox"),
            [
                ("hub-mirror.example".into(), "busybox".into(), false),
                ("docker.io".into(), "library/busybox".into(), false),
            ]
        );
        assert_eq!(
            endpoints("foo/bar"),
            [("docker.io".into(), "foo/bar".into(), false)]
        );
    }

    #[test]
    fn prefix_must_end_at_a_path_boundary() {
        assert_eq!(
            endpoints("registry.k8s.io.evil.example/x"),
            [("registry.k8s.io.evil.example".into(), "x".into(), false)]
        );
    }

    #[test]
    fn toml_rejects_unknown_fields() {
        let bad = "[[registries]]\nprefix = \"a\"\nmirror = [\"b\"]\n";
        assert!(toml::from_str::<RegistriesConfig>(bad).is_err());
    }
}
