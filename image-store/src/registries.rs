//! Registry configuration in the spirit of containers' `registries.conf`:
//! per-prefix mirrors tried in order, then the registry itself, which
//! endpoints speak plain HTTP, which are blocked, and the TLS files of
//! each entry.
//!
//! The matching prefix of the image name is replaced by the mirror's
//! location, so the repository path is kept:
//! `registry.k8s.io/e2e-test-images/busybox` via mirror `127.0.0.1:5000` is
//! fetched as `127.0.0.1:5000/e2e-test-images/busybox`.
//!
//! [`RegistriesConfig`] is the configuration as written; [`Registries`] is
//! it loaded (TLS files read and checked, the node's [`AuthFile`] beside),
//! what pulls go by: which endpoints to try ([`Registries::endpoints`]),
//! whether the image may be pulled at all ([`Registries::blocked`]), and
//! with which credentials each endpoint is asked
//! ([`Registries::auth_for`]).

use crate::auth::RegistryAuth;
use crate::auth_file::AuthFile;
use crate::reference::ImageReference;
use crate::tls::{RegistryTls, TlsError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

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

impl RegistriesConfig {
    /// This configuration loaded: [`Registries::load`].
    pub fn load(&self) -> Result<Registries, TlsError> {
        Registries::load(self)
    }
}

/// One `[[registries]]` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Images under this prefix are never pulled (CRI-O's
    /// registries.conf `blocked`), and a mirror at a location under it is
    /// never asked.
    #[serde(default)]
    pub blocked: bool,
    /// A PEM bundle of CA certificates trusted, beside the system's, for
    /// the registry and its mirrors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain) presented to the registry and its
    /// mirrors; with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// Where to try fetching an image from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Repository path on that host.
    pub repository: String,
    /// Plain HTTP rather than HTTPS.
    pub insecure: bool,
    /// The CA certificates and client certificate of the registry entry
    /// that led here, if it names any.
    pub tls: Option<Arc<RegistryTls>>,
}

/// A registry configuration in force: [`RegistriesConfig`] with its TLS
/// files read and checked, and the node's [`AuthFile`]. Cheap to clone.
///
/// # Examples
///
/// ```
/// use image_store::{ImageReference, RegistriesConfig, RegistryConfig};
/// let config = RegistriesConfig { registries: vec![
///     RegistryConfig {
///         prefix: "registry.k8s.io".into(),
///         mirrors: vec!["127.0.0.1:5000".into()],
///         insecure: true,
///         ..Default::default()
///     },
///     RegistryConfig { prefix: "quay.io/evil".into(), blocked: true, ..Default::default() },
/// ]};
/// let registries = config.load()?;
/// let r: ImageReference = "registry.k8s.io/e2e-test-images/busybox:1.29-2".parse()?;
/// let endpoints = registries.endpoints(&r);
/// assert_eq!(endpoints[0].host, "127.0.0.1:5000");
/// assert_eq!(endpoints[0].repository, "e2e-test-images/busybox");
/// assert_eq!(endpoints[1].host, "registry.k8s.io");
/// let evil: ImageReference = "quay.io/evil/app:1".parse()?;
/// assert_eq!(registries.blocked(&evil), Some("quay.io/evil"));
/// assert!(registries.endpoints(&evil).is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Registries {
    entries: Arc<[Entry]>,
    auth: Arc<AuthFile>,
}

/// One entry and its TLS material.
#[derive(Debug)]
struct Entry {
    config: RegistryConfig,
    tls: Option<Arc<RegistryTls>>,
}

impl Registries {
    /// Loads `config`: reads and checks every TLS file it names. Blocking:
    /// call it off the async workers.
    pub fn load(config: &RegistriesConfig) -> Result<Registries, TlsError> {
        let entries = config
            .registries
            .iter()
            .map(|entry| {
                Ok(Entry {
                    config: entry.clone(),
                    tls: RegistryTls::load(entry)?.map(Arc::new),
                })
            })
            .collect::<Result<Vec<_>, TlsError>>()?;
        Ok(Registries {
            entries: entries.into(),
            auth: Arc::default(),
        })
    }

    /// These registries with the credentials of `file`.
    pub fn with_auth_file(mut self, file: AuthFile) -> Registries {
        self.auth = Arc::new(file);
        self
    }

    /// The node's stored credentials (empty when there are none).
    pub fn auth_file(&self) -> &AuthFile {
        &self.auth
    }

    /// The prefix of a `blocked` entry that stops `reference` from being
    /// pulled, if one does: the image's own (longest matching) entry is
    /// blocked, or the image may come only from its mirrors
    /// (`mirrors_only`) and every mirror's location is blocked (the first
    /// one's prefix). No endpoint may be asked then.
    pub fn blocked(&self, reference: &ImageReference) -> Option<&str> {
        let name = reference.name();
        if let Some(prefix) = self.blocking(&name) {
            return Some(prefix);
        }
        let entry = self.entry_for(&name)?;
        if !entry.config.mirrors_only {
            return None;
        }
        let rest = &name[entry.config.prefix.trim_end_matches('/').len()..];
        let mut blocked = entry
            .config
            .mirrors
            .iter()
            .map(|mirror| self.blocking(&mirror_location(mirror, rest)));
        let first = blocked.next()??;
        blocked.all(|b| b.is_some()).then_some(first)
    }

    /// The entry `location` (`host/path`) falls under, if that entry is
    /// blocked: its prefix.
    fn blocking(&self, location: &str) -> Option<&str> {
        self.entry_for(location)
            .filter(|e| e.config.blocked)
            .map(|e| e.config.prefix.as_str())
    }

    /// The entry with the longest prefix matching `name`.
    fn entry_for(&self, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|e| prefix_matches(&e.config.prefix, name))
            .max_by_key(|e| e.config.prefix.len())
    }

    /// The endpoints to try for `reference`, in order: the mirrors of the
    /// longest matching prefix (less those under a blocked prefix), then
    /// the registry itself unless `mirrors_only`; none for a blocked image.
    /// Mirrors take their entry's `insecure` and TLS files; the registry
    /// itself takes them when the entry's prefix is on its host.
    pub fn endpoints(&self, reference: &ImageReference) -> Vec<Endpoint> {
        let name = reference.name();
        let entry = self.entry_for(&name);
        if entry.is_some_and(|e| e.config.blocked) {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(entry) = entry {
            let rest = &name[entry.config.prefix.trim_end_matches('/').len()..];
            out.extend(self.mirrors(entry, rest));
            if entry.config.mirrors_only {
                return out;
            }
        }
        let own = entry.filter(|e| registry_of(&e.config.prefix) == reference.registry());
        out.push(Endpoint {
            host: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            insecure: own.is_some_and(|e| e.config.insecure),
            tls: own.and_then(|e| e.tls.clone()),
        });
        out
    }

    /// `entry`'s mirrors for the image path `rest` below its prefix, less
    /// those at a blocked location.
    fn mirrors<'a>(
        &'a self,
        entry: &'a Entry,
        rest: &'a str,
    ) -> impl Iterator<Item = Endpoint> + 'a {
        entry.config.mirrors.iter().filter_map(move |mirror| {
            let location = mirror_location(mirror, rest);
            if let Some(prefix) = self.blocking(&location) {
                tracing::debug!(%location, %prefix, "skipping a blocked mirror");
                return None;
            }
            let (host, repository) = location.split_once('/')?;
            Some(Endpoint {
                host: host.to_string(),
                repository: repository.to_string(),
                insecure: entry.config.insecure,
                tls: entry.tls.clone(),
            })
        })
    }

    /// The credentials to ask `endpoint` (one of `reference`'s endpoints)
    /// with, given the caller's `caller` (CRI's `AuthConfig`, as kubelet
    /// picked it for the image's registry). The registry itself gets the
    /// caller's credentials when there are any, else the auth file's for
    /// its location; a mirror gets the auth file's for the mirror's own
    /// location first, else the caller's (as CRI-O and containerd send
    /// them). Anonymous when neither has any.
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::{AuthFile, ImageReference, RegistriesConfig, RegistryAuth, RegistryConfig};
    /// let config = RegistriesConfig { registries: vec![RegistryConfig {
    ///     prefix: "registry.example".into(),
    ///     mirrors: vec!["mirror.example".into()],
    ///     ..Default::default()
    /// }]};
    /// let file = AuthFile::parse("/etc/auth.json", br#"{"auths": {
    ///     "mirror.example": {"registrytoken": "mirror"},
    ///     "registry.example": {"registrytoken": "file"}
    /// }}"#)?.file;
    /// let registries = config.load()?.with_auth_file(file);
    /// let r: ImageReference = "registry.example/app:1".parse()?;
    /// let [mirror, origin] = registries.endpoints(&r).try_into().unwrap();
    /// let kubelet = RegistryAuth::Bearer("kubelet".into());
    /// assert_eq!(registries.auth_for(&mirror, &r, &kubelet), RegistryAuth::Bearer("mirror".into()));
    /// assert_eq!(registries.auth_for(&origin, &r, &kubelet), kubelet);
    /// assert_eq!(registries.auth_for(&origin, &r, &RegistryAuth::Anonymous), RegistryAuth::Bearer("file".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn auth_for(
        &self,
        endpoint: &Endpoint,
        reference: &ImageReference,
        caller: &RegistryAuth,
    ) -> RegistryAuth {
        let stored = self.auth.lookup(&endpoint.host, &endpoint.repository);
        let given = Some(caller).filter(|c| !c.is_anonymous());
        let origin =
            endpoint.host == reference.registry() && endpoint.repository == reference.repository();
        let chosen = match origin {
            true => given.or(stored),
            false => stored.or(given),
        };
        chosen.cloned().unwrap_or_default()
    }
}

/// Where `mirror` keeps the image whose path below its entry's prefix is
/// `rest`.
fn mirror_location(mirror: &str, rest: &str) -> String {
    format!("{}{rest}", mirror.trim_end_matches('/'))
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
                ..Default::default()
            }],
        };
        let r: ImageReference = "registry.k8s.io/pause:3.9".parse().unwrap();
        let hosts: Vec<_> = config
            .load()
            .unwrap()
            .endpoints(&r)
            .into_iter()
            .map(|e| e.host)
            .collect();
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
                    ..Default::default()
                },
                RegistryConfig {
                    prefix: "docker.io/library".into(),
                    mirrors: vec!["hub-mirror.example".into()],
                    insecure: false,
                    mirrors_only: false,
                    ..Default::default()
                },
                RegistryConfig {
                    prefix: "docker.io".into(),
                    mirrors: vec![],
                    insecure: false,
                    mirrors_only: false,
                    ..Default::default()
                },
            ],
        }
    }

    fn endpoints(r: &str) -> Vec<(String, String, bool)> {
        config()
            .load()
            .unwrap()
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

    fn blocking_config() -> Registries {
        let entry = |prefix: &str, mirrors: &[&str], blocked: bool| RegistryConfig {
            prefix: prefix.into(),
            mirrors: mirrors.iter().map(|m| m.to_string()).collect(),
            blocked,
            ..Default::default()
        };
        RegistriesConfig {
            registries: vec![
                entry("quay.io", &[], true),
                entry("quay.io/allowed", &[], false),
                entry(
                    "registry.example",
                    &["evil.example/m", "good.example"],
                    false,
                ),
                entry("evil.example", &[], true),
            ],
        }
        .load()
        .unwrap()
    }

    #[test]
    fn a_blocked_prefix_refuses_its_images_and_the_longest_entry_decides() {
        let registries = blocking_config();
        let r = |s: &str| s.parse::<ImageReference>().unwrap();
        assert_eq!(
            registries.blocked(&r("quay.io/team/app:1")),
            Some("quay.io")
        );
        assert!(registries.endpoints(&r("quay.io/team/app:1")).is_empty());
        assert_eq!(registries.blocked(&r("quay.io/allowed/app:1")), None);
        assert_eq!(registries.endpoints(&r("quay.io/allowed/app:1")).len(), 1);
        assert_eq!(registries.blocked(&r("quay.io.example/app")), None);
        assert_eq!(
            registries.blocked(&r("evil.example/app")),
            Some("evil.example")
        );
        // Some mirror is left: not blocked.
        assert_eq!(registries.blocked(&r("registry.example/app")), None);
    }

    #[test]
    fn an_image_whose_only_mirrors_are_all_blocked_is_blocked() {
        let config = RegistriesConfig {
            registries: vec![
                RegistryConfig {
                    prefix: "registry.example".into(),
                    mirrors: vec!["evil.example/a".into(), "evil.example/b".into()],
                    mirrors_only: true,
                    ..Default::default()
                },
                RegistryConfig {
                    prefix: "evil.example".into(),
                    blocked: true,
                    ..Default::default()
                },
            ],
        };
        let registries = config.load().unwrap();
        let r: ImageReference = "registry.example/app:1".parse().unwrap();
        assert_eq!(registries.blocked(&r), Some("evil.example"));
        assert!(registries.endpoints(&r).is_empty());
    }

    #[test]
    fn a_mirror_under_a_blocked_prefix_is_skipped() {
        let registries = blocking_config();
        let r: ImageReference = "registry.example/app:1".parse().unwrap();
        let hosts: Vec<String> = registries
            .endpoints(&r)
            .into_iter()
            .map(|e| e.host)
            .collect();
        assert_eq!(hosts, ["good.example", "registry.example"]);
    }

    #[test]
    fn an_unreadable_ca_file_fails_the_load_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let config = RegistriesConfig {
            registries: vec![RegistryConfig {
                prefix: "registry.example".into(),
                ca_file: Some(missing.clone()),
                ..Default::default()
            }],
        };
        let err = config.load().unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(
            err.contains("registry \"registry.example\": ca_file"),
            "{err}"
        );
    }

    #[test]
    fn tls_files_go_to_the_mirrors_and_to_the_registry_of_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.cert.pem()).unwrap();
        let registries = RegistriesConfig {
            registries: vec![
                RegistryConfig {
                    prefix: "registry.example".into(),
                    mirrors: vec!["mirror.example".into()],
                    ca_file: Some(ca_file),
                    ..Default::default()
                },
                RegistryConfig {
                    prefix: "docker.io".into(),
                    mirrors: vec!["registry.example/hub".into()],
                    ..Default::default()
                },
            ],
        }
        .load()
        .unwrap();
        let tls = |image: &str| -> Vec<(String, bool)> {
            let r: ImageReference = image.parse().unwrap();
            let endpoints = registries.endpoints(&r).into_iter();
            endpoints.map(|e| (e.host, e.tls.is_some())).collect()
        };
        assert_eq!(
            tls("registry.example/app:1"),
            [
                ("mirror.example".into(), true),
                ("registry.example".into(), true)
            ]
        );
        // The entry of the image decides, not the host's own entry.
        assert_eq!(
            tls("busybox"),
            [
                ("registry.example".into(), false),
                ("docker.io".into(), false)
            ]
        );
    }

    #[test]
    fn stored_credentials_follow_the_endpoint_asked() {
        let file = AuthFile::parse(
            "/etc/auth.json",
            br#"{"auths": {
                "mirror.example/team": {"registrytoken": "mirror-team"},
                "mirror.example": {"registrytoken": "mirror"},
                "registry.example/team/app": {"registrytoken": "app"}
            }}"#,
        )
        .unwrap()
        .file;
        let registries = RegistriesConfig {
            registries: vec![RegistryConfig {
                prefix: "registry.example".into(),
                mirrors: vec!["mirror.example".into()],
                ..Default::default()
            }],
        }
        .load()
        .unwrap()
        .with_auth_file(file);
        let bearer = |t: &str| RegistryAuth::Bearer(t.into());
        let auths = |image: &str, caller: &RegistryAuth| -> Vec<RegistryAuth> {
            let r: ImageReference = image.parse().unwrap();
            registries
                .endpoints(&r)
                .iter()
                .map(|e| registries.auth_for(e, &r, caller))
                .collect()
        };
        let anonymous = RegistryAuth::Anonymous;
        assert_eq!(
            auths("registry.example/team/app:1", &anonymous),
            [bearer("mirror-team"), bearer("app")]
        );
        assert_eq!(
            auths("registry.example/other/app:1", &anonymous),
            [bearer("mirror"), RegistryAuth::Anonymous]
        );
        let kubelet = bearer("kubelet");
        assert_eq!(
            auths("registry.example/team/app:1", &kubelet),
            [bearer("mirror-team"), bearer("kubelet")]
        );
        assert_eq!(auths("other.example/app:1", &kubelet), [bearer("kubelet")]);
    }
}
