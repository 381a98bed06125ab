//! TLS for the streaming server: a PEM certificate chain and key from the
//! node, picked up again when the files change.
//!
//! kubelet's certificate manager rotates serving certificates in place, so
//! each new connection checks the files' modification times and reloads
//! them when they moved. A rotation that leaves unreadable or mismatched
//! files is logged and the last good pair stays in use: a bad write must not
//! take streaming down.
//!
//! Only HTTP/1.1 is offered through ALPN: the Upgrade to SPDY or WebSocket
//! that every session starts with does not exist in HTTP/2.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS {path}: {reason}")]
pub struct TlsError {
    /// The file at fault (or the certificate, for a mismatched pair).
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The certificate and key files and the acceptor made from them.
///
/// # Examples
///
/// ```no_run
/// use cri_streaming::tls::TlsFiles;
/// use std::sync::Arc;
///
/// # async fn demo() -> Result<(), cri_streaming::tls::TlsError> {
/// let tls = Arc::new(TlsFiles::load(
///     "/etc/cri-server/tls.crt".into(),
///     "/etc/cri-server/tls.key".into(),
/// )?);
/// let acceptor = tls.acceptor().await; // reloaded if the files changed
/// # let _ = acceptor;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Loaded>,
}

struct Loaded {
    stamp: (Option<SystemTime>, Option<SystemTime>),
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("stamp", &self.stamp)
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads and checks both files now; the daemon refuses to start when
    /// they cannot be used.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<TlsFiles, TlsError> {
        let stamp = (modified(&cert), modified(&key));
        let acceptor = acceptor(&cert, &key)?;
        Ok(TlsFiles {
            cert,
            key,
            current: Mutex::new(Loaded { stamp, acceptor }),
        })
    }

    /// The acceptor for a new connection, from the files as they are now.
    pub async fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let this = Arc::clone(self);
        let fresh = tokio::task::spawn_blocking(move || this.refresh()).await;
        match fresh {
            Ok(acceptor) => acceptor,
            Err(_) => self.lock().acceptor.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reloads when either file's modification time moved.
    fn refresh(&self) -> TlsAcceptor {
        let stamp = (modified(&self.cert), modified(&self.key));
        let mut current = self.lock();
        if stamp == current.stamp {
            return current.acceptor.clone();
        }
        // Whatever the outcome, this pair of files has been looked at: a bad
        // pair is reported once, not on every connection.
        current.stamp = stamp;
        match acceptor(&self.cert, &self.key) {
            Ok(acceptor) => {
                tracing::info!(cert = %self.cert.display(), "streaming TLS certificate reloaded");
                current.acceptor = acceptor;
            }
            Err(e) => {
                tracing::warn!(error = %e, "streaming TLS reload failed; keeping the previous certificate");
            }
        }
        current.acceptor.clone()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let error = |path: &Path, reason: String| TlsError {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| error(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(error(cert, "no PEM certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| error(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| error(cert, format!("certificate and key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_good_pair_loads_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        TlsFiles::load(cert.clone(), key.clone()).unwrap();

        let missing = dir.path().join("nope.crt");
        let err = TlsFiles::load(missing.clone(), key.clone()).unwrap_err();
        assert_eq!(err.path, missing);

        let garbage = dir.path().join("garbage.crt");
        std::fs::write(&garbage, "not pem").unwrap();
        let err = TlsFiles::load(garbage.clone(), key.clone()).unwrap_err();
        assert_eq!(err.path, garbage);
        assert!(err.to_string().contains("no PEM certificate"), "{err}");

        let err = TlsFiles::load(cert.clone(), cert.clone()).unwrap_err();
        assert_eq!(err.path, cert, "a certificate is not a key");

        let (_, other_key) = pair(dir.path(), "b");
        let err = TlsFiles::load(cert.clone(), other_key).unwrap_err();
        assert!(err.reason.contains("do not go together"), "{err}");
    }

    #[test]
    fn changed_files_are_reloaded_and_a_bad_rotation_keeps_the_old_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let files = TlsFiles::load(cert.clone(), key.clone()).unwrap();
        let before = files.lock().stamp;
        // A new pair written over the old one (mtime moved on).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (c2, k2) = pair(dir.path(), "b");
        std::fs::rename(&c2, &cert).unwrap();
        std::fs::rename(&k2, &key).unwrap();
        files.refresh();
        assert_ne!(files.lock().stamp, before);
        // A broken rotation: the old acceptor stays, the stamp moves so the
        // warning is not repeated on every connection.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&cert, "broken").unwrap();
        files.refresh();
        let after_bad = files.lock().stamp;
        assert_eq!(after_bad, (modified(&cert), modified(&key)));
    }
}
