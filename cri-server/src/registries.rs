//! The registries pulls go by, loaded from `[image]`: the
//! `[[image.registries]]` entries with their TLS files read
//! (`ca_file`, `cert_file`, `key_file`) and the node's stored credentials
//! (`auth_file`). Loaded at start and again at every reload (the files are
//! read again even when the keys did not change); anything unreadable or
//! malformed is an error naming the key and the file, and a reload that
//! meets one changes nothing.
//!
//! A missing auth file is no error (CRI-O's behaviour): no stored
//! credentials, said once at info. What the file holds that cannot be used
//! (credential helpers, unknown fields) is logged as a warning, by name,
//! never by value.

use crate::config::ImageConfig;
use image_store::{AuthFile, AuthFileError, Registries, RegistriesConfig};
use std::path::Path;

/// Why the registries of a configuration cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    /// A registry entry's TLS files.
    #[error("image.registries: {0}")]
    Tls(#[from] image_store::tls::TlsError),
    /// The auth file.
    #[error("image.auth_file: {0}")]
    AuthFile(#[from] AuthFileError),
    /// Reading them on a blocking thread failed (a panic in the loader).
    #[error("reading the registries' files: background task failed")]
    Task,
}

/// The registries `config` describes, every file read. Blocking.
pub fn load(config: &ImageConfig) -> Result<Registries, RegistriesError> {
    let entries = RegistriesConfig {
        registries: config.registries.clone(),
    };
    let registries = Registries::load(&entries)?;
    Ok(match auth_file(&config.auth_file)? {
        Some(file) => registries.with_auth_file(file),
        None => registries,
    })
}

/// [`load`] on a blocking thread.
pub async fn load_blocking(config: &ImageConfig) -> Result<Registries, RegistriesError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || load(&config))
        .await
        .map_err(|_| RegistriesError::Task)?
}

/// The auth file at `path`, if one is configured and exists.
fn auth_file(path: &Path) -> Result<Option<AuthFile>, AuthFileError> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let Some(loaded) = AuthFile::load(path)? else {
        tracing::info!(auth_file = %path.display(), "no auth file: no stored registry credentials");
        return Ok(None);
    };
    tracing::info!(
        auth_file = %path.display(),
        locations = loaded.file.len(),
        "registry credentials read"
    );
    if !loaded.ignored.is_empty() {
        tracing::warn!(
            auth_file = %path.display(),
            ignored = ?loaded.ignored,
            "auth file: entries the daemon cannot use are ignored (credential helpers are not run)"
        );
    }
    Ok(Some(loaded.file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_config(auth_file: &Path) -> ImageConfig {
        ImageConfig {
            auth_file: auth_file.to_path_buf(),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn a_missing_auth_file_is_no_credentials_and_a_malformed_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let none = load(&image_config(&path)).unwrap();
        assert!(none.auth_file().is_empty());
        std::fs::write(&path, r#"{"auths": {"r.example": {"auth": "c2VjcmV0"}}}"#).unwrap();
        let err = load(&image_config(&path)).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("image.auth_file: auth file "), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
        std::fs::write(
            &path,
            r#"{"auths": {"r.example": {"auth": "bWU6czNjcmV0"}}}"#,
        )
        .unwrap();
        let loaded = load(&image_config(&path)).unwrap();
        assert!(loaded.auth_file().lookup("r.example", "app").is_some());
    }

    #[test]
    fn a_bad_tls_file_names_the_entry_and_the_key() {
        let mut config = ImageConfig::default();
        config.registries.push(image_store::RegistryConfig {
            prefix: "registry.example".into(),
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..Default::default()
        });
        let err = load(&config).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "image.registries: registry \"registry.example\": cert_file /nonexistent/cert.pem:"
            ),
            "{text}"
        );
    }
}
