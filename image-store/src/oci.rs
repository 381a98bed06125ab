//! The registry's documents (image indexes, manifests, image configs) as
//! typed values, and the limits they are held to.
//!
//! Parsing is where registry input crosses into the store: every digest and
//! diff id is turned into a [`Digest`] here, and a document with a single
//! malformed one is refused whole, before anything is fetched or stored on
//! its say-so. Only the fields the store uses are read; the rest is skipped
//! without being held in memory.

use crate::digest::Digest;
use crate::error::Refusal;
use serde::Deserialize;

/// The largest manifest, index or config read (containers/image's cap, and
/// the largest manifest distribution accepts): reading stops one byte past
/// it.
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

/// The largest layer blob a descriptor may declare. A download is capped at
/// its descriptor's size; this keeps that size itself sane.
pub const MAX_LAYER_SIZE: u64 = 64 << 30;

/// The most layers an image may have: overlayfs stacks at most 500 lower
/// directories, so a taller image could never be mounted.
pub const MAX_LAYERS: usize = 500;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
];

/// Every media type a manifest request accepts.
pub const ACCEPTED: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A platform an index entry is for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, …
    #[serde(default)]
    pub os: String,
    /// `amd64`, `arm64`, …
    #[serde(default)]
    pub architecture: String,
    /// `v7`, `v8`, … (ARM); empty when the entry gives none.
    #[serde(default)]
    pub variant: String,
}

/// A content descriptor with its digest parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// What the content is.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes, as declared (never negative: JSON's `-1` does not
    /// parse).
    pub size: u64,
    /// For index entries, the platform.
    pub platform: Option<Platform>,
}

/// An image manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, bottom first (at most [`MAX_LAYERS`]).
    pub layers: Vec<Descriptor>,
}

/// An image index (or Docker manifest list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    /// One manifest per platform.
    pub manifests: Vec<Descriptor>,
}

/// What a manifest request can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Document {
    /// A multi-platform index.
    Index(Index),
    /// A single image's manifest.
    Manifest(Manifest),
}

/// The part of an image config the store uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageConfig {
    /// `rootfs.diff_ids`: the digests of the uncompressed layers, bottom
    /// first.
    pub diff_ids: Vec<Digest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    schema_version: Option<u64>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    rootfs: RawRootFs,
}

#[derive(Default, Deserialize)]
struct RawRootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

fn digest(field: impl FnOnce() -> String, text: &str) -> Result<Digest, Refusal> {
    text.parse().map_err(|source| Refusal::Digest {
        field: field(),
        source,
    })
}

fn descriptor(raw: RawDescriptor, field: impl FnOnce() -> String) -> Result<Descriptor, Refusal> {
    Ok(Descriptor {
        digest: digest(|| format!("{}.digest", field()), &raw.digest)?,
        media_type: raw.media_type,
        size: raw.size,
        platform: raw.platform,
    })
}

fn descriptors(raw: Vec<RawDescriptor>, name: &str) -> Result<Vec<Descriptor>, Refusal> {
    raw.into_iter()
        .enumerate()
        .map(|(i, d)| descriptor(d, || format!("{name}[{i}]")))
        .collect()
}

impl Document {
    /// Parses what a manifest request returned: an index or a manifest, told
    /// apart by `mediaType` (or, as the OCI spec makes it optional, by
    /// whether it lists `manifests`).
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::oci::Document;
    /// let bad = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:../x","size":1}]}"#;
    /// let err = Document::parse(bad).unwrap_err();
    /// assert!(err.to_string().starts_with("manifests[0].digest: "), "{err}");
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Self, Refusal> {
        let raw: RawDocument = serde_json::from_slice(bytes).map_err(|source| Refusal::Json {
            document: "a manifest or index",
            source,
        })?;
        let media_type = raw.media_type.clone().unwrap_or_default();
        if raw.schema_version == Some(1) || DOCKER_SCHEMA1.contains(&media_type.as_str()) {
            return Err(Refusal::Schema1);
        }
        if raw.schema_version != Some(2) {
            return Err(Refusal::SchemaVersion(raw.schema_version));
        }
        let is_index = match raw.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_LIST) => true,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
            Some(other) => return Err(Refusal::MediaType(other.to_string())),
            None => raw.manifests.is_some(),
        };
        if is_index {
            let manifests = raw.manifests.ok_or(Refusal::Missing("manifests"))?;
            return Ok(Document::Index(Index {
                manifests: descriptors(manifests, "manifests")?,
            }));
        }
        let config = raw.config.ok_or(Refusal::Missing("config"))?;
        let layers = raw.layers.unwrap_or_default();
        if layers.len() > MAX_LAYERS {
            return Err(Refusal::TooManyLayers {
                layers: layers.len(),
                limit: MAX_LAYERS,
            });
        }
        Ok(Document::Manifest(Manifest {
            config: descriptor(config, || "config".into())?,
            layers: descriptors(layers, "layers")?,
        }))
    }
}

impl ImageConfig {
    /// Parses an image config, keeping only its diff ids, each parsed.
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::oci::ImageConfig;
    /// let err = ImageConfig::parse(br#"{"rootfs":{"diff_ids":["sha256:/etc"]}}"#).unwrap_err();
    /// assert!(err.to_string().starts_with("rootfs.diff_ids[0]: "), "{err}");
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Self, Refusal> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|source| Refusal::Json {
            document: "an image config",
            source,
        })?;
        let diff_ids = raw
            .rootfs
            .diff_ids
            .iter()
            .enumerate()
            .map(|(i, d)| digest(|| format!("rootfs.diff_ids[{i}]"), d))
            .collect::<Result<_, _>>()?;
        Ok(Self { diff_ids })
    }

    /// Refuses a config whose diff ids do not pair one to one with
    /// `manifest`'s layers.
    pub fn check_layers(&self, manifest: &Manifest) -> Result<(), Refusal> {
        if self.diff_ids.len() != manifest.layers.len() {
            return Err(Refusal::LayerCount {
                diff_ids: self.diff_ids.len(),
                layers: manifest.layers.len(),
            });
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct UserOnly {
    config: Option<UserConfig>,
}

#[derive(Deserialize)]
struct UserConfig {
    #[serde(rename = "User")]
    user: Option<String>,
}

/// The `config.User` of an image config, or empty. Read through a typed
/// view so a large config is never expanded into a JSON tree.
pub fn config_user(config_json: &str) -> String {
    serde_json::from_str::<UserOnly>(config_json)
        .ok()
        .and_then(|c| c.config?.user)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn manifest(config: &str, layers: &[&str]) -> Vec<u8> {
        let layers: Vec<_> = layers
            .iter()
            .map(|d| serde_json::json!({"mediaType": "x", "digest": d, "size": 1}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "c", "digest": config, "size": 2},
            "layers": layers,
        }))
        .unwrap()
    }

    #[test]
    fn a_well_formed_manifest_parses() {
        let Document::Manifest(m) = Document::parse(&manifest(&hex('a'), &[&hex('b')])).unwrap()
        else {
            panic!("not a manifest")
        };
        assert_eq!(m.config.digest.to_string(), hex('a'));
        assert_eq!(m.config.size, 2);
        assert_eq!(m.layers[0].digest.to_string(), hex('b'));
    }

    #[test]
    fn any_malformed_digest_refuses_the_document_naming_the_field() {
        let cases = [
            (manifest("sha256:/etc", &[&hex('b')]), "config.digest"),
            (
                manifest(&hex('a'), &[&hex('b'), "sha256:../../x"]),
                "layers[1].digest",
            ),
        ];
        for (doc, field) in cases {
            let err = Document::parse(&doc).unwrap_err();
            assert!(
                matches!(&err, Refusal::Digest { field: f, .. } if f == field),
                "{err}"
            );
        }
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"digest": hex('a'), "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:A", "size": 1},
        ]});
        let err = Document::parse(&serde_json::to_vec(&index).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string().split(':').next(),
            Some("manifests[1].digest")
        );
    }

    #[test]
    fn index_entries_keep_their_platform_and_variant() {
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
            {"digest": hex('a'), "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {"digest": hex('b'), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
        ]});
        let Document::Index(i) = Document::parse(&serde_json::to_vec(&index).unwrap()).unwrap()
        else {
            panic!("not an index")
        };
        let platform = i.manifests[0].platform.as_ref().unwrap();
        assert_eq!(
            (platform.architecture.as_str(), platform.variant.as_str()),
            ("arm", "v7")
        );
        assert_eq!(i.manifests[1].platform.as_ref().unwrap().variant, "");
    }

    #[test]
    fn other_refusals() {
        let schema1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(matches!(Document::parse(schema1), Err(Refusal::Schema1)));
        let negative = String::from_utf8(manifest(&hex('a'), &[]))
            .unwrap()
            .replace(r#""size":2"#, r#""size":-1"#);
        assert!(matches!(
            Document::parse(negative.as_bytes()),
            Err(Refusal::Json { .. })
        ));
        let tall: Vec<String> = (0..=MAX_LAYERS).map(|_| hex('c')).collect();
        let tall: Vec<&str> = tall.iter().map(String::as_str).collect();
        assert!(matches!(
            Document::parse(&manifest(&hex('a'), &tall)),
            Err(Refusal::TooManyLayers {
                layers: 501,
                limit: 500
            })
        ));
        let other = br#"{"schemaVersion":2,"mediaType":"text/html"}"#;
        assert!(matches!(Document::parse(other), Err(Refusal::MediaType(_))));
        let config = ImageConfig::parse(br#"{"rootfs":{"diff_ids":[]}}"#).unwrap();
        let Document::Manifest(m) = Document::parse(&manifest(&hex('a'), &[&hex('b')])).unwrap()
        else {
            panic!("not a manifest")
        };
        assert!(matches!(
            config.check_layers(&m),
            Err(Refusal::LayerCount {
                diff_ids: 0,
                layers: 1
            })
        ));
    }

    #[test]
    fn config_user_reads_only_user() {
        assert_eq!(
            config_user(r#"{"config":{"User":"1002","Env":[]}}"#),
            "1002"
        );
        assert_eq!(config_user(r#"{"config":null}"#), "");
        assert_eq!(config_user(r#"{"config":{"User":5}}"#), "");
        assert_eq!(config_user("not json"), "");
    }

    proptest! {
        // Arbitrary bytes never panic the parsers; whatever parses holds
        // only well-formed digests.
        #[test]
        fn arbitrary_documents_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Document::Manifest(m)) = Document::parse(&bytes) {
                for d in std::iter::once(&m.config).chain(&m.layers) {
                    prop_assert!(d.digest.as_str().parse::<Digest>().is_ok());
                }
            }
            let _ = ImageConfig::parse(&bytes);
        }

        // Any diff id that is not a digest refuses the config, naming it.
        #[test]
        fn configs_with_a_bad_diff_id_are_refused(bad in "\\PC{0,80}", at in 0usize..3) {
            prop_assume!(bad.parse::<Digest>().is_err());
            let mut ids = vec![hex('a'), hex('b'), hex('c')];
            ids[at] = bad;
            let json = serde_json::to_vec(&serde_json::json!({"rootfs": {"diff_ids": ids}})).unwrap();
            let err = ImageConfig::parse(&json).unwrap_err();
            let field = format!("rootfs.diff_ids[{at}]");
            prop_assert!(matches!(&err, Refusal::Digest { field: f, .. } if *f == field), "{}", err);
        }
    }
}
