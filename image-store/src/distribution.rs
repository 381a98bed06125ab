//! A small client for the OCI distribution API (GET manifests and blobs),
//! on `reqwest`, that never reads a body without a cap.
//!
//! oci-client's `Client` cannot be used for hostile registries: it reads
//! every manifest whole (`pull_manifest_raw` collects the body before
//! anything can look at its size), and also error bodies and token answers.
//! Here a manifest is read to at most its cap plus one byte, a blob is
//! streamed to the caller (who caps it at its descriptor's size), and error
//! bodies and token answers have small caps of their own.
//!
//! Authentication follows the registry's challenge: a request answered 401
//! with `WWW-Authenticate: Bearer realm=…` gets a pull token from the realm
//! (with the caller's username and password, if any) and is sent again;
//! `Basic` gets the caller's username and password. A bearer token given by
//! the caller is sent from the start.
//!
//! Every wait on the registry (connecting and response headers, each piece
//! of a body) runs under the pull's [`Progress`] watch, which fails the pull
//! with a stall when too little arrives for a whole window; the per-read
//! timeout is derived from that window.

use crate::progress::{self, Progress, Stall};
use crate::registries::Endpoint;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Client, Response, StatusCode, Url};
use serde::Deserialize;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Bytes of an error answer kept for the message.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// The largest token answer read (tokens are a few KiB).
const MAX_TOKEN_BODY: u64 = 1 << 20;

/// A failure talking to one endpoint.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// Connecting, sending or receiving failed.
    #[error("{url}: {source}")]
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
    },
    /// The token realm did not give a usable token.
    #[error("token from {realm}: {why}")]
    Token {
        /// The realm.
        realm: String,
        /// What went wrong.
        why: TokenFault,
    },
    /// A body went past its cap; nothing past `limit + 1` bytes was read.
    #[error("{url}: more than {limit} bytes")]
    TooLarge {
        /// The request.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// The pull as a whole made too little progress; it ends here, on
    /// every endpoint.
    #[error("{}: stalled ({} bytes in the last {:?})", .0.object, .0.bytes, .0.window)]
    Stalled(Stall),
}

/// Why a token realm's answer is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenFault {
    /// The realm is not a URL.
    #[error("realm is not a URL")]
    BadRealm,
    /// The realm answered another status than 200.
    #[error("status {0}")]
    Status(u16),
    /// The answer is not `{"token": …}` or `{"access_token": …}`.
    #[error("answer is not a token: {0}")]
    Json(#[source] serde_json::Error),
    /// The token cannot be sent in a header.
    #[error("token is not a valid header value")]
    Header,
    /// The answer went past its cap.
    #[error("answer larger than {0} bytes")]
    TooLarge(u64),
}

fn transport(url: &str) -> impl FnOnce(reqwest::Error) -> HttpError + '_ {
    move |source| HttpError::Transport {
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
    fn into_http(self, url: &str) -> HttpError {
        match self {
            Cut::Transport(source) => transport(url)(source),
            Cut::Stalled(stall) => HttpError::Stalled(stall),
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
    ) -> Result<Self, HttpError> {
        let scheme = if endpoint.insecure { "http" } else { "https" };
        // Docker Hub's API is not served on its name (oci-client does the
        // same).
        let host = match endpoint.host.as_str() {
            "docker.io" => "index.docker.io",
            other => other,
        };
        let base = format!("{scheme}://{host}/v2/{}", endpoint.repository);
        let window = progress.window();
        let http = Client::builder()
            .connect_timeout(progress::connect_timeout(window))
            .read_timeout(progress::read_timeout(window))
            .user_agent(concat!(
                "cri-server-image-store/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
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
    ) -> Result<(Vec<u8>, Option<String>), HttpError> {
        let url = format!("{}/manifests/{reference}", self.base);
        let accept = crate::oci::ACCEPTED.join(", ");
        let response = self.get(&url, Some(&accept)).await?;
        let header = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = self
            .read_capped(response, limit)
            .await
            .map_err(|e| e.into_http(&url, limit))?;
        Ok((body, header))
    }

    /// The answer to a blob request, status checked, body unread: the
    /// caller streams it with [`Session::next_chunk`] under its own cap.
    pub(crate) async fn blob(&self, digest: &crate::digest::Digest) -> Result<Response, HttpError> {
        let url = format!("{}/blobs/{digest}", self.base);
        self.get(&url, None).await
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
    async fn check_status(&self, response: Response, url: &str) -> Result<Response, HttpError> {
        let status = response.status();
        if status == StatusCode::OK {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(HttpError::Unauthorized {
                url: url.to_string(),
            });
        }
        let body = match self.read_capped(response, MAX_ERROR_BODY).await {
            Ok(body) => body,
            // A stall ends the pull; any other failure only loses the
            // message.
            Err(Capped::Cut(Cut::Stalled(stall))) => return Err(HttpError::Stalled(stall)),
            Err(_) => Vec::new(),
        };
        Err(HttpError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            message: error_message(&body),
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
            return Err(Capped::TooLarge);
        }
        // Within the cap, so safe to take at its word: one allocation rather
        // than a doubling buffer's peaks.
        let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = self.wait(response.chunk()).await.map_err(Capped::Cut)? {
            self.progress.received(chunk.len() as u64);
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Capped::TooLarge);
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
    ) -> Result<Option<bytes::Bytes>, HttpError> {
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

    async fn get(&self, url: &str, accept: Option<&str>) -> Result<Response, HttpError> {
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
    async fn answer_challenge(&self, headers: &HeaderMap) -> Result<bool, HttpError> {
        let challenges = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| http_auth::parse_challenges(v).ok())
            .flatten()
            .collect::<Vec<_>>();
        let param = |c: &http_auth::ChallengeRef<'_>, name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        let bearer = challenges
            .iter()
            .filter(|c| c.scheme.eq_ignore_ascii_case("Bearer"))
            .find_map(|c| Some((param(c, "realm")?, param(c, "service"))));
        let header = match (&self.auth, bearer) {
            // A token the caller gave is all we have; it was sent already.
            (RegistryAuth::Bearer(_), _) => return Ok(false),
            (_, Some((realm, service))) => self.token(&realm, service.as_deref()).await?,
            (RegistryAuth::Basic(user, password), None)
                if challenges
                    .iter()
                    .any(|c| c.scheme.eq_ignore_ascii_case("Basic")) =>
            {
                basic(user, password)
            }
            _ => return Ok(false),
        };
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(header);
        Ok(true)
    }

    /// A pull token for our repository from `realm`.
    async fn token(&self, realm: &str, service: Option<&str>) -> Result<HeaderValue, HttpError> {
        let fail = |why| HttpError::Token {
            realm: realm.to_string(),
            why,
        };
        let scope = format!("repository:{}:pull", self.repository);
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let url = Url::parse_with_params(realm, &query).map_err(|_| fail(TokenFault::BadRealm))?;
        let mut request = self.http.get(url);
        if let RegistryAuth::Basic(user, password) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        self.progress.fetching(realm);
        let response = self
            .wait(request.send())
            .await
            .map_err(|cut| cut.into_http(realm))?;
        if response.status() != StatusCode::OK {
            return Err(fail(TokenFault::Status(response.status().as_u16())));
        }
        let body = self
            .read_capped(response, MAX_TOKEN_BODY)
            .await
            .map_err(|e| match e {
                Capped::Cut(cut) => cut.into_http(realm),
                Capped::TooLarge => fail(TokenFault::TooLarge(MAX_TOKEN_BODY)),
            })?;
        #[derive(Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|e| fail(TokenFault::Json(e)))?;
        let token = answer.token.or(answer.access_token).unwrap_or_default();
        bearer(&token).ok_or_else(|| fail(TokenFault::Header))
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

/// The distribution API's `{"errors": [{"code", "message"}]}`, or the
/// start of the body.
fn error_message(body: &[u8]) -> String {
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
        return entries.join("; ");
    }
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// Why a capped read stopped.
pub(crate) enum Capped {
    /// The connection failed, or the pull stalled.
    Cut(Cut),
    /// More than the cap arrived.
    TooLarge,
}

impl Capped {
    fn into_http(self, url: &str, limit: u64) -> HttpError {
        match self {
            Capped::Cut(cut) => cut.into_http(url),
            Capped::TooLarge => HttpError::TooLarge {
                url: url.to_string(),
                limit,
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
        assert_eq!(error_message(body), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(error_message(&[b'x'; 1000]).len(), 200);
    }

    #[test]
    fn basic_credentials_are_encoded() {
        assert_eq!(basic("me", "s3cret"), "Basic bWU6czNjcmV0");
    }
}
