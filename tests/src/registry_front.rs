//! Fronts for the fixture registry (127.0.0.1:5000) on loopback that ask
//! for what real registries ask for: a pull token from a realm that
//! exchanges identity (OAuth2 refresh) tokens, or TLS with a private CA and
//! client certificates ([`TestPki`]). What they let through goes to the
//! fixture registry, one connection per request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where `cargo xtask fixtures` runs the registry.
const REGISTRY: &str = "127.0.0.1:5000";
/// The `service` the front names in its challenges.
pub const SERVICE: &str = "cri-test-front";
/// The access token its realm hands out.
const ACCESS_TOKEN: &str = "front-access-token";

/// A front for the fixture registry.
pub struct Front {
    /// The refresh token the realm accepts now; `None`: no authentication.
    refresh_token: Mutex<Option<String>>,
    /// Token requests granted.
    granted: AtomicUsize,
    address: OnceLock<String>,
}

impl Front {
    /// A plain-HTTP front whose every registry request needs a token its
    /// realm (`POST /token`) gives for a refresh-token grant of
    /// `refresh_token`.
    pub async fn with_token(refresh_token: &str) -> Arc<Front> {
        Self::start(Some(refresh_token.to_string()), None).await
    }

    /// A TLS front asking nothing more than `acceptor` does (which may
    /// demand a client certificate).
    pub async fn with_tls(acceptor: tokio_rustls::TlsAcceptor) -> Arc<Front> {
        Self::start(None, Some(acceptor)).await
    }

    async fn start(
        refresh_token: Option<String>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Arc<Front> {
        let front = Arc::new(Front {
            refresh_token: Mutex::new(refresh_token),
            granted: AtomicUsize::new(0),
            address: OnceLock::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        front.address.set(address).expect("set once");
        let serving = Arc::clone(&front);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (front, tls) = (Arc::clone(&serving), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(socket).await {
                                front.answer(stream).await;
                            }
                        }
                        None => front.answer(socket).await,
                    }
                });
            }
        });
        front
    }

    /// Where it listens (`127.0.0.1:port`).
    pub fn address(&self) -> &str {
        self.address.get().map(String::as_str).unwrap_or_default()
    }

    /// Makes the realm accept `token` (and only it) from now on.
    pub fn set_refresh_token(&self, token: &str) {
        *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_string());
    }

    /// Token requests granted so far.
    pub fn granted(&self) -> usize {
        self.granted.load(Ordering::SeqCst)
    }

    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(&self, mut client: S) {
        let Some((head, body)) = read_request(&mut client).await else {
            return;
        };
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let refresh = self
            .refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let answer = match refresh {
            Some(refresh) if path.starts_with("/token") => self.token(&head, &body, &refresh),
            Some(_)
                if header(&head, "authorization") != Some(&format!("Bearer {ACCESS_TOKEN}")) =>
            {
                let challenge = format!(
                    "Bearer realm=\"http://{}/token\",service=\"{SERVICE}\"",
                    self.address()
                );
                reply(401, &[("WWW-Authenticate", &challenge)], b"")
            }
            _ => pass_through(&head)
                .await
                .unwrap_or_else(|| reply(502, &[], b"")),
        };
        let _ = client.write_all(&answer).await;
        let _ = client.shutdown().await;
    }

    /// The realm: a refresh-token grant of the current token, for this
    /// service and a pull scope, gets the access token.
    fn token(&self, head: &str, body: &[u8], refresh: &str) -> Vec<u8> {
        let form = form_fields(body);
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let granted = head.starts_with("POST ")
            && field("grant_type") == Some("refresh_token")
            && field("refresh_token") == Some(refresh)
            && field("service") == Some(SERVICE)
            && field("scope").is_some_and(|s| s.starts_with("repository:") && s.ends_with(":pull"));
        if !granted {
            return reply(401, &[], br#"{"error":"invalid_grant"}"#);
        }
        self.granted.fetch_add(1, Ordering::SeqCst);
        let answer = format!(r#"{{"access_token":"{ACCESS_TOKEN}","expires_in":300}}"#);
        reply(
            200,
            &[("Content-Type", "application/json")],
            answer.as_bytes(),
        )
    }
}

/// The value of header `name` in a request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A request's head and its `Content-Length` body (at most 64 KiB each).
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? != 1 || head.len() > 65536 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(65536)];
    stream.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

/// `application/x-www-form-urlencoded` fields, decoded.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// `head` sent to the fixture registry on a connection of its own (without
/// our `Authorization`), and its whole answer.
async fn pass_through(head: &str) -> Option<Vec<u8>> {
    let mut request: String = head
        .lines()
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
            name != "connection" && name != "authorization"
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    request.push_str("Connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(REGISTRY).await.ok()?;
    upstream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).await.ok()?;
    Some(answer)
}

/// A test certificate authority, a server certificate it signed for
/// 127.0.0.1 and a client certificate it signed, written to a directory.
pub struct TestPki {
    dir: tempfile::TempDir,
    server_pem: String,
    server_key_pem: String,
    ca_der: rustls_pki_types::CertificateDer<'static>,
}

impl TestPki {
    /// A fresh CA and its certificates; `ca.pem`, `client.pem` and
    /// `client-key.pem` are in [`TestPki::path`].
    pub fn new() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cri-server e2e CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = leaf(
            vec!["127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key_pem) = leaf(
            vec!["node.test".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("ca.pem", ca.pem()),
            ("client.pem", client_pem),
            ("client-key.pem", client_key_pem),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write PEM");
        }
        TestPki {
            dir,
            server_pem,
            server_key_pem,
            ca_der: ca.der().clone(),
        }
    }

    /// The file `name` (`ca.pem`, `client.pem`, `client-key.pem`), as a
    /// TOML string.
    pub fn path(&self, name: &str) -> String {
        format!("{:?}", self.dir.path().join(name).display().to_string())
    }

    /// A TLS acceptor with the server certificate that, with
    /// `client_certificates`, demands a client certificate the CA signed.
    pub fn acceptor(&self, client_certificates: bool) -> tokio_rustls::TlsAcceptor {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = vec![CertificateDer::from_pem_slice(self.server_pem.as_bytes()).expect("PEM")];
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("PEM");
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let config = if client_certificates {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = config
            .with_single_cert(certs, key)
            .expect("server certificate");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// A loopback listener that counts the connections it is offered and
/// drops them: where a refused pull must never go.
pub async fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (address, count)
}
