//! Per-registry TLS (issue #19): a registry whose certificate a private CA
//! signed is refused until its entry names the CA (`ca_file`), for the
//! registry and its mirrors; one that demands a client certificate gets
//! the entry's `cert_file` and `key_file`.

mod common;

use common::auth_registry::{serve_tls, tiny_handler, Pki, PkiFiles};
use image_store::{Error, ImageStore, RegistriesConfig, RegistryConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A TLS registry serving the tiny image, with certificates from `pki`.
async fn tls_registry(pki: &Pki, client_certificates: bool) -> (String, Arc<AtomicUsize>) {
    let refused = Arc::new(AtomicUsize::new(0));
    let acceptor = pki.acceptor(client_certificates);
    let address = serve_tls(tiny_handler(), acceptor, Arc::clone(&refused)).await;
    (address, refused)
}

/// `prefix` over TLS with the given files, mirrored to `mirrors` if any.
fn entry(prefix: &str, mirrors: &[&str], files: Option<&PkiFiles>, client: bool) -> RegistryConfig {
    RegistryConfig {
        prefix: prefix.into(),
        mirrors: mirrors.iter().map(|m| m.to_string()).collect(),
        mirrors_only: !mirrors.is_empty(),
        ca_file: files.map(|f| f.ca.clone()),
        cert_file: files.filter(|_| client).map(|f| f.client_cert.clone()),
        key_file: files.filter(|_| client).map(|f| f.client_key.clone()),
        ..Default::default()
    }
}

async fn pull(entry: RegistryConfig, image: &str) -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let registries = RegistriesConfig {
        registries: vec![entry],
    }
    .load()
    .unwrap();
    let store = ImageStore::open(dir.path().join("s"), registries)
        .await
        .unwrap();
    store.pull(image, None).await.map(drop)
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_where_its_entry_says() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write(dir.path());
    let (address, _) = tls_registry(&pki, false).await;
    let image = format!("{address}/team/tiny:1");
    let err = pull(entry(&address, &[], None, false), &image)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("https://{address}/")), "{text}");
    assert!(text.contains("certificate"), "{text}");
    pull(entry(&address, &[], Some(&files), false), &image)
        .await
        .unwrap();
    // As a mirror, with the CA named by the mirrored registry's entry.
    let mirrored = entry("registry.example", &[&address], Some(&files), false);
    pull(mirrored, "registry.example/team/tiny:1")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_registry_that_wants_a_client_certificate_gets_the_entrys() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write(dir.path());
    let (address, refused) = tls_registry(&pki, true).await;
    let image = format!("{address}/team/tiny:1");
    let err = pull(entry(&address, &[], Some(&files), false), &image)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "the handshake went through"
    );
    pull(entry(&address, &[], Some(&files), true), &image)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_client_key_that_is_not_one_is_refused_at_load_naming_the_file() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write(dir.path());
    // The certificate where the key should be.
    std::fs::copy(&files.client_cert, &files.client_key).unwrap();
    let config = RegistriesConfig {
        registries: vec![entry("registry.example", &[], Some(&files), true)],
    };
    let text = config.load().unwrap_err().to_string();
    assert!(text.contains("key_file"), "{text}");
    assert!(
        text.contains(&files.client_key.display().to_string()),
        "{text}"
    );
    assert!(!text.contains("BEGIN"), "{text}");
}

#[tokio::test]
async fn debug_output_names_the_tls_files_not_their_content() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write(dir.path());
    let config = RegistriesConfig {
        registries: vec![entry("registry.example", &[], Some(&files), true)],
    };
    let shown = format!("{:?}", config.load().unwrap());
    assert!(
        shown.contains(&files.client_key.display().to_string()),
        "{shown}"
    );
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}
