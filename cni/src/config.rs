//! Network configuration lists (`.conflist`) and single configurations
//! (`.conf`/`.json`, wrapped into a one-plugin list).
//!
//! Each plugin's JSON is kept verbatim so that keys this crate does not know
//! (plugin-specific settings such as `bridge` or `ipam`) reach the plugin
//! untouched; only `name`, `cniVersion`, `prevResult` and `runtimeConfig` are
//! injected when a plugin runs, as the specification requires.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// CNI specification versions whose configurations this crate runs.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// A parsed network configuration list: one network, a chain of plugins.
///
/// # Examples
///
/// ```
/// let list = cni::NetworkConfigList::from_conflist_bytes(
///     br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"loopback"}]}"#,
///     "inline.conflist",
/// ).unwrap();
/// assert_eq!(list.name(), "pods");
/// assert_eq!(list.plugins()[0].plugin_type(), "loopback");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    name: String,
    cni_version: String,
    disable_check: bool,
    plugins: Vec<PluginConfig>,
    raw: Value,
}

/// One plugin's configuration inside a list.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    plugin_type: String,
    capabilities: BTreeMap<String, bool>,
    raw: Map<String, Value>,
}

impl NetworkConfigList {
    /// Parses a `.conflist` document; `origin` names it in errors.
    pub fn from_conflist_bytes(bytes: &[u8], origin: impl AsRef<Path>) -> Result<Self> {
        let origin = origin.as_ref();
        let value: Value = serde_json::from_slice(bytes).map_err(|e| parse_err(origin, e))?;
        Self::from_json(value, origin)
    }

    /// Parses a single-plugin `.conf`/`.json` document and wraps it into a
    /// list with the same name and version, the way libcni does.
    ///
    /// # Examples
    ///
    /// ```
    /// let list = cni::NetworkConfigList::from_conf_bytes(
    ///     br#"{"cniVersion":"0.4.0","name":"lo","type":"loopback"}"#,
    ///     "99-lo.conf",
    /// ).unwrap();
    /// assert_eq!(list.plugins().len(), 1);
    /// assert_eq!(list.cni_version(), "0.4.0");
    /// ```
    pub fn from_conf_bytes(bytes: &[u8], origin: impl AsRef<Path>) -> Result<Self> {
        let origin = origin.as_ref();
        let value: Value = serde_json::from_slice(bytes).map_err(|e| parse_err(origin, e))?;
        let Value::Object(conf) = value else {
            return Err(bad(origin, "not a JSON object"));
        };
        let mut list = Map::new();
        for key in ["cniVersion", "name", "disableCheck"] {
            if let Some(v) = conf.get(key) {
                list.insert(key.to_string(), v.clone());
            }
        }
        list.insert("plugins".into(), Value::Array(vec![Value::Object(conf)]));
        Self::from_json(Value::Object(list), origin)
    }

    /// Reads and parses a file, by extension: `.conflist` as a list,
    /// `.conf`/`.json` as a single configuration.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            what: "network config",
            path: path.to_path_buf(),
            op: "read",
            source,
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("conflist") => Self::from_conflist_bytes(&bytes, path),
            Some("conf") | Some("json") => Self::from_conf_bytes(&bytes, path),
            _ => Err(bad(path, "extension is not .conflist, .conf or .json")),
        }
    }

    /// Builds a list from its JSON form (as written by [`Self::to_json`] or
    /// found in a `.conflist`).
    pub fn from_json(value: Value, origin: impl AsRef<Path>) -> Result<Self> {
        let origin = origin.as_ref();
        let Value::Object(obj) = &value else {
            return Err(bad(origin, "not a JSON object"));
        };
        let name = string_field(obj, "name", origin)?;
        let cni_version = string_field(obj, "cniVersion", origin)?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(bad(
                origin,
                format!("cniVersion {cni_version} is not one of {SUPPORTED_VERSIONS:?}"),
            ));
        }
        let disable_check = match obj.get("disableCheck") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            // libcni accepts the string form too.
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            Some(_) => return Err(bad(origin, "disableCheck is not a boolean")),
        };
        let Some(Value::Array(raw_plugins)) = obj.get("plugins") else {
            return Err(bad(origin, "missing \"plugins\" array"));
        };
        if raw_plugins.is_empty() {
            return Err(bad(origin, "\"plugins\" is empty"));
        }
        let plugins = raw_plugins
            .iter()
            .enumerate()
            .map(|(i, p)| PluginConfig::from_json(p, origin, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name,
            cni_version,
            disable_check,
            plugins,
            raw: value,
        })
    }

    /// The JSON form, exactly as loaded; stored in the result cache so DEL
    /// after a restart uses the configuration ADD used.
    pub fn to_json(&self) -> &Value {
        &self.raw
    }

    /// The network name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CNI specification version of the list.
    pub fn cni_version(&self) -> &str {
        &self.cni_version
    }

    /// Whether the configuration asks runtimes to skip CHECK.
    pub fn disable_check(&self) -> bool {
        self.disable_check
    }

    /// Whether this version has the CHECK verb (0.4.0 and later).
    pub fn supports_check(&self) -> bool {
        !self.cni_version.starts_with("0.3.")
    }

    /// The plugin chain, in ADD order.
    pub fn plugins(&self) -> &[PluginConfig] {
        &self.plugins
    }
}

impl PluginConfig {
    fn from_json(value: &Value, origin: &Path, index: usize) -> Result<Self> {
        let Value::Object(raw) = value else {
            return Err(bad(origin, format!("plugins[{index}] is not an object")));
        };
        let plugin_type = match raw.get("type") {
            Some(Value::String(t)) if valid_plugin_type(t) => t.clone(),
            Some(Value::String(t)) => {
                return Err(bad(origin, format!("plugins[{index}]: invalid type {t:?}")))
            }
            _ => return Err(bad(origin, format!("plugins[{index}]: missing \"type\""))),
        };
        let capabilities = match raw.get("capabilities") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(caps)) => caps
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bool().unwrap_or(false)))
                .collect(),
            Some(_) => {
                return Err(bad(
                    origin,
                    format!("plugins[{index}] ({plugin_type}): capabilities is not an object"),
                ))
            }
        };
        Ok(Self {
            plugin_type,
            capabilities,
            raw: raw.clone(),
        })
    }

    /// The plugin type, which is also its binary name.
    pub fn plugin_type(&self) -> &str {
        &self.plugin_type
    }

    /// Whether the plugin declares capability `name` (e.g. `portMappings`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.get(name).copied().unwrap_or(false)
    }

    /// The plugin's configuration as written in the file.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// The JSON the plugin gets on stdin: its own configuration plus the
    /// list's `name` and `cniVersion`, the previous plugin's result and the
    /// runtime configuration for the capabilities it declared.
    ///
    /// # Examples
    ///
    /// ```
    /// let list = cni::NetworkConfigList::from_conflist_bytes(
    ///     br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"portmap"}]}"#, "x",
    /// ).unwrap();
    /// let prev = serde_json::json!({"cniVersion":"1.0.0","ips":[]});
    /// let stdin = list.plugins()[0].stdin_for(&list, Some(&prev), None);
    /// assert_eq!(stdin["name"], "n");
    /// assert_eq!(stdin["prevResult"], prev);
    /// ```
    pub fn stdin_for(
        &self,
        list: &NetworkConfigList,
        prev_result: Option<&Value>,
        runtime_config: Option<Value>,
    ) -> Value {
        let mut conf = self.raw.clone();
        conf.insert("name".into(), Value::String(list.name.clone()));
        conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
        match prev_result {
            Some(prev) => conf.insert("prevResult".into(), prev.clone()),
            None => conf.remove("prevResult"),
        };
        match runtime_config {
            Some(rc) => conf.insert("runtimeConfig".into(), rc),
            None => conf.remove("runtimeConfig"),
        };
        Value::Object(conf)
    }
}

/// Plugin types become file names under the plugin directories, so a type
/// that could walk out of them (`../x`, `/bin/sh`) is refused.
fn valid_plugin_type(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0')
}

fn string_field(obj: &Map<String, Value>, key: &str, origin: &Path) -> Result<String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(bad(origin, format!("missing or empty \"{key}\""))),
    }
}

fn parse_err(origin: &Path, e: serde_json::Error) -> Error {
    bad(origin, format!("invalid JSON: {e}"))
}

fn bad(origin: &Path, reason: impl Into<String>) -> Error {
    Error::ConfigParse {
        path: PathBuf::from(origin),
        reason: reason.into(),
    }
}

/// The default pod network: a bridge with host-local IPAM on `subnet`, the
/// gateway on the bridge, masquerading and `portmap` for host ports, as CNI
/// 1.0.0. `cargo xtask setup` writes it when the config directory has none.
///
/// There is no `loopback` plugin in the chain: bringing `lo` up belongs to
/// whoever creates the namespace (`netns::NetNs::create` does, with one
/// ioctl), and the plugin would cost a process start on every ADD and DEL.
/// A caller whose namespaces come up with `lo` down adds
/// `{"type": "loopback"}` itself.
///
/// # Examples
///
/// ```
/// let text = cni::default_conflist("cri-server", "10.88.0.0/16", "cni0");
/// let list = cni::NetworkConfigList::from_conflist_bytes(text.as_bytes(), "default").unwrap();
/// let types: Vec<_> = list.plugins().iter().map(|p| p.plugin_type()).collect();
/// assert_eq!(types, ["bridge", "portmap"]);
/// ```
pub fn default_conflist(name: &str, subnet: &str, bridge: &str) -> String {
    let list = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true }
            }
        ]
    });
    // Serialising a Value built from literals cannot fail; fall back to the
    // compact form rather than panic if it ever did.
    serde_json::to_string_pretty(&list).unwrap_or_else(|_| list.to_string()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conflist_keeps_unknown_keys_and_capabilities() {
        let list = NetworkConfigList::from_conflist_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[
                {"type":"bridge","bridge":"br9","ipam":{"type":"host-local"}},
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
            "a.conflist",
        )
        .unwrap();
        assert_eq!(list.plugins()[0].raw()["bridge"], "br9");
        assert!(list.plugins()[1].has_capability("portMappings"));
        assert!(!list.plugins()[1].has_capability("bandwidth"));
        assert!(!list.plugins()[0].has_capability("portMappings"));
        assert!(list.supports_check());
    }

    #[test]
    fn conf_is_wrapped_into_a_list() {
        let list = NetworkConfigList::from_conf_bytes(
            br#"{"cniVersion":"0.3.1","name":"single","type":"bridge","bridge":"b"}"#,
            "10.conf",
        )
        .unwrap();
        assert_eq!(list.name(), "single");
        assert_eq!(list.plugins().len(), 1);
        assert_eq!(list.plugins()[0].plugin_type(), "bridge");
        assert!(!list.supports_check());
    }

    #[test]
    fn rejects_bad_documents_with_the_file_name() {
        for (text, needle) in [
            (&b"{"[..], "invalid JSON"),
            (
                br#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "name",
            ),
            (
                br#"{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"x"}]}"#,
                "9.9.9",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "empty",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"a":1}]}"#,
                "type",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "invalid type",
            ),
        ] {
            let err = NetworkConfigList::from_conflist_bytes(text, "/etc/x.conflist").unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("/etc/x.conflist") && msg.contains(needle),
                "{msg}"
            );
        }
    }

    #[test]
    fn stdin_injects_name_version_prev_result_and_runtime_config() {
        let list = NetworkConfigList::from_conflist_bytes(
            br#"{"cniVersion":"0.4.0","name":"n","plugins":[{"type":"portmap","prevResult":{"stale":1}}]}"#,
            "x",
        )
        .unwrap();
        let p = &list.plugins()[0];
        let s = p.stdin_for(&list, None, Some(json!({"portMappings":[]})));
        assert_eq!(s["cniVersion"], "0.4.0");
        assert!(
            s.get("prevResult").is_none(),
            "stale prevResult must not leak"
        );
        assert_eq!(s["runtimeConfig"], json!({"portMappings":[]}));
        let prev = json!({"ips":[{"address":"10.0.0.2/24"}]});
        let s = p.stdin_for(&list, Some(&prev), None);
        assert_eq!(s["prevResult"], prev);
        assert!(s.get("runtimeConfig").is_none());
    }

    #[test]
    fn json_round_trip_is_identity() {
        let text = default_conflist("n", "10.1.0.0/16", "br0");
        let a = NetworkConfigList::from_conflist_bytes(text.as_bytes(), "x").unwrap();
        let b = NetworkConfigList::from_json(a.to_json().clone(), "y").unwrap();
        assert_eq!(a, b);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = NetworkConfigList::from_conflist_bytes(&bytes, "fuzz");
            let _ = NetworkConfigList::from_conf_bytes(&bytes, "fuzz");
        }
    }
}
