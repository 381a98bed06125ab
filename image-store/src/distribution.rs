//! A small client for the OCI distribution API (GET manifests and blobs),
//! on `reqwest`, that never reads a body without a cap. The pull uses it
//! through the crate-private `Session`; other crates that fetch from the
//! same registries (the daemon's signature check, in `image-signature`)
//! use [`RegistryClient`], its public face.
//!
//! oci-client's `Client` cannot be used for hostile registries: it reads
//! every manifest whole (`pull_manifest_raw` collects the body before
//! anything can look at its size), and also error bodies and token answers.
//! Here a manifest is read to at most its cap (a `Content-Length` over the
//! cap is refused before the body is read, and an undeclared body is cut
//! as soon as more than the cap arrived), a blob is streamed to the caller
//! (who caps it at its descriptor's size) or read under a cap of the
//! caller's, and error bodies and token answers have small caps of their
//! own.
//!
//! Authentication follows the registry's challenge: a request answered 401
//! with `WWW-Authenticate: Bearer realm=…` gets a pull token from the realm
//! (with the caller's username and password, if any, or by exchanging the
//! caller's identity token: `crate::token`) and is sent again; `Basic`
//! gets the caller's username and password. A bearer token given by the
//! caller is sent from the start. Endpoints with TLS files of their own get
//! a client of their own (`crate::clients`).
//!
//! Every wait on the registry (connecting and response headers, each piece
//! of a body) runs under the pull's progress watch, which fails the pull
//! with a stall when too little arrives for a whole
//! [`PullOptions::stall_timeout`]; the per-read timeout is derived from
//! that window.

use crate::auth::RegistryAuth;
use crate::digest::Digest;
use crate::options::PullOptions;
use crate::progress::{Progress, Stall};
use crate::registries::Endpoint;
use crate::token::{self, Challenge, Challenges};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{Client, Response, StatusCode};
use serde::Deserialize;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes of an error answer kept for the message.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// The largest token answer read (tokens are a few KiB).
const MAX_TOKEN_BODY: u64 = 1 << 20;

/// A failure talking to one endpoint: what [`RegistryClient`] (and the
/// pull) reports. [`FetchError::TooLarge`] is the one that says "over the
/// limit"; [`FetchError::is_not_found`] tells "no such manifest or blob"
/// from the rest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connecting, sending or receiving failed (the message carries
    /// reqwest's causes: a refused connection, a certificate not trusted).
    #[error("{url}: {}", crate::tls::chain(source))]
    Transport {
        /// The request.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused our credentials (or wanted some).
    #[error("{url}: Not authorized")]
    Unauthorized {
        /// The request.
        url: String,
    },
    /// Any other status than 200.
    #[error("{url}: status {status}: {message}")]
    Status {
        /// The request.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's errors, or the start of the body.
        message: String,
        /// The distribution error codes of the answer
        /// (`MANIFEST_UNKNOWN`, …), if it had any.
        codes: Vec<String>,
    },
    /// The token realm did not give a usable token (or was not asked:
    /// a realm we will not send credentials to).
    #[error("token from {realm}: {why}")]
    Token {
        /// The realm.
        realm: String,
        /// What went wrong.
        why: TokenFault,
    },
    /// A body went past its cap: either its `Content-Length` said so
    /// (`declared`, and nothing of it was read) or more than `limit` bytes
    /// arrived (and reading stopped there). Never more than `limit` bytes
    /// of it were held.
    #[error("{url}: {}", over_limit(*.declared, *.limit))]
    TooLarge {
        /// The request.
        url: String,
        /// The cap.
        limit: u64,
        /// The size the answer declared, if it declared one over the cap.
        declared: Option<u64>,
    },
    /// The fetch as a whole made too little progress (fewer than
    /// [`crate::MIN_PROGRESS_BYTES`] in a whole stall window, and no
    /// request completed); it ends here, on every endpoint.
    #[error("{object}: stalled ({bytes} bytes in the last {window:?})")]
    Stalled {
        /// The URL being fetched when the window ran out.
        object: String,
        /// Bytes received in the last window.
        bytes: u64,
        /// The window: [`PullOptions::stall_timeout`].
        window: Duration,
    },
    /// The manifest reference given is neither a tag nor a digest.
    #[error("{reference:?} is neither a tag nor a digest")]
    BadReference {
        /// The reference given.
        reference: String,
    },
}

/// "N bytes, more than L" when the size is known, else "more than L bytes".
fn over_limit(declared: Option<u64>, limit: u64) -> String {
    match declared {
        Some(size) => format!("{size} bytes, more than {limit}"),
        None => format!("more than {limit} bytes"),
    }
}

impl FetchError {
    /// Whether the registry said the manifest or blob (or its repository)
    /// does not exist, as distribution says it: a 404, or an error code
    /// `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `NAME_UNKNOWN` or `NOT_FOUND`
    /// with any status.
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::distribution::FetchError;
    /// let missing = FetchError::Status {
    ///     url: "http://127.0.0.1:5000/v2/app/manifests/v1".into(),
    ///     status: 404,
    ///     message: "MANIFEST_UNKNOWN: manifest unknown".into(),
    ///     codes: vec!["MANIFEST_UNKNOWN".into()],
    /// };
    /// assert!(missing.is_not_found());
    /// ```
    pub fn is_not_found(&self) -> bool {
        const CODES: [&str; 4] = [
            "MANIFEST_UNKNOWN",
            "BLOB_UNKNOWN",
            "NAME_UNKNOWN",
            "NOT_FOUND",
        ];
        match self {
            FetchError::Status { status, codes, .. } => {
                *status == 404 || codes.iter().any(|c| CODES.contains(&c.as_str()))
            }
            _ => false,
        }
    }

    /// Whether this is the registry refusing access: a 401 after our
    /// credentials (or without any), or no usable token from its realm.
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::distribution::FetchError;
    /// let refused = FetchError::Unauthorized { url: "https://r.example/v2/app/manifests/1".into() };
    /// assert!(refused.is_auth_failure());
    /// ```
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            FetchError::Unauthorized { .. } | FetchError::Token { .. }
        )
    }

    /// The stall this is, for the pull's own error.
    pub(crate) fn stall(&self) -> Option<Stall> {
        match self {
            FetchError::Stalled {
                object,
                bytes,
                window,
            } => Some(Stall {
                object: object.clone(),
                bytes: *bytes,
                window: *window,
            }),
            _ => None,
        }
    }
}

impl From<Stall> for FetchError {
    fn from(stall: Stall) -> Self {
        FetchError::Stalled {
            object: stall.object,
            bytes: stall.bytes,
            window: stall.window,
        }
    }
}

/// Why a token realm gave no usable token. No message holds a secret or
/// the realm's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFault {
    /// The realm is not a URL (with a host).
    #[error("realm is not a URL")]
    BadRealm,
    /// The realm's scheme is neither `http` nor `https`.
    #[error("realm has scheme {0:?}, not http or https")]
    Scheme(String),
    /// The realm is plain `http` but the registry is reached over TLS:
    /// credentials are not sent in clear.
    #[error("realm is plain http for a registry reached over https: credentials not sent")]
    Cleartext,
    /// The realm refused the credentials (401 or 403).
    #[error("credentials refused (status {0})")]
    Refused(u16),
    /// The realm answered another status than 200.
    #[error("status {0}")]
    Status(u16),
    /// The answer is not JSON (where it went wrong).
    #[error("answer is not a token: not JSON of the expected shape ({0})")]
    Json(String),
    /// The answer has neither `access_token` nor `token`.
    #[error("answer has no token")]
    NoToken,
    /// The token cannot be sent in a header.
    #[error("token is not a valid header value")]
    Header,
    /// The answer went past its cap.
    #[error("answer larger than {0} bytes")]
    TooLarge(u64),
}

fn transport(url: &str) -> impl FnOnce(reqwest::Error) -> FetchError + '_ {
    move |source| FetchError::Transport {
        url: url.to_string(),
        source,
    }
}

/// Why a wait on the registry ended without its answer.
pub(crate) enum Cut {
    /// The connection failed (or timed out without the pull stalling).
    Transport(reqwest::Error),
    /// The pull as a whole made too little progress.
    Stalled(Stall),
}

impl Cut {
    fn into_http(self, url: &str) -> FetchError {
        match self {
            Cut::Transport(source) => transport(url)(source),
            Cut::Stalled(stall) => stall.into(),
        }
    }
}

/// One repository on one endpoint, with the credentials of one pull.
pub(crate) struct Session {
    http: Client,
    /// The pull's stall watch, shared by every endpoint it tries.
    progress: Arc<Progress>,
    /// `scheme://host/v2/repository`.
    base: String,
    repository: String,
    /// Whether the endpoint is reached over TLS.
    over_tls: bool,
    auth: RegistryAuth,
    /// The `Authorization` header requests carry once a challenge was met.
    authorization: Mutex<Option<HeaderValue>>,
}

impl Session {
    /// A session for `endpoint` (whose repository the reference was mapped
    /// to), its waits watched by `progress`.
    pub(crate) fn new(
        endpoint: &Endpoint,
        auth: RegistryAuth,
        progress: Arc<Progress>,
    ) -> Result<Self, FetchError> {
        let scheme = if endpoint.insecure { "http" } else { "https" };
        // Docker Hub's API is not served on its name (oci-client does the
        // same).
        let host = match endpoint.host.as_str() {
            "docker.io" => "index.docker.io",
            other => other,
        };
        let base = format!("{scheme}://{host}/v2/{}", endpoint.repository);
        let http = crate::clients::client(endpoint.tls.as_deref(), progress.window())
            .map_err(transport(&base))?;
        let authorization = match &auth {
            RegistryAuth::Bearer(token) => bearer(token),
            _ => None,
        };
        Ok(Self {
            http,
            progress,
            base,
            repository: endpoint.repository.clone(),
            over_tls: !endpoint.insecure,
            auth,
            authorization: Mutex::new(authorization),
        })
    }

    /// The manifest (or index) `reference` (a tag or digest) names, read to
    /// at most `limit` bytes, with the registry's `Docker-Content-Digest`.
    pub(crate) async fn manifest(
        &self,
        reference: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, Option<String>), FetchError> {
        let fetched = self
            .manifest_as(reference, &crate::oci::ACCEPTED, limit)
            .await?;
        Ok((fetched.bytes, fetched.digest))
    }

    /// The manifest `reference` names as one of the media types `accept`,
    /// read to at most `limit` bytes.
    async fn manifest_as(
        &self,
        reference: &str,
        accept: &[&str],
        limit: u64,
    ) -> Result<FetchedManifest, FetchError> {
        let url = format!("{}/manifests/{reference}", self.base);
        let response = self.get(&url, Some(&accept.join(", "))).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (digest, media_type) = (header("Docker-Content-Digest"), header("Content-Type"));
        let bytes = self
            .read_capped(response, limit)
            .await
            .map_err(|e| e.into_http(&url, limit))?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// The answer to a blob request, status checked, body unread: the
    /// caller streams it with [`Session::next_chunk`] under its own cap.
    pub(crate) async fn blob(
        &self,
        digest: &crate::digest::Digest,
    ) -> Result<Response, FetchError> {
        let url = format!("{}/blobs/{digest}", self.base);
        self.get(&url, None).await
    }

    /// `scheme://host/v2/repository`, for messages.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The URL of the blob `digest`, for messages.
    pub(crate) fn blob_url(&self, digest: &crate::digest::Digest) -> String {
        format!("{}/blobs/{digest}", self.base)
    }

    /// Waits on the registry for `wait` under the pull's stall watch. A
    /// read that timed out is the stall it means when the watch agrees (the
    /// per-read timeout is at most the window, so the two fire together).
    async fn wait<T>(&self, wait: impl Future<Output = reqwest::Result<T>>) -> Result<T, Cut> {
        match self.progress.bound(wait).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) if e.is_timeout() && !e.is_connect() => {
                Err(match self.progress.stall_after_timeout() {
                    Some(stall) => Cut::Stalled(stall),
                    None => Cut::Transport(e),
                })
            }
            Ok(Err(e)) => Err(Cut::Transport(e)),
            Err(stall) => Err(Cut::Stalled(stall)),
        }
    }

    /// Passes a 200 through; anything else becomes an error carrying the
    /// registry's message (its body read to at most [`MAX_ERROR_BODY`]).
    async fn check_status(&self, response: Response, url: &str) -> Result<Response, FetchError> {
        let status = response.status();
        if status == StatusCode::OK {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(FetchError::Unauthorized {
                url: url.to_string(),
            });
        }
        let body = match self.read_capped(response, MAX_ERROR_BODY).await {
            Ok(body) => body,
            // A stall ends the pull; any other failure only loses the
            // message.
            Err(Capped::Cut(Cut::Stalled(stall))) => return Err(stall.into()),
            Err(_) => Vec::new(),
        };
        let (message, codes) = error_message(&body);
        Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            message,
            codes,
        })
    }

    /// Reads `response`'s body if it is at most `limit` bytes: a larger
    /// `Content-Length` is refused before reading, and reading stops as soon
    /// as more than `limit` bytes have arrived (the buffer never holds more
    /// than `limit`). The whole body counts as a completed request.
    pub(crate) async fn read_capped(
        &self,
        mut response: Response,
        limit: u64,
    ) -> Result<Vec<u8>, Capped> {
        let declared = response.content_length();
        if declared.is_some_and(|n| n > limit) {
            return Err(Capped::TooLarge { declared });
        }
        // Within the cap, so safe to take at its word: one allocation rather
        // than a doubling buffer's peaks.
        let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = self.wait(response.chunk()).await.map_err(Capped::Cut)? {
            self.progress.received(chunk.len() as u64);
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Capped::TooLarge { declared: None });
            }
            body.extend_from_slice(&chunk);
        }
        self.progress.completed();
        Ok(body)
    }

    /// The next piece of a streamed body, if any; the end of the body
    /// counts as a completed request.
    pub(crate) async fn next_chunk(
        &self,
        response: &mut Response,
        url: &str,
    ) -> Result<Option<bytes::Bytes>, FetchError> {
        let chunk = self
            .wait(response.chunk())
            .await
            .map_err(|cut| cut.into_http(url))?;
        match &chunk {
            Some(chunk) => self.progress.received(chunk.len() as u64),
            None => self.progress.completed(),
        }
        Ok(chunk)
    }

    fn current_authorization(&self) -> Option<HeaderValue> {
        self.authorization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn get(&self, url: &str, accept: Option<&str>) -> Result<Response, FetchError> {
        let mut challenged = false;
        loop {
            let mut request = self.http.get(url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(authorization) = self.current_authorization() {
                request = request.header(AUTHORIZATION, authorization);
            }
            self.progress.fetching(url);
            let response = self
                .wait(request.send())
                .await
                .map_err(|cut| cut.into_http(url))?;
            // One answer to one challenge; a second 401 is final.
            if response.status() == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                if self.answer_challenge(response.headers()).await? {
                    continue;
                }
            }
            return self.check_status(response, url).await;
        }
    }

    /// Sets credentials for the challenge in `headers`; false when there is
    /// nothing (new) to send.
    async fn answer_challenge(&self, headers: &HeaderMap) -> Result<bool, FetchError> {
        let challenges = Challenges::parse(headers);
        let header = match (&self.auth, challenges.bearer) {
            // A token the caller gave is all we have; it was sent already.
            (RegistryAuth::Bearer(_), _) => return Ok(false),
            (_, Some(challenge)) => self.token(&challenge).await?,
            (RegistryAuth::Basic { username, password }, None) if challenges.basic => {
                basic(username, password)
            }
            _ => return Ok(false),
        };
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(header);
        Ok(true)
    }

    /// A pull token for our repository from the realm of `challenge`.
    async fn token(&self, challenge: &Challenge) -> Result<HeaderValue, FetchError> {
        let realm = challenge.realm.as_str();
        let fail = |why| FetchError::Token {
            realm: realm.to_string(),
            why,
        };
        let scope = format!("repository:{}:pull", self.repository);
        let request = token::request(&self.http, challenge, &scope, &self.auth, self.over_tls)
            .map_err(fail)?;
        self.progress.fetching(realm);
        let response = self
            .wait(request.send())
            .await
            .map_err(|cut| cut.into_http(realm))?;
        token::check_status(response.status()).map_err(fail)?;
        let body = self
            .read_capped(response, MAX_TOKEN_BODY)
            .await
            .map_err(|e| match e {
                Capped::Cut(cut) => cut.into_http(realm),
                Capped::TooLarge { .. } => fail(TokenFault::TooLarge(MAX_TOKEN_BODY)),
            })?;
        let token = token::parse_answer(&body).map_err(fail)?;
        bearer(&token).ok_or_else(|| fail(TokenFault::Header))
    }
}

/// A manifest as [`RegistryClient::fetch_manifest`] read it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchedManifest {
    /// The body: never more than the limit asked for.
    pub bytes: Vec<u8>,
    /// The answer's `Content-Type`, if any.
    pub media_type: Option<String>,
    /// The answer's `Docker-Content-Digest`, if any: the registry's claim,
    /// not checked against `bytes`.
    pub digest: Option<String>,
}

/// Bounded reads of one repository on one endpoint, with one set of
/// credentials: the pull's own client, for other crates (the daemon's
/// signature check fetches cosign signature images with it).
///
/// Every body is read under the caller's cap, before it is buffered: a
/// `Content-Length` over the cap is refused without reading the body, and
/// a body without one is cut as soon as more than the cap arrived, so at
/// most `limit` bytes are ever held ([`FetchError::TooLarge`]). Error
/// bodies and token answers are capped too. Credentials follow the
/// registry's challenge (Bearer token realm or Basic) and are kept for the
/// client's later requests (an identity token is exchanged at the realm).
/// Waits are watched as a pull's are: the client fails with
/// [`FetchError::Stalled`] once, for a whole [`PullOptions::stall_timeout`],
/// fewer than [`crate::MIN_PROGRESS_BYTES`] arrived and no request
/// completed; reads and connects time out as the pull's do.
///
/// Nothing fetched is verified: the caller checks digests and contents.
///
/// # Examples
///
/// ```no_run
/// use image_store::distribution::{FetchError, RegistryClient};
/// use image_store::{oci, Endpoint, PullOptions, RegistryAuth};
/// # async fn demo() -> Result<(), FetchError> {
/// let endpoint = Endpoint {
///     host: "127.0.0.1:5000".into(),
///     repository: "signed/good".into(),
///     insecure: true,
///     ..Default::default()
/// };
/// let client = RegistryClient::new(&endpoint, RegistryAuth::Anonymous, &PullOptions::default())?;
/// match client.fetch_manifest("latest", &[oci::OCI_MANIFEST], 4 << 20).await {
///     Ok(manifest) => println!("{} bytes", manifest.bytes.len()),
///     Err(e) if e.is_not_found() => println!("no such tag"),
///     Err(FetchError::TooLarge { limit, .. }) => println!("more than {limit} bytes"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
pub struct RegistryClient {
    session: Session,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the credentials.
        f.debug_struct("RegistryClient")
            .field("base", &self.session.base)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for `endpoint`'s repository, authenticating with `auth`,
    /// its waits watched with `options`' stall timeout (one watch for the
    /// client's whole life: make one client per fetch, as a pull does).
    pub fn new(
        endpoint: &Endpoint,
        auth: RegistryAuth,
        options: &PullOptions,
    ) -> Result<Self, FetchError> {
        let progress = Arc::new(Progress::new(options));
        Ok(Self {
            session: Session::new(endpoint, auth, progress)?,
        })
    }

    /// The manifest `reference` (a tag or a digest) names, as one of the
    /// media types `accept`, read to at most `limit` bytes.
    pub async fn fetch_manifest(
        &self,
        reference: &str,
        accept: &[&str],
        limit: u64,
    ) -> Result<FetchedManifest, FetchError> {
        // It becomes a URL path segment: nothing else than distribution's
        // grammar may get there.
        if !is_tag(reference) && reference.parse::<Digest>().is_err() {
            return Err(FetchError::BadReference {
                reference: reference.to_string(),
            });
        }
        self.session.manifest_as(reference, accept, limit).await
    }

    /// The blob `digest`, read to at most `limit` bytes; not checked
    /// against `digest` (the caller does, if it cares).
    pub async fn fetch_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, FetchError> {
        let url = self.session.blob_url(digest);
        let response = self.session.blob(digest).await?;
        self.session
            .read_capped(response, limit)
            .await
            .map_err(|e| e.into_http(&url, limit))
    }
}

/// Whether `s` is a tag in distribution's grammar: `[A-Za-z0-9_]` then up
/// to 127 of `[A-Za-z0-9_.-]`.
fn is_tag(s: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match s.as_bytes() {
        [first, rest @ ..] => {
            word(*first)
                && rest.len() < 128
                && rest.iter().all(|&c| word(c) || c == b'.' || c == b'-')
        }
        [] => false,
    }
}

/// An `Authorization: Bearer` value, kept out of debug output.
fn bearer(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn basic(user: &str, password: &str) -> HeaderValue {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// The distribution API's `{"errors": [{"code", "message"}]}` summarised,
/// with its codes; or the start of the body and no codes.
fn error_message(body: &[u8]) -> (String, Vec<String>) {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
        let entries: Vec<String> = envelope
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect();
        let codes = envelope.errors.into_iter().map(|e| e.code).collect();
        return (entries.join("; "), codes);
    }
    let start = String::from_utf8_lossy(body).chars().take(200).collect();
    (start, Vec::new())
}

/// Why a capped read stopped.
pub(crate) enum Capped {
    /// The connection failed, or the pull stalled.
    Cut(Cut),
    /// The body is larger than the cap: it declared so (`declared`, nothing
    /// read), or more than the cap arrived (`None`).
    TooLarge { declared: Option<u64> },
}

impl Capped {
    fn into_http(self, url: &str, limit: u64) -> FetchError {
        match self {
            Capped::Cut(cut) => cut.into_http(url),
            Capped::TooLarge { declared } => FetchError::TooLarge {
                url: url.to_string(),
                limit,
                declared,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_are_summarised() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        let (message, codes) = error_message(body);
        assert_eq!(message, "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(codes, ["MANIFEST_UNKNOWN"]);
        let (message, codes) = error_message(&[b'x'; 1000]);
        assert_eq!((message.len(), codes.len()), (200, 0));
    }

    #[test]
    fn only_tags_and_digests_are_references() {
        for tag in ["latest", "sha256-ab.sig", "_x", "v1.2-3", &"a".repeat(128)] {
            assert!(is_tag(tag), "{tag}");
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "../x",
            "a?b",
            "a b",
            &"a".repeat(129),
        ] {
            assert!(!is_tag(bad), "{bad}");
        }
    }

    #[test]
    fn over_the_limit_says_the_size_when_it_is_known() {
        let declared = FetchError::TooLarge {
            url: "u".into(),
            limit: 4,
            declared: Some(8),
        };
        assert_eq!(declared.to_string(), "u: 8 bytes, more than 4");
        let cut = FetchError::TooLarge {
            url: "u".into(),
            limit: 4,
            declared: None,
        };
        assert_eq!(cut.to_string(), "u: more than 4 bytes");
    }

    #[test]
    fn basic_credentials_are_encoded() {
        assert_eq!(basic("me", "s3cret"), "Basic bWU6czNjcmV0");
    }
}
