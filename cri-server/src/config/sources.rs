//! Where the configuration comes from: the main file, then every `*.toml`
//! drop-in of the drop-in directory in lexical order (CRI-O's
//! `crio.conf.d` model), each laid over the embedded default.
//!
//! Later files override earlier keys; tables merge key by key, so a drop-in
//! that sets `[runtime.handlers.runsc] args` keeps that handler's `path`,
//! and `[[image.registries]]` entries merge by `prefix`. Any other array is
//! replaced whole. Every file is checked as it is laid on, so an unknown
//! key or a bad value is reported with the file that brought it.

use super::{one_line, Config, ConfigError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// The main file read when `--config` is not given (absent: the embedded
/// default alone).
pub const DEFAULT_FILE: &str = "/etc/cri-server/config.toml";
/// The drop-in directory name, beside the main file.
pub const DROP_IN_DIR: &str = "config.d";

/// What `[[image.registries]]` entries are merged by.
const REGISTRIES: &str = "image.registries";

/// The files a configuration is read from.
///
/// # Examples
///
/// ```
/// use cri_server::config::ConfigSources;
/// use std::path::Path;
///
/// let sources = ConfigSources::new(Some(Path::new("/etc/x/cri.toml").into()), None);
/// assert_eq!(sources.drop_in_dir, Path::new("/etc/x/config.d"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSources {
    /// The main file; it must exist when it was named explicitly.
    pub file: PathBuf,
    /// Whether `file` was named on the command line (then it must exist).
    pub explicit: bool,
    /// The drop-in directory (absent is no drop-ins).
    pub drop_in_dir: PathBuf,
}

impl ConfigSources {
    /// The sources for `--config` and `--config-dir`: by default
    /// [`DEFAULT_FILE`] and the `config.d` directory beside the main file.
    pub fn new(file: Option<PathBuf>, drop_in_dir: Option<PathBuf>) -> Self {
        let explicit = file.is_some();
        let file = file.unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
        let drop_in_dir = drop_in_dir.unwrap_or_else(|| {
            file.parent()
                .unwrap_or_else(|| Path::new("/"))
                .join(DROP_IN_DIR)
        });
        ConfigSources {
            file,
            explicit,
            drop_in_dir,
        }
    }

    /// The files to read, in order: the main file when it exists (or was
    /// named), then the drop-ins sorted by name.
    pub fn files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let mut files = Vec::new();
        if self.explicit || self.file.exists() {
            files.push(self.file.clone());
        }
        let entries = match std::fs::read_dir(&self.drop_in_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: self.drop_in_dir.clone(),
                    source,
                })
            }
        };
        let mut drop_ins: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect();
        drop_ins.sort();
        files.extend(drop_ins);
        Ok(files)
    }
}

/// A configuration read from its sources, with where each key came from.
#[derive(Debug, Clone)]
pub struct Layered {
    /// The merged configuration (not yet validated as a whole).
    pub config: Config,
    /// Each leaf key (dotted; registries as `image.registries[PREFIX].key`)
    /// and the file that set it last, or `(default)`.
    pub sources: BTreeMap<String, String>,
}

/// Lays `files` over the embedded default, in order.
pub fn layer(files: &[PathBuf]) -> Result<Layered, ConfigError> {
    let mut table = default_table();
    let mut sources = BTreeMap::new();
    record_leaves(&mut sources, "", &Value::Table(table.clone()), "(default)");
    let mut config = Config::default();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        let parse_error = |message: String| ConfigError::Parse {
            path: file.clone(),
            message: one_line(&message),
        };
        let top: Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        merge(
            &mut table,
            top,
            "",
            &file.display().to_string(),
            &mut sources,
        );
        config = Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
    }
    Ok(Layered { config, sources })
}

/// The embedded default as a TOML table.
fn default_table() -> Table {
    // Plain structs of strings, paths and maps always serialize.
    Value::try_from(Config::default())
        .ok()
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default()
}

/// Lays `top` over `base`: tables key by key, registries by prefix, any
/// other value replaced.
fn merge(
    base: &mut Table,
    top: Table,
    prefix: &str,
    file: &str,
    sources: &mut BTreeMap<String, String>,
) {
    for (key, value) in top {
        let path = dotted(prefix, &key);
        match (base.get_mut(&key), value) {
            (Some(Value::Table(below)), Value::Table(above)) => {
                merge(below, above, &path, file, sources)
            }
            (Some(Value::Array(below)), Value::Array(above)) if path == REGISTRIES => {
                merge_registries(below, above, file, sources)
            }
            (_, value) => {
                forget(sources, &path);
                record_leaves(sources, &path, &value, file);
                base.insert(key, value);
            }
        }
    }
}

/// `[[image.registries]]`: an entry whose prefix is already there is laid
/// over it; a new prefix is added at the end.
fn merge_registries(
    below: &mut Vec<Value>,
    above: Vec<Value>,
    file: &str,
    sources: &mut BTreeMap<String, String>,
) {
    for entry in above {
        let prefix = registry_prefix(&entry).unwrap_or_default();
        let path = format!("{REGISTRIES}[{prefix}]");
        let existing = below
            .iter_mut()
            .find(|e| registry_prefix(e).as_deref() == Some(prefix.as_str()));
        match (existing, entry) {
            (Some(Value::Table(old)), Value::Table(new)) => merge(old, new, &path, file, sources),
            (_, entry) => {
                record_leaves(sources, &path, &entry, file);
                below.push(entry);
            }
        }
    }
}

fn registry_prefix(entry: &Value) -> Option<String> {
    entry.get("prefix")?.as_str().map(str::to_owned)
}

fn dotted(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Forgets the sources of `path` and everything below it: a value replaced
/// whole takes its keys with it.
fn forget(sources: &mut BTreeMap<String, String>, path: &str) {
    let below = format!("{path}.");
    sources.retain(|k, _| k != path && !k.starts_with(&below));
}

fn record_leaves(sources: &mut BTreeMap<String, String>, path: &str, value: &Value, file: &str) {
    match value {
        Value::Table(table) => {
            for (key, value) in table {
                record_leaves(sources, &dotted(path, key), value, file);
            }
        }
        Value::Array(items) if path == REGISTRIES => {
            for item in items {
                let prefix = registry_prefix(item).unwrap_or_default();
                record_leaves(sources, &format!("{REGISTRIES}[{prefix}]"), item, file);
            }
        }
        _ => {
            sources.insert(path.to_owned(), file.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn drop_ins_are_read_in_lexical_order_after_the_main_file() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(dir.path(), "config.toml", "");
        std::fs::create_dir(dir.path().join("config.d")).unwrap();
        for name in ["20-b.toml", "10-a.toml", "notes.txt", "30-c.toml"] {
            write(&dir.path().join("config.d"), name, "");
        }
        let sources = ConfigSources::new(Some(main.clone()), None);
        let names: Vec<String> = sources
            .files()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["config.toml", "10-a.toml", "20-b.toml", "30-c.toml"]
        );
    }

    #[test]
    fn a_missing_default_file_is_the_embedded_default_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("config.toml");
        let implicit = ConfigSources {
            explicit: false,
            ..ConfigSources::new(Some(absent.clone()), None)
        };
        assert!(implicit.files().unwrap().is_empty());
        let named = ConfigSources::new(Some(absent.clone()), None);
        let err = layer(&named.files().unwrap()).unwrap_err();
        assert!(err.to_string().contains("config.toml"), "{err}");
    }

    #[test]
    fn later_files_override_keys_and_tables_merge_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.toml",
            "[runtime]\ndefault_workload_trust = \"untrusted\"\n\
             [runtime.handlers.runsc]\npath = \"/opt/runsc\"\nargs = [\"--a\"]\n\
             [[image.registries]]\nprefix = \"registry.k8s.io\"\nmirrors = [\"m1\"]\n",
        );
        let b = write(
            dir.path(),
            "b.toml",
            "[runtime]\ndefault_workload_trust = \"trusted\"\n\
             [runtime.handlers.runsc]\nargs = [\"--b\"]\n\
             [[image.registries]]\nprefix = \"registry.k8s.io\"\nmirrors = [\"m2\"]\n\
             [[image.registries]]\nprefix = \"docker.io\"\ninsecure = true\n",
        );
        let layered = layer(&[a.clone(), b.clone()]).unwrap();
        let config = layered.config;
        assert_eq!(
            config.runtime.default_workload_trust,
            trust_policy::WorkloadTrust::Trusted
        );
        let runsc = &config.runtime.handlers["runsc"];
        assert_eq!(runsc.path, Path::new("/opt/runsc"), "kept from a.toml");
        assert_eq!(runsc.args, ["--b"], "arrays are replaced whole");
        assert!(
            config.runtime.handlers.contains_key("runc"),
            "the default's"
        );
        let registries: Vec<(&str, &[String])> = config
            .image
            .registries
            .iter()
            .map(|r| (r.prefix.as_str(), r.mirrors.as_slice()))
            .collect();
        assert_eq!(
            registries,
            [
                ("registry.k8s.io", &["m2".to_string()][..]),
                ("docker.io", &[][..])
            ]
        );
        let from = |key: &str| layered.sources[key].clone();
        assert_eq!(
            from("runtime.default_workload_trust"),
            b.display().to_string()
        );
        assert_eq!(from("runtime.handlers.runsc.path"), a.display().to_string());
        assert_eq!(from("runtime.handlers.runsc.args"), b.display().to_string());
        assert_eq!(from("runtime.handlers.runc.path"), "(default)");
        assert_eq!(
            from("image.registries[registry.k8s.io].mirrors"),
            b.display().to_string()
        );
        assert_eq!(
            from("image.registries[docker.io].insecure"),
            b.display().to_string()
        );
    }

    #[test]
    fn an_unknown_key_names_the_file_that_brought_it() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(
            dir.path(),
            "10-good.toml",
            "[runtime]\ntrusted_images = \"verified\"\n",
        );
        let bad = write(
            dir.path(),
            "20-bad.toml",
            "[runtime]\ntrusted_imagez = \"verified\"\n",
        );
        let err = layer(&[good, bad]).unwrap_err().to_string();
        assert!(err.contains("20-bad.toml"), "{err}");
        assert!(err.contains("trusted_imagez"), "{err}");
        let bad_value = write(
            dir.path(),
            "30-value.toml",
            "[runtime]\ntrusted_images = \"some\"\n",
        );
        let err = layer(&[bad_value]).unwrap_err().to_string();
        assert!(
            err.contains("30-value.toml") && err.contains("some"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_toml_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let broken = write(dir.path(), "broken.toml", "[runtime\n");
        let err = layer(&[broken]).unwrap_err().to_string();
        assert!(err.contains("broken.toml"), "{err}");
    }
}
