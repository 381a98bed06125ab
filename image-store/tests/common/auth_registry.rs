//! Registries on loopback that want credentials the way real ones do: a
//! registry behind a token realm that exchanges identity (refresh) tokens
//! for access tokens (the distribution token spec's OAuth2 flow), and any
//! registry served over TLS with certificates from a test [`Pki`]
//! (optionally demanding a client certificate).

use super::fake_registry::{self, header, Response};
use reqwest::Url;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server read it.
pub struct Request {
    pub method: String,
    pub path: String,
    pub head: String,
    pub body: Vec<u8>,
}

/// What answers requests.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Reads a request's head and its `Content-Length` body (at most 64 KiB).
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
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
    let mut words = head.split_whitespace();
    Some(Request {
        method: words.next()?.to_string(),
        path: words.next()?.to_string(),
        head,
        body,
    })
}

/// Answers one request on `stream` and closes it.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, handler: Handler) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let (status, headers, body) = handler(&request);
    let mut reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        reply.push_str(&format!("{k}: {v}\r\n"));
    }
    reply.push_str("\r\n");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

/// Serves `handler` over plain HTTP on a loopback port; the address.
pub async fn serve_http(handler: Handler) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer(socket, Arc::clone(&handler)));
        }
    });
    address
}

/// Serves `handler` over TLS with `acceptor` on a loopback port; the
/// address. Handshakes that fail are counted in `refused`.
pub async fn serve_tls(
    handler: Handler,
    acceptor: tokio_rustls::TlsAcceptor,
    refused: Arc<AtomicUsize>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, handler) = (acceptor.clone(), Arc::clone(&handler));
            let refused = Arc::clone(&refused);
            tokio::spawn(async move {
                match acceptor.accept(socket).await {
                    Ok(tls) => answer(tls, handler).await,
                    Err(_) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    address
}

/// Serves the tiny image to anyone.
pub fn tiny_handler() -> Handler {
    Arc::new(|request: &Request| fake_registry::tiny_response(&request.path))
}

/// The `service` the token registry names in its challenge.
pub const SERVICE: &str = "fake-registry";
/// The access token the token registry's realm hands out.
pub const ACCESS_TOKEN: &str = "access-0123";

/// A registry whose every request needs `Bearer ACCESS_TOKEN`, which its
/// realm (`POST /token`) gives only for a refresh-token grant of
/// `refresh_token`, for the pull scope of `private/tiny`.
pub struct TokenRegistry {
    /// The refresh token the realm accepts now.
    pub refresh_token: Mutex<String>,
    /// Token requests the realm answered with a token.
    pub granted: AtomicUsize,
    /// Token requests it refused.
    pub refused: AtomicUsize,
    /// Form fields of the last token request, as sent.
    pub last_form: Mutex<Vec<(String, String)>>,
    /// When set, the realm's answer instead of a token (hostile realms).
    pub answer: Mutex<Option<Response>>,
    /// When set, the realm named in challenges instead of our own.
    pub realm: Mutex<Option<String>>,
    address: OnceLock<String>,
}

impl TokenRegistry {
    /// A registry accepting `refresh_token`, served on loopback.
    pub async fn start(refresh_token: &str) -> Arc<TokenRegistry> {
        let registry = Arc::new(TokenRegistry {
            refresh_token: Mutex::new(refresh_token.to_string()),
            granted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            last_form: Mutex::new(Vec::new()),
            answer: Mutex::new(None),
            realm: Mutex::new(None),
            address: OnceLock::new(),
        });
        let handler: Handler = {
            let registry = Arc::clone(&registry);
            Arc::new(move |request: &Request| registry.handle(request))
        };
        let address = serve_http(handler).await;
        registry.address.set(address).unwrap();
        registry
    }

    /// Where it listens.
    pub fn address(&self) -> &str {
        self.address.get().unwrap()
    }

    fn handle(&self, request: &Request) -> Response {
        if request.path.starts_with("/token") {
            return self.token(request);
        }
        let wanted = format!("Bearer {ACCESS_TOKEN}");
        if header(&request.head, "authorization") != Some(wanted.as_str()) {
            let realm = self
                .realm
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| format!("http://{}/token", self.address()));
            let challenge = format!(
                r#"Bearer realm="{realm}",service="{SERVICE}",scope="repository:private/tiny:pull""#
            );
            return (401, vec![("WWW-Authenticate", challenge)], vec![]);
        }
        fake_registry::tiny_response(&request.path)
    }

    /// The realm: only a refresh-token grant with every field right.
    fn token(&self, request: &Request) -> Response {
        let form = form_fields(&request.body);
        *self.last_form.lock().unwrap() = form.clone();
        if let Some(answer) = self.answer.lock().unwrap().clone() {
            return answer;
        }
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let refresh = self.refresh_token.lock().unwrap().clone();
        let right = request.method == "POST"
            && field("grant_type") == Some("refresh_token")
            && field("refresh_token") == Some(refresh.as_str())
            && field("service") == Some(SERVICE)
            && field("scope") == Some("repository:private/tiny:pull")
            && field("client_id") == Some("cri-server");
        if !right {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return (401, vec![], br#"{"error":"invalid_grant"}"#.to_vec());
        }
        self.granted.fetch_add(1, Ordering::SeqCst);
        let body = format!(r#"{{"access_token":"{ACCESS_TOKEN}","expires_in":300}}"#);
        (200, vec![], body.into_bytes())
    }
}

/// `application/x-www-form-urlencoded` fields, decoded.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let query = String::from_utf8_lossy(body);
    let url = Url::parse(&format!("http://form/?{query}")).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A test certificate authority, a server certificate it signed for
/// 127.0.0.1, and a client certificate it signed.
pub struct Pki {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    pub client_pem: String,
    pub client_key_pem: String,
    ca_der: rustls_pki_types::CertificateDer<'static>,
}

/// Where [`Pki::write`] put the files a registry entry names.
pub struct PkiFiles {
    pub ca: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

impl Pki {
    /// A fresh CA and its certificates.
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cri-server test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = leaf(
            vec!["127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key_pem) = leaf(
            vec!["client.test".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            ca_pem: ca.pem(),
            server_pem,
            server_key_pem,
            client_pem,
            client_key_pem,
            ca_der: ca.der().clone(),
        }
    }

    /// Writes the CA and the client certificate and key under `dir`.
    pub fn write(&self, dir: &std::path::Path) -> PkiFiles {
        let files = PkiFiles {
            ca: dir.join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        };
        std::fs::write(&files.ca, &self.ca_pem).unwrap();
        std::fs::write(&files.client_cert, &self.client_pem).unwrap();
        std::fs::write(&files.client_key, &self.client_key_pem).unwrap();
        files
    }

    /// A TLS acceptor with the server certificate; with
    /// `client_certificates`, one that demands a client certificate the CA
    /// signed.
    pub fn acceptor(&self, client_certificates: bool) -> tokio_rustls::TlsAcceptor {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = vec![CertificateDer::from_pem_slice(self.server_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let config = if client_certificates {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = config.with_single_cert(certs, key).unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}
