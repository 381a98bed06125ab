//! Per-registry TLS ([`RegistryTls`]): a CA bundle trusted for a registry
//! and its mirrors beside the system's roots (`ca_file`), and a client
//! certificate presented to them (`cert_file` and `key_file`), all PEM.
//!
//! The files are read and checked when the configuration is loaded (at
//! start and at each reload), never at pull time: a file that is missing,
//! not PEM, holds no certificate or a key that does not load is an error
//! naming the registry entry, the key and the file. The TLS backend is the
//! workspace's reqwest one, rustls: roots are merged with the platform's,
//! the identity is reqwest's PEM identity (PKCS#8, PKCS#1 or SEC1 keys).

use crate::node_file::{self, NodeFileError};
use crate::registries::RegistryConfig;
use sha2::Digest as _;
use std::path::{Path, PathBuf};

/// The largest certificate or key file read (system CA bundles are a few
/// hundred KiB).
pub const MAX_PEM_FILE_SIZE: u64 = 1 << 20;

/// One registry entry's TLS material, read and checked.
///
/// `Debug` names the files, never their content; two values are equal
/// when their files' contents are.
#[derive(Clone)]
pub struct RegistryTls {
    /// The files, for messages.
    files: TlsFiles,
    /// Certificates trusted beside the platform's roots.
    roots: Vec<reqwest::Certificate>,
    /// The client certificate and its key.
    identity: Option<reqwest::Identity>,
    /// SHA-256 over the files' contents: what clients are cached by.
    fingerprint: [u8; 32],
}

/// The files a registry entry names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TlsFiles {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

impl std::fmt::Debug for RegistryTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryTls")
            .field("ca_file", &self.files.ca_file)
            .field("cert_file", &self.files.cert_file)
            .field("key_file", &self.files.key_file)
            .finish()
    }
}

impl PartialEq for RegistryTls {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for RegistryTls {}

/// Why a registry entry's TLS files cannot be used. Messages name the
/// entry, the key and the file, never a key's content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A path that is not absolute.
    #[error("registry {prefix:?}: {key} {}: not an absolute path", path.display())]
    Relative {
        /// The entry's prefix.
        prefix: String,
        /// `ca_file`, `cert_file` or `key_file`.
        key: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A client certificate without its key, or the reverse.
    #[error("registry {prefix:?}: cert_file and key_file go together, {given} is alone")]
    Unpaired {
        /// The entry's prefix.
        prefix: String,
        /// The one given.
        given: &'static str,
    },
    /// The file could not be read.
    #[error("registry {prefix:?}: {key} {}: {why}", path.display())]
    Read {
        /// The entry's prefix.
        prefix: String,
        /// `ca_file`, `cert_file` or `key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (an I/O error, not a regular file, too large).
        why: String,
    },
    /// The file's content is not what the key needs.
    #[error("registry {prefix:?}: {key} {}: {why}", path.display())]
    Invalid {
        /// The entry's prefix.
        prefix: String,
        /// `ca_file`, `cert_file` or `key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

impl RegistryTls {
    /// Reads and checks the TLS files `entry` names; `None` when it names
    /// none. Blocking: call it off the async workers.
    pub fn load(entry: &RegistryConfig) -> Result<Option<RegistryTls>, TlsError> {
        let files = TlsFiles {
            ca_file: entry.ca_file.clone(),
            cert_file: entry.cert_file.clone(),
            key_file: entry.key_file.clone(),
        };
        if files == TlsFiles::default() {
            return Ok(None);
        }
        let reader = Reader {
            prefix: &entry.prefix,
        };
        let mut hash = sha2::Sha256::new();
        let roots = match &files.ca_file {
            Some(path) => reader.roots(path, &mut hash)?,
            None => Vec::new(),
        };
        let identity = match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => Some(reader.identity(cert, key, &mut hash)?),
            (None, None) => None,
            (Some(_), None) => return Err(reader.unpaired("cert_file")),
            (None, Some(_)) => return Err(reader.unpaired("key_file")),
        };
        Ok(Some(RegistryTls {
            files,
            roots,
            identity,
            fingerprint: hash.finalize().into(),
        }))
    }

    /// What clients with this material are cached by.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// `builder` trusting these roots (beside the platform's) and
    /// presenting this client certificate.
    pub(crate) fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let builder = builder.tls_certs_merge(self.roots.iter().cloned());
        match &self.identity {
            Some(identity) => builder.identity(identity.clone()),
            None => builder,
        }
    }
}

/// Reads one entry's files, naming the entry in errors.
struct Reader<'a> {
    prefix: &'a str,
}

impl Reader<'_> {
    /// The CA bundle: at least one PEM certificate.
    fn roots(
        &self,
        path: &Path,
        hash: &mut sha2::Sha256,
    ) -> Result<Vec<reqwest::Certificate>, TlsError> {
        let pem = self.read("ca_file", path, hash)?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| self.invalid("ca_file", path, format!("not PEM: {}", chain(&e))))?;
        if roots.is_empty() {
            return Err(self.invalid("ca_file", path, "no PEM certificate in it".into()));
        }
        let builder = reqwest::Client::builder().tls_certs_merge(roots.iter().cloned());
        self.probe(builder, "ca_file", path)?;
        Ok(roots)
    }

    /// The client certificate (chain) and its private key.
    fn identity(
        &self,
        cert: &Path,
        key: &Path,
        hash: &mut sha2::Sha256,
    ) -> Result<reqwest::Identity, TlsError> {
        let mut pem = self.read("cert_file", cert, hash)?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
        if certificates.is_empty() {
            return Err(self.invalid("cert_file", cert, "no PEM certificate in it".into()));
        }
        pem.push(b'\n');
        pem.extend(self.read("key_file", key, hash)?);
        // reqwest's message says what is missing, never the key.
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            let why = format!("not a PEM private key for cert_file: {}", chain(&e));
            self.invalid("key_file", key, why)
        })?;
        self.probe(
            reqwest::Client::builder().identity(identity.clone()),
            "key_file",
            key,
        )?;
        Ok(identity)
    }

    /// Builds a client from `builder` once, so that what a file holds is
    /// checked now (roots parsed, the key usable) rather than at the first
    /// pull.
    fn probe(
        &self,
        builder: reqwest::ClientBuilder,
        key: &'static str,
        path: &Path,
    ) -> Result<(), TlsError> {
        builder
            .build()
            .map(drop)
            .map_err(|e| self.invalid(key, path, format!("unusable: {}", chain(&e))))
    }

    /// The file's bytes (absolute path, regular file, capped), hashed.
    fn read(
        &self,
        key: &'static str,
        path: &Path,
        hash: &mut sha2::Sha256,
    ) -> Result<Vec<u8>, TlsError> {
        if !path.is_absolute() {
            return Err(TlsError::Relative {
                prefix: self.prefix.to_string(),
                key,
                path: path.to_path_buf(),
            });
        }
        let bytes = node_file::read_capped(path, MAX_PEM_FILE_SIZE).map_err(|e| {
            let why = match e {
                NodeFileError::Io(e) => e.to_string(),
                NodeFileError::NotAFile => "not a regular file".into(),
                NodeFileError::TooLarge => format!("larger than {MAX_PEM_FILE_SIZE} bytes"),
            };
            TlsError::Read {
                prefix: self.prefix.to_string(),
                key,
                path: path.to_path_buf(),
                why,
            }
        })?;
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
        Ok(bytes)
    }

    fn invalid(&self, key: &'static str, path: &Path, why: String) -> TlsError {
        TlsError::Invalid {
            prefix: self.prefix.to_string(),
            key,
            path: path.to_path_buf(),
            why,
        }
    }

    fn unpaired(&self, given: &'static str) -> TlsError {
        TlsError::Unpaired {
            prefix: self.prefix.to_string(),
            given,
        }
    }
}

/// An error and its sources, one after the other.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> RegistryConfig {
        RegistryConfig {
            prefix: "registry.example".into(),
            ca_file: ca.map(Path::to_path_buf),
            cert_file: cert.map(Path::to_path_buf),
            key_file: key.map(Path::to_path_buf),
            ..Default::default()
        }
    }

    fn message(entry: &RegistryConfig) -> String {
        RegistryTls::load(entry).unwrap_err().to_string()
    }

    #[test]
    fn no_files_is_no_tls_settings() {
        assert!(RegistryTls::load(&entry(None, None, None))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_the_reverse() {
        let path = Path::new("/etc/x.pem");
        let text = message(&entry(None, Some(path), None));
        assert_eq!(
            text,
            "registry \"registry.example\": cert_file and key_file go together, cert_file is alone"
        );
        let text = message(&entry(None, None, Some(path)));
        assert!(text.contains("key_file is alone"), "{text}");
    }

    #[test]
    fn unreadable_or_wrong_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let text = message(&entry(Some(&missing), None, None));
        assert!(text.contains("ca_file"), "{text}");
        assert!(text.contains(&missing.display().to_string()), "{text}");
        let text = message(&entry(Some(Path::new("ca.pem")), None, None));
        assert!(text.contains("not an absolute path"), "{text}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let text = message(&entry(Some(&garbage), None, None));
        assert!(text.contains("no PEM certificate"), "{text}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let text = message(&entry(Some(&broken), None, None));
        assert!(text.contains("ca_file"), "{text}");
        let huge = dir.path().join("huge.pem");
        std::fs::write(&huge, vec![b'a'; MAX_PEM_FILE_SIZE as usize + 1]).unwrap();
        let text = message(&entry(Some(&huge), None, None));
        assert!(text.contains("larger than"), "{text}");
        let text = message(&entry(None, Some(&garbage), Some(&garbage)));
        assert!(text.contains("cert_file"), "{text}");
    }
}
