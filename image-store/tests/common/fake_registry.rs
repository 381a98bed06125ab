//! A tiny HTTP/1.1 server on loopback standing in for a registry that
//! misbehaves in ways the real one cannot be made to (wrong bytes, 401s,
//! answers dripped or never sent), or that counts requests.

use image_store::blob_store::sha256_digest;
use image_store::{Registries, RegistriesConfig, RegistryConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake registry answers: status, headers, body.
pub type Response = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A route that sees the request's path and its whole head (headers).
pub type Route = Arc<dyn Fn(&str, &str) -> Response + Send + Sync>;

/// The value of header `name` in a request head, if present.
pub fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A one-shot-per-connection HTTP server answering from `route`; with
/// `required_auth`, requests without exactly that `Authorization` header get
/// a 401 with a Basic challenge instead.
pub async fn serve(route: fn(&str) -> Response, required_auth: Option<&'static str>) -> String {
    serve_route(Arc::new(move |path, _| route(path)), required_auth).await
}

/// [`serve`] for a route that captures state or reads headers.
pub async fn serve_route(route: Route, required_auth: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let route = Arc::clone(&route);
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                // Slow enough that concurrent pulls overlap.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let authorized = required_auth
                    .is_none_or(|wanted| header(&request, "authorization") == Some(wanted));
                let (status, headers, body) = if authorized {
                    route(&path, &request)
                } else {
                    (
                        401,
                        vec![("WWW-Authenticate", "Basic realm=\"fake\"".to_string())],
                        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                            .to_vec(),
                    )
                };
                let mut response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str("\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    address
}

/// How a paced route's answer goes out.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Headers and body at once.
    Whole,
    /// Headers, then `bytes` of the body every `every`.
    Drip { bytes: usize, every: Duration },
    /// Headers, then nothing: the body never comes.
    HeadersOnly,
    /// Not a byte: the request is read and the connection kept open.
    Silent,
}

/// A route that also says how its answer goes out.
pub type PacedRoute = Arc<dyn Fn(&str) -> (Response, Pace) + Send + Sync>;

/// A one-shot-per-connection HTTP server answering from `route`, each
/// answer paced as the route says (and without [`serve_route`]'s delay).
pub async fn serve_paced(route: PacedRoute) -> String {
    serve_gauged(route, Arc::new(Gauge::default())).await
}

/// Blob requests being answered now, and the most at once: a request
/// counts from its arrival until its answer is written (or the client
/// hangs up).
#[derive(Default, Debug)]
pub struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    /// The most blob requests answered at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Blob requests being answered now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
}

/// One blob request being answered.
struct Gauged(Arc<Gauge>);

impl Gauged {
    fn start(gauge: &Arc<Gauge>) -> Self {
        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.peak.fetch_max(now, Ordering::SeqCst);
        Self(Arc::clone(gauge))
    }
}

impl Drop for Gauged {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// [`serve_paced`], with the blob requests in progress counted in `gauge`.
pub async fn serve_gauged(route: PacedRoute, gauge: Arc<Gauge>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (route, gauge) = (Arc::clone(&route), Arc::clone(&gauge));
            tokio::spawn(async move { answer_paced(socket, route, gauge).await });
        }
    });
    address
}

async fn answer_paced(mut socket: TcpStream, route: PacedRoute, gauge: Arc<Gauge>) {
    let mut buf = vec![0; 8192];
    let n = socket.read(&mut buf).await.unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]).to_string();
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let _counted = path.contains("/blobs/").then(|| Gauged::start(&gauge));
    let ((status, headers, body), pace) = route(&path);
    if let Pace::Silent = pace {
        return hold(socket).await;
    }
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    match pace {
        Pace::Whole => {
            let _ = socket.write_all(&body).await;
        }
        Pace::Drip { bytes, every } => {
            for piece in body.chunks(bytes.max(1)) {
                tokio::time::sleep(every).await;
                if socket.write_all(piece).await.is_err() {
                    return;
                }
            }
        }
        Pace::HeadersOnly | Pace::Silent => hold(socket).await,
    }
}

/// Keeps a connection open without a word until the client hangs up.
async fn hold(mut socket: TcpStream) {
    let mut byte = [0; 1];
    let _ = socket.read(&mut byte).await;
}

/// A registry configuration reaching `address` over plain HTTP.
pub fn insecure(address: &str) -> Registries {
    RegistriesConfig {
        registries: vec![RegistryConfig {
            prefix: address.into(),
            insecure: true,
            ..Default::default()
        }],
    }
    .load()
    .unwrap()
}

/// Manifest requests [`tiny_registry`] answered.
pub static MANIFEST_GETS: AtomicUsize = AtomicUsize::new(0);
/// Blob requests [`tiny_registry`] answered.
pub static BLOB_GETS: AtomicUsize = AtomicUsize::new(0);

/// A one-layer image: its manifest, config and layer ([`tiny`]'s holds a
/// file `hi`).
pub struct Tiny {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
}

/// The tiny image, built once.
pub fn tiny() -> &'static Tiny {
    static TINY: OnceLock<Tiny> = OnceLock::new();
    TINY.get_or_init(|| one_file_image("hi", b"hi\n"))
}

/// A one-layer image whose (uncompressed) layer holds one file.
pub fn one_file_image(name: &str, contents: &[u8]) -> Tiny {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(contents.len() as u64);
    b.append_data(&mut h, name, contents).unwrap();
    image_of(b.into_inner().unwrap())
}

/// A one-layer image around an uncompressed `layer`.
fn image_of(layer: Vec<u8>) -> Tiny {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256_digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    Tiny {
        manifest,
        config,
        layer,
    }
}

/// Serves [`tiny`] under any repository and tag, counting requests.
pub fn tiny_registry(path: &str) -> Response {
    if path.contains("/manifests/") {
        MANIFEST_GETS.fetch_add(1, Ordering::SeqCst);
    } else if path != "/v2/" {
        BLOB_GETS.fetch_add(1, Ordering::SeqCst);
    }
    tiny_response(path)
}

/// Serves [`tiny`] under any repository and tag.
pub fn tiny_response(path: &str) -> Response {
    image_response(tiny(), path)
}

/// Serves `t` under any repository and tag.
pub fn image_response(t: &Tiny, path: &str) -> Response {
    if path == "/v2/" {
        return (200, vec![], vec![]);
    }
    if path.contains("/manifests/") {
        return (
            200,
            vec![(
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            t.manifest.clone(),
        );
    }
    if path.ends_with(&sha256_digest(&t.config)) {
        (200, vec![], t.config.clone())
    } else if path.ends_with(&sha256_digest(&t.layer)) {
        (200, vec![], t.layer.clone())
    } else {
        (404, vec![], vec![])
    }
}
