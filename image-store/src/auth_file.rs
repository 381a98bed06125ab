//! [`AuthFile`]: registry credentials stored on the node, in the format of
//! containers-auth.json(5) and docker's `~/.docker/config.json`:
//!
//! ```json
//! {"auths": {
//!     "registry.example.com": {"auth": "base64(user:password)"},
//!     "registry.example.com/team/app": {"identitytoken": "…"},
//!     "https://index.docker.io/v1/": {"username": "me", "password": "…"}
//! }}
//! ```
//!
//! Keys are `host[:port]` or `host[:port]/namespace/…/repository`; the
//! longest key matching an endpoint's location wins (containers-auth.json).
//! A key with an `http://` or `https://` scheme is docker's old form and
//! stands for its host only (`https://index.docker.io/v1/` is `docker.io`);
//! `index.docker.io` and `registry-1.docker.io` are `docker.io`.
//!
//! What the daemon cannot use is left out with a note rather than refused:
//! credential helpers (`credHelpers`, `credsStore`), other top-level keys,
//! unknown entry fields, entries without credentials. What is malformed
//! (not JSON, an `auth` that is not `base64(user:password)`, a field of
//! the wrong type) is an error naming the file, the key and the field, and
//! never quoting a value: values are secrets.

use crate::auth::{BadAuth, RegistryAuth};
use crate::node_file::{self, NodeFileError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest auth file read (a few KiB per registry).
pub const MAX_AUTH_FILE_SIZE: u64 = 1 << 20;

/// Entry fields holding credentials; `email` and `serveraddress` are
/// docker's leftovers and ignored without a note.
const SILENTLY_IGNORED: [&str; 2] = ["email", "serveraddress"];

/// Credentials by registry location, read from an auth file.
///
/// `Debug` shows the file and its keys, never the credentials.
///
/// # Examples
///
/// ```
/// use image_store::{AuthFile, RegistryAuth};
/// let text = br#"{"auths": {
///     "registry.example.com": {"auth": "bWU6czNjcmV0"},
///     "registry.example.com/team": {"identitytoken": "refresh"},
///     "https://index.docker.io/v1/": {"username": "hub", "password": "pw"}
/// }, "credsStore": "desktop"}"#;
/// let loaded = AuthFile::parse("/etc/cri-server/auth.json", text)?;
/// let file = loaded.file;
/// assert_eq!(loaded.ignored, ["credsStore"]);
/// let team = file.lookup("registry.example.com", "team/app");
/// assert_eq!(team, Some(&RegistryAuth::IdentityToken("refresh".into())));
/// let other = file.lookup("registry.example.com", "other/app");
/// assert!(matches!(other, Some(RegistryAuth::Basic { username, .. }) if username == "me"));
/// assert!(file.lookup("docker.io", "library/busybox").is_some());
/// assert!(!format!("{file:?}").contains("bWU6czNjcmV0"));
/// # Ok::<(), image_store::AuthFileError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthFile {
    /// Where the credentials came from, for messages.
    path: PathBuf,
    /// Credentials by normalised key.
    entries: BTreeMap<String, RegistryAuth>,
}

impl std::fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthFile")
            .field("path", &self.path)
            .field("keys", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// An auth file as read: the credentials, and what in the file was left
/// out (for the caller to log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedAuthFile {
    /// The credentials.
    pub file: AuthFile,
    /// What was left out, one phrase each: a top-level key (`credHelpers`),
    /// or an entry's key and field (`auths["host"].email`), or an entry
    /// without credentials (`auths["host"]`). Never a value.
    pub ignored: Vec<String>,
}

/// Why an auth file cannot be used. No message quotes a value from it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFileError {
    /// The file could not be opened or read.
    #[error("auth file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file (a FIFO, a device, a directory).
    #[error("auth file {}: not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Larger than [`MAX_AUTH_FILE_SIZE`].
    #[error("auth file {}: larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        limit: u64,
    },
    /// Not JSON, or not of the file's shape.
    #[error("auth file {}: {why}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where and what, without the value.
        why: String,
    },
    /// An entry's `auth` field does not decode.
    #[error("auth file {}: auths[{key:?}].auth: {source}", path.display())]
    BadAuth {
        /// The file.
        path: PathBuf,
        /// The entry's key.
        key: String,
        /// Why.
        #[source]
        source: BadAuth,
    },
}

impl AuthFile {
    /// Reads the auth file at `path`: `Ok(None)` when there is none (a node
    /// without stored credentials), an error when it cannot be read or is
    /// malformed. Blocking: call it off the async workers.
    pub fn load(path: &Path) -> Result<Option<LoadedAuthFile>, AuthFileError> {
        let bytes = match read_capped(path) {
            Err(AuthFileError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            other => other?,
        };
        Self::parse(path, &bytes).map(Some)
    }

    /// Parses `bytes`, the content of the auth file `path` (named in
    /// errors).
    pub fn parse(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<LoadedAuthFile, AuthFileError> {
        let path = path.into();
        let malformed = |why: String| AuthFileError::Malformed {
            path: path.clone(),
            why,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| malformed(json_error(&e)))?;
        let Value::Object(top) = value else {
            return Err(malformed("not a JSON object".into()));
        };
        let mut ignored = Vec::new();
        let mut entries = BTreeMap::new();
        for (key, value) in &top {
            match (key.as_str(), value) {
                ("auths", Value::Object(auths)) => {
                    read_auths(auths, &mut entries, &mut ignored).map_err(|e| e.at(&path))?
                }
                ("auths", _) => return Err(malformed("auths is not an object".into())),
                (other, _) => ignored.push(other.to_string()),
            }
        }
        ignored.sort();
        Ok(LoadedAuthFile {
            file: AuthFile { path, entries },
            ignored,
        })
    }

    /// The file the credentials came from (empty for no file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file holds no credentials.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many locations the file holds credentials for.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The credentials for `repository` on `host` (`host[:port]`): those of
    /// the longest key that is `host/repository` or a path-prefix of it,
    /// down to `host` alone.
    pub fn lookup(&self, host: &str, repository: &str) -> Option<&RegistryAuth> {
        let host = canonical_host(host);
        let mut location = format!("{host}/{}", repository.trim_matches('/'));
        loop {
            if let Some(auth) = self.entries.get(location.trim_end_matches('/')) {
                return Some(auth);
            }
            match location.rfind('/') {
                Some(cut) => location.truncate(cut),
                None => return None,
            }
        }
    }
}

/// Reads at most [`MAX_AUTH_FILE_SIZE`] bytes of the regular file `path`.
fn read_capped(path: &Path) -> Result<Vec<u8>, AuthFileError> {
    let path_buf = path.to_path_buf();
    node_file::read_capped(path, MAX_AUTH_FILE_SIZE).map_err(|e| match e {
        NodeFileError::Io(source) => AuthFileError::Read {
            path: path_buf,
            source,
        },
        NodeFileError::NotAFile => AuthFileError::NotAFile { path: path_buf },
        NodeFileError::TooLarge => AuthFileError::TooLarge {
            path: path_buf,
            limit: MAX_AUTH_FILE_SIZE,
        },
    })
}

/// A JSON error's kind and position, without the input it quotes (serde
/// quotes the offending value, which may be a secret).
fn json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "cannot be read",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "is not of the expected shape",
        serde_json::error::Category::Eof => "ends too early",
    };
    format!("{kind} (line {}, column {})", e.line(), e.column())
}

/// A fault in one entry, before the file is known.
enum EntryFault {
    Malformed(String),
    BadAuth { key: String, source: BadAuth },
}

impl EntryFault {
    fn at(self, path: &Path) -> AuthFileError {
        let path = path.to_path_buf();
        match self {
            EntryFault::Malformed(why) => AuthFileError::Malformed { path, why },
            EntryFault::BadAuth { key, source } => AuthFileError::BadAuth { path, key, source },
        }
    }
}

/// Reads the `auths` object into `entries`. Keys with a scheme (docker's
/// old form) go first, so a plain key for the same location wins.
fn read_auths(
    auths: &Map<String, Value>,
    entries: &mut BTreeMap<String, RegistryAuth>,
    ignored: &mut Vec<String>,
) -> Result<(), EntryFault> {
    let (legacy, plain): (Vec<_>, Vec<_>) = auths.iter().partition(|(key, _)| has_scheme(key));
    for (key, value) in legacy.into_iter().chain(plain) {
        let Some(location) = normalize_key(key) else {
            ignored.push(format!("auths[{key:?}] (not a registry location)"));
            continue;
        };
        match read_entry(key, value, ignored)? {
            Some(auth) => {
                entries.insert(location, auth);
            }
            None => ignored.push(format!("auths[{key:?}] (no credentials)")),
        }
    }
    Ok(())
}

/// One entry's credentials, in this order: `identitytoken`,
/// `registrytoken`, `auth`, `username` and `password`; `None` when it has
/// none.
fn read_entry(
    key: &str,
    value: &Value,
    ignored: &mut Vec<String>,
) -> Result<Option<RegistryAuth>, EntryFault> {
    let Value::Object(fields) = value else {
        return Err(EntryFault::Malformed(format!(
            "auths[{key:?}] is not an object"
        )));
    };
    let mut text = BTreeMap::new();
    for (field, value) in fields {
        match (field.as_str(), value) {
            ("auth" | "identitytoken" | "registrytoken" | "username" | "password", value) => {
                let Value::String(s) = value else {
                    return Err(EntryFault::Malformed(format!(
                        "auths[{key:?}].{field} is not a string"
                    )));
                };
                text.insert(field.as_str(), s.as_str());
            }
            (field, _) if SILENTLY_IGNORED.contains(&field) => {}
            (field, _) => ignored.push(format!("auths[{key:?}].{field}")),
        }
    }
    let given = |field: &str| text.get(field).copied().filter(|s| !s.is_empty());
    if let Some(token) = given("identitytoken") {
        return Ok(Some(RegistryAuth::IdentityToken(token.into())));
    }
    if let Some(token) = given("registrytoken") {
        return Ok(Some(RegistryAuth::Bearer(token.into())));
    }
    if let Some(auth) = given("auth") {
        return RegistryAuth::from_auth_field(auth)
            .map(Some)
            .map_err(|source| EntryFault::BadAuth {
                key: key.to_string(),
                source,
            });
    }
    Ok(given("username").map(|username| RegistryAuth::Basic {
        username: username.into(),
        password: text.get("password").copied().unwrap_or_default().into(),
    }))
}

fn has_scheme(key: &str) -> bool {
    key.starts_with("http://") || key.starts_with("https://")
}

/// The location a key stands for: with a scheme (docker's old form), its
/// host only; otherwise the key without trailing slashes. Docker Hub's
/// host names are `docker.io`. `None` for an empty key.
fn normalize_key(key: &str) -> Option<String> {
    let location = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => rest.split('/').next().unwrap_or_default(),
        None => key.trim_end_matches('/'),
    };
    let (host, path) = match location.split_once('/') {
        Some((host, path)) => (host, Some(path)),
        None => (location, None),
    };
    if host.is_empty() {
        return None;
    }
    let host = canonical_host(host);
    Some(match path {
        Some(path) => format!("{host}/{path}"),
        None => host.to_string(),
    })
}

/// Docker Hub's host names as `docker.io`; any other host unchanged.
fn canonical_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LoadedAuthFile {
        AuthFile::parse("/etc/auth.json", text.as_bytes()).unwrap()
    }

    fn basic(username: &str) -> RegistryAuth {
        RegistryAuth::Basic {
            username: username.into(),
            password: "pw".into(),
        }
    }

    #[test]
    fn keys_are_normalised_as_containers_auth_json_says() {
        for (key, location) in [
            ("registry.example.com", "registry.example.com"),
            ("registry.example.com:5000/", "registry.example.com:5000"),
            ("registry.example.com/ns/app", "registry.example.com/ns/app"),
            ("https://registry.example.com/v1/", "registry.example.com"),
            (
                "http://registry.example.com:5000",
                "registry.example.com:5000",
            ),
            ("https://index.docker.io/v1/", "docker.io"),
            ("index.docker.io/library", "docker.io/library"),
            ("registry-1.docker.io", "docker.io"),
        ] {
            assert_eq!(normalize_key(key).as_deref(), Some(location), "{key}");
        }
        assert_eq!(normalize_key(""), None);
        assert_eq!(normalize_key("https://"), None);
    }

    #[test]
    fn the_longest_key_on_a_path_boundary_wins() {
        let file = parse(
            r#"{"auths": {
                "r.example": {"username": "host", "password": "pw"},
                "r.example/team": {"username": "team", "password": "pw"},
                "r.example/team/app": {"username": "app", "password": "pw"}
            }}"#,
        )
        .file;
        assert_eq!(file.lookup("r.example", "team/app"), Some(&basic("app")));
        assert_eq!(file.lookup("r.example", "team/app2"), Some(&basic("team")));
        assert_eq!(file.lookup("r.example", "team/x/y"), Some(&basic("team")));
        assert_eq!(file.lookup("r.example", "teams/app"), Some(&basic("host")));
        assert_eq!(file.lookup("other.example", "team/app"), None);
        assert_eq!(file.lookup("r.example:443", "team/app"), None);
    }

    #[test]
    fn a_plain_key_wins_over_dockers_old_form_for_the_same_host() {
        let file = parse(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"username": "old", "password": "pw"},
                "docker.io": {"username": "new", "password": "pw"}
            }}"#,
        )
        .file;
        assert_eq!(
            file.lookup("docker.io", "library/busybox"),
            Some(&basic("new"))
        );
        assert_eq!(
            file.lookup("index.docker.io", "library/busybox"),
            Some(&basic("new"))
        );
    }

    #[test]
    fn each_credential_form_is_read_tokens_first() {
        let file = parse(
            r#"{"auths": {
                "a.example": {"auth": "bWU6czNjcmV0"},
                "b.example": {"identitytoken": "refresh", "auth": "bWU6czNjcmV0"},
                "c.example": {"registrytoken": "bearer"},
                "d.example": {"username": "u", "password": "pw"}
            }}"#,
        )
        .file;
        let get = |host| file.lookup(host, "x").cloned();
        assert_eq!(
            get("a.example"),
            Some(RegistryAuth::Basic {
                username: "me".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(
            get("b.example"),
            Some(RegistryAuth::IdentityToken("refresh".into()))
        );
        assert_eq!(
            get("c.example"),
            Some(RegistryAuth::Bearer("bearer".into()))
        );
        assert_eq!(get("d.example"), Some(basic("u")));
    }

    #[test]
    fn what_cannot_be_used_is_left_out_with_a_note() {
        let loaded = parse(
            r#"{"auths": {
                "a.example": {"auth": "bWU6czNjcmV0", "email": "x@y", "extra": 1},
                "b.example": {},
                "": {"auth": "bWU6czNjcmV0"}
            }, "credHelpers": {"gcr.io": "gcloud"}, "credsStore": "desktop"}"#,
        );
        assert_eq!(
            loaded.ignored,
            [
                "auths[\"\"] (not a registry location)",
                "auths[\"a.example\"].extra",
                "auths[\"b.example\"] (no credentials)",
                "credHelpers",
                "credsStore",
            ]
        );
        assert_eq!(loaded.file.entries.len(), 1);
        assert!(parse("{}").file.is_empty());
    }

    #[test]
    fn malformed_files_are_errors_that_quote_no_value() {
        let secret = "c2VjcmV0LXZhbHVl";
        for (text, expected) in [
            ("not json {", "is not valid JSON (line 1, column 2)"),
            (&format!(r#"["{secret}"]"#), "not a JSON object"),
            (
                &format!(r#"{{"auths": "{secret}"}}"#),
                "auths is not an object",
            ),
            (
                &format!(r#"{{"auths": {{"r.example": "{secret}"}}}}"#),
                "auths[\"r.example\"] is not an object",
            ),
            (
                r#"{"auths": {"r.example": {"auth": 5}}}"#,
                "auths[\"r.example\"].auth is not a string",
            ),
            (
                &format!(r#"{{"auths": {{"r.example": {{"auth": "{secret}"}}}}}}"#),
                "auths[\"r.example\"].auth: auth field is not user:password",
            ),
            (
                r#"{"auths": {"r.example": {"auth": "%%%"}}}"#,
                "auth field is not base64",
            ),
        ] {
            let err = AuthFile::parse("/etc/auth.json", text.as_bytes()).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("/etc/auth.json"), "{shown}");
            assert!(shown.contains(expected), "{text}: {shown}");
            assert!(!shown.contains(secret), "{shown}");
            assert!(!shown.contains("secret-value"), "{shown}");
        }
    }

    #[test]
    fn files_are_read_under_a_cap_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert_eq!(AuthFile::load(&missing).unwrap(), None);
        let huge = dir.path().join("huge.json");
        let padding = " ".repeat(MAX_AUTH_FILE_SIZE as usize);
        std::fs::write(&huge, format!("{{\"auths\": {{}}}}{padding}")).unwrap();
        let err = AuthFile::load(&huge).unwrap_err();
        assert!(matches!(err, AuthFileError::TooLarge { .. }), "{err}");
        let err = AuthFile::load(dir.path()).unwrap_err();
        assert!(matches!(err, AuthFileError::NotAFile { .. }), "{err}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = AuthFile::load(&fifo).unwrap_err();
        assert!(matches!(err, AuthFileError::NotAFile { .. }), "{err}");
        let good = dir.path().join("auth.json");
        std::fs::write(
            &good,
            r#"{"auths": {"r.example": {"auth": "bWU6czNjcmV0"}}}"#,
        )
        .unwrap();
        let loaded = AuthFile::load(&good).unwrap().unwrap();
        assert_eq!(loaded.file.path(), good);
        assert!(loaded.file.lookup("r.example", "a/b").is_some());
    }
}
