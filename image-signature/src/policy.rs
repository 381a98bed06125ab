//! `policy.json` in containers-policy.json(5)'s format, parsed as strictly
//! as containers/image parses it (unknown or duplicated fields, empty
//! requirement lists and a missing `default` refuse the whole file), and
//! stricter where this library does less than the spec: a requirement it
//! cannot check (`signedBy` with GPG keys, `signedBaseLayer`,
//! `sigstoreSigned` with Fulcio, a PKI or Rekor) refuses the file with an
//! error naming it, never passes silently.
//!
//! Every transport's requirements are parsed and checked, so a file that
//! CRI-O or Podman would refuse is refused here too, but only `docker`
//! scopes are consulted: the daemon pulls from registries.

use crate::error::{InvalidPolicy, KeyError, PolicyError};
use crate::identity::SignedIdentity;
use crate::key::{PublicKey, MAX_KEY_BYTES};
use crate::scope::{self, PolicyScope, DOCKER_TRANSPORT};
use base64::Engine as _;
use image_store::ImageReference;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The largest policy file we read. Real ones are a few KiB; keys are
/// referenced by path or held as a few hundred bytes of base64.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// One policy requirement. All requirements of a scope must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Accepts any image (without counting it as verified).
    InsecureAcceptAnything,
    /// Refuses every image.
    Reject,
    /// Needs a cosign signature by one of `keys`, for `D`, claiming an
    /// identity `signed_identity` accepts.
    SigstoreSigned {
        /// The trusted keys (one from `keyPath`/`keyData`, several from
        /// `keyPaths`/`keyDatas`).
        keys: Vec<PublicKey>,
        /// What identity a signature may claim.
        signed_identity: SignedIdentity,
    },
}

/// A requirement's type, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RequirementKind {
    /// `insecureAcceptAnything`.
    InsecureAcceptAnything,
    /// `reject`.
    Reject,
    /// `sigstoreSigned`.
    SigstoreSigned,
}

impl Requirement {
    /// The requirement's type.
    pub fn kind(&self) -> RequirementKind {
        match self {
            Requirement::InsecureAcceptAnything => RequirementKind::InsecureAcceptAnything,
            Requirement::Reject => RequirementKind::Reject,
            Requirement::SigstoreSigned { .. } => RequirementKind::SigstoreSigned,
        }
    }
}

/// A loaded, checked signature policy.
///
/// # Examples
///
/// ```
/// use image_signature::{PolicyScope, RequirementKind, SignaturePolicy};
/// let policy = SignaturePolicy::from_json(br#"{
///     "default": [{"type": "reject"}],
///     "transports": {"docker": {
///         "*.example.com": [{"type": "insecureAcceptAnything"}],
///         "quay.io/team": [{"type": "reject"}]
///     }}
/// }"#)?;
/// let (scope, requirements) = policy.requirements_for(&"a.example.com/app:1".parse()?);
/// assert_eq!(scope.to_string(), r#"transports.docker["*.example.com"]"#);
/// assert_eq!(requirements[0].kind(), RequirementKind::InsecureAcceptAnything);
/// assert_eq!(policy.requirements_for(&"busybox".parse()?).0, PolicyScope::Default);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignaturePolicy {
    default: Vec<Requirement>,
    transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

impl SignaturePolicy {
    /// Reads and checks the policy file at `path` (at most
    /// [`MAX_POLICY_BYTES`]), reading every key it names.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let origin = path.display().to_string();
        let bytes = read_bounded(path, MAX_POLICY_BYTES).map_err(|e| match e {
            Bounded::TooLarge => PolicyError::TooLarge {
                origin: origin.clone(),
                limit: MAX_POLICY_BYTES,
            },
            Bounded::Io(source) => PolicyError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Self::parse(&bytes, origin)
    }

    /// Checks a policy given as bytes; `keyPath`s are read from disk.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyError> {
        Self::parse(bytes, "<bytes>".to_string())
    }

    fn parse(bytes: &[u8], origin: String) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                origin,
                limit: MAX_POLICY_BYTES,
            });
        }
        let raw: RawPolicy =
            serde_json::from_slice(bytes).map_err(|source| PolicyError::Syntax {
                origin: origin.clone(),
                source,
            })?;
        let invalid = |location: String, reason| PolicyError::Invalid {
            origin: origin.clone(),
            location,
            reason,
        };
        let default = requirements(raw.default, "default").map_err(|(l, r)| invalid(l, r))?;
        let mut transports = BTreeMap::new();
        for (transport, scopes) in raw.transports.0 {
            let mut checked = BTreeMap::new();
            for (scope, list) in scopes.0 {
                let location = format!("transports.{transport}[{scope:?}]");
                if transport == DOCKER_TRANSPORT {
                    scope::validate_docker_scope(&scope)
                        .map_err(|r| invalid(location.clone(), r))?;
                }
                let list = requirements(list, &location).map_err(|(l, r)| invalid(l, r))?;
                checked.insert(scope, list);
            }
            transports.insert(transport, checked);
        }
        Ok(Self {
            default,
            transports,
        })
    }

    /// The requirements that apply to `image` (the logical reference the
    /// pod named), and which scope they come from.
    pub fn requirements_for(&self, image: &ImageReference) -> (PolicyScope, &[Requirement]) {
        if let Some(scopes) = self.transports.get(DOCKER_TRANSPORT) {
            for candidate in scope::candidates(image) {
                if let Some(list) = scopes.get(&candidate) {
                    let scope = PolicyScope::Scope {
                        transport: DOCKER_TRANSPORT.into(),
                        scope: candidate,
                    };
                    return (scope, list);
                }
            }
            if let Some(list) = scopes.get("") {
                let scope = PolicyScope::TransportDefault {
                    transport: DOCKER_TRANSPORT.into(),
                };
                return (scope, list);
            }
        }
        (PolicyScope::Default, &self.default)
    }
}

/// The file as JSON, before any check beyond its shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Vec<RawRequirement>,
    #[serde(default)]
    transports: UniqueMap<UniqueMap<Vec<RawRequirement>>>,
}

/// Every field any requirement type has, so that unknown fields are refused
/// by serde and each type's own fields are checked after.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRequirement {
    #[serde(rename = "type")]
    kind: String,
    key_type: Option<IgnoredAny>,
    key_path: Option<String>,
    key_paths: Option<Vec<String>>,
    key_data: Option<String>,
    key_datas: Option<Vec<String>>,
    fulcio: Option<IgnoredAny>,
    pki: Option<IgnoredAny>,
    rekor_public_key_path: Option<IgnoredAny>,
    rekor_public_key_paths: Option<IgnoredAny>,
    rekor_public_key_data: Option<IgnoredAny>,
    rekor_public_key_datas: Option<IgnoredAny>,
    signed_identity: Option<RawIdentity>,
    base_layer_identity: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIdentity {
    #[serde(rename = "type")]
    kind: String,
    docker_reference: Option<String>,
    docker_repository: Option<String>,
    prefix: Option<String>,
    signed_prefix: Option<String>,
}

type Located<T> = Result<T, (String, InvalidPolicy)>;

fn requirements(raw: Vec<RawRequirement>, location: &str) -> Located<Vec<Requirement>> {
    if raw.is_empty() {
        return Err((location.to_string(), InvalidPolicy::EmptyRequirements));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("{location}[{i}]");
            requirement(r).map_err(|reason| (at, reason))
        })
        .collect()
}

fn requirement(raw: RawRequirement) -> Result<Requirement, InvalidPolicy> {
    let unsupported = |requirement: &str, why| InvalidPolicy::UnsupportedRequirement {
        requirement: requirement.to_string(),
        why,
    };
    match raw.kind.as_str() {
        "insecureAcceptAnything" | "reject" => {
            only_fields(&raw, &[])?;
            Ok(if raw.kind == "reject" {
                Requirement::Reject
            } else {
                Requirement::InsecureAcceptAnything
            })
        }
        "signedBy" => Err(unsupported(
            "signedBy",
            "GPG simple signing is not implemented; use sigstoreSigned with a key",
        )),
        "signedBaseLayer" => Err(unsupported(
            "signedBaseLayer",
            "base-layer identities are not implemented",
        )),
        "sigstoreSigned" => sigstore_signed(raw),
        other => Err(InvalidPolicy::UnknownRequirement(other.to_string())),
    }
}

fn sigstore_signed(raw: RawRequirement) -> Result<Requirement, InvalidPolicy> {
    let unsupported = |what: &str, why| InvalidPolicy::UnsupportedRequirement {
        requirement: format!("sigstoreSigned with {what}"),
        why,
    };
    if raw.fulcio.is_some() {
        return Err(unsupported(
            "fulcio",
            "keyless (Fulcio certificate) signatures are not verified; use keyPath or keyData",
        ));
    }
    if raw.pki.is_some() {
        return Err(unsupported(
            "pki",
            "X.509 certificate signatures are not verified; use keyPath or keyData",
        ));
    }
    if raw.rekor_public_key_path.is_some()
        || raw.rekor_public_key_paths.is_some()
        || raw.rekor_public_key_data.is_some()
        || raw.rekor_public_key_datas.is_some()
    {
        return Err(unsupported("a Rekor public key", "Rekor inclusion proofs are not verified; a policy that requires them would be weakened"));
    }
    only_fields(
        &raw,
        &[
            "keyPath",
            "keyPaths",
            "keyData",
            "keyDatas",
            "signedIdentity",
        ],
    )?;
    let keys = keys(&raw)?;
    let signed_identity = match raw.signed_identity {
        None => SignedIdentity::MatchRepoDigestOrExact,
        Some(identity) => signed_identity(identity)?,
    };
    Ok(Requirement::SigstoreSigned {
        keys,
        signed_identity,
    })
}

/// Refuses any field of `raw` besides `type` and `allowed`.
fn only_fields(raw: &RawRequirement, allowed: &[&str]) -> Result<(), InvalidPolicy> {
    let present = [
        ("keyType", raw.key_type.is_some()),
        ("keyPath", raw.key_path.is_some()),
        ("keyPaths", raw.key_paths.is_some()),
        ("keyData", raw.key_data.is_some()),
        ("keyDatas", raw.key_datas.is_some()),
        ("signedIdentity", raw.signed_identity.is_some()),
        ("baseLayerIdentity", raw.base_layer_identity.is_some()),
    ];
    match present
        .iter()
        .find(|(field, set)| *set && !allowed.contains(field))
    {
        Some((field, _)) => Err(InvalidPolicy::FieldNotAllowed {
            field,
            requirement: raw.kind.clone(),
        }),
        None => Ok(()),
    }
}

fn keys(raw: &RawRequirement) -> Result<Vec<PublicKey>, InvalidPolicy> {
    let key_error = |key: String| move |source| InvalidPolicy::Key { key, source };
    let sources = [
        raw.key_path.is_some(),
        raw.key_paths.is_some(),
        raw.key_data.is_some(),
        raw.key_datas.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => return Err(InvalidPolicy::KeySources("none is")),
        1 => {}
        _ => return Err(InvalidPolicy::KeySources("several are")),
    }
    let paths: Vec<&String> = raw
        .key_path
        .iter()
        .chain(raw.key_paths.iter().flatten())
        .collect();
    let datas: Vec<&String> = raw
        .key_data
        .iter()
        .chain(raw.key_datas.iter().flatten())
        .collect();
    if paths.is_empty() && datas.is_empty() {
        return Err(InvalidPolicy::KeySources("the list is empty"));
    }
    let mut keys = Vec::new();
    for path in paths {
        keys.push(key_from_path(path).map_err(key_error(format!("keyPath {path:?}")))?);
    }
    for (i, data) in datas.into_iter().enumerate() {
        let name = if raw.key_data.is_some() {
            "keyData".to_string()
        } else {
            format!("keyDatas[{i}]")
        };
        keys.push(key_from_data(data).map_err(key_error(name))?);
    }
    Ok(keys)
}

fn key_from_path(path: &str) -> Result<PublicKey, KeyError> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(KeyError::RelativePath);
    }
    let bytes = read_bounded(path, MAX_KEY_BYTES).map_err(|e| match e {
        Bounded::TooLarge => KeyError::TooLarge {
            limit: MAX_KEY_BYTES,
        },
        Bounded::Io(e) => KeyError::Read(e),
    })?;
    PublicKey::from_pem(&bytes)
}

/// `keyData` is the key file's bytes, base64-encoded (Go's `[]byte` in
/// JSON).
fn key_from_data(data: &str) -> Result<PublicKey, KeyError> {
    if data.len() > MAX_KEY_BYTES * 2 {
        return Err(KeyError::TooLarge {
            limit: MAX_KEY_BYTES,
        });
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(KeyError::Base64)?;
    PublicKey::from_pem(&pem)
}

fn signed_identity(raw: RawIdentity) -> Result<SignedIdentity, InvalidPolicy> {
    let fields = [
        ("dockerReference", raw.docker_reference.as_deref()),
        ("dockerRepository", raw.docker_repository.as_deref()),
        ("prefix", raw.prefix.as_deref()),
        ("signedPrefix", raw.signed_prefix.as_deref()),
    ];
    let needed: &[&str] = match raw.kind.as_str() {
        "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => &[],
        "exactReference" => &["dockerReference"],
        "exactRepository" => &["dockerRepository"],
        "remapIdentity" => &["prefix", "signedPrefix"],
        other => return Err(InvalidPolicy::UnknownIdentity(other.to_string())),
    };
    for (field, value) in fields {
        if value.is_some() != needed.contains(&field) {
            let why = if value.is_some() {
                format!("field {field:?} does not belong here")
            } else {
                format!("field {field:?} is required")
            };
            return Err(InvalidPolicy::Identity {
                identity: raw.kind.clone(),
                why,
            });
        }
    }
    let get = |s: Option<String>| s.unwrap_or_default();
    match raw.kind.as_str() {
        "matchExact" => Ok(SignedIdentity::MatchExact),
        "matchRepoDigestOrExact" => Ok(SignedIdentity::MatchRepoDigestOrExact),
        "matchRepository" => Ok(SignedIdentity::MatchRepository),
        "exactReference" => SignedIdentity::exact_reference(&get(raw.docker_reference)),
        "exactRepository" => SignedIdentity::exact_repository(&get(raw.docker_repository)),
        _ => SignedIdentity::remap_identity(&get(raw.prefix), &get(raw.signed_prefix)),
    }
}

/// A JSON object whose keys must be unique: serde_json's maps keep the last
/// of two equal keys, and containers/image refuses the file instead.
struct UniqueMap<V>(Vec<(String, V)>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object with unique keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(UniqueMap(entries))
            }
        }
        deserializer.deserialize_map(UniqueVisitor(std::marker::PhantomData))
    }
}

enum Bounded {
    TooLarge,
    Io(std::io::Error),
}

/// Reads at most `limit` bytes of the regular file `path`; one more byte
/// means too large. Opened non-blocking and checked before reading, so a
/// FIFO or device named by mistake fails at once instead of hanging the
/// load (or reading forever).
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, Bounded> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(Bounded::Io)?;
    if !file.metadata().map_err(Bounded::Io)?.is_file() {
        return Err(Bounded::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(Bounded::Io)?;
    if bytes.len() > limit {
        return Err(Bounded::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
