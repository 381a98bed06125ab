//! Pull tokens from a registry's token realm, as the distribution token
//! spec has them: the `WWW-Authenticate` challenges read, the request to
//! the realm made, its answer read.
//!
//! - Basic credentials, or none: `GET realm?scope=…&service=…`, with
//!   `Authorization: Basic` when there are credentials.
//! - An identity token (an OAuth2 refresh token, docker's
//!   `identitytoken`): `POST realm` with the form
//!   `grant_type=refresh_token&refresh_token=…&service=…&scope=…&client_id=cri-server`.
//!
//! The answer (read by the caller under a cap) is `{"access_token": …}`
//! or `{"token": …}`; `access_token` wins when both are there, as in
//! docker's client. A realm must be an `http` or `https` URL, and
//! credentials go to a plain `http` realm only from an endpoint that is
//! itself reached over plain HTTP (configured `insecure`): a TLS registry
//! cannot send them out in clear.

use crate::auth::RegistryAuth;
use crate::distribution::TokenFault;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::Deserialize;

/// The `client_id` sent with a refresh-token grant.
const CLIENT_ID: &str = "cri-server";

/// A `Bearer` challenge: where to get a token, and for which service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The realm: the token server's URL.
    pub realm: String,
    /// The service the token is for, if the registry said.
    pub service: Option<String>,
}

/// What a 401 answer's `WWW-Authenticate` headers ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Challenges {
    /// The first `Bearer` challenge with a realm.
    pub bearer: Option<Challenge>,
    /// Whether `Basic` is among them.
    pub basic: bool,
}

impl Challenges {
    /// The challenges of `headers`; unparsable ones are skipped.
    pub(crate) fn parse(headers: &HeaderMap) -> Challenges {
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
            .find_map(|c| {
                Some(Challenge {
                    realm: param(c, "realm")?,
                    service: param(c, "service"),
                })
            });
        let basic = challenges
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("Basic"));
        Challenges { bearer, basic }
    }
}

/// The request for a pull token for `scope` answering `challenge`, with
/// `auth`; `tls_endpoint` says whether the registry was reached over TLS
/// (then credentials never go to a plain-HTTP realm).
pub(crate) fn request(
    http: &Client,
    challenge: &Challenge,
    scope: &str,
    auth: &RegistryAuth,
    tls_endpoint: bool,
) -> Result<RequestBuilder, TokenFault> {
    let url = realm_url(&challenge.realm)?;
    if tls_endpoint && url.scheme() == "http" && !auth.is_anonymous() {
        return Err(TokenFault::Cleartext);
    }
    let service = challenge.service.as_deref();
    Ok(match auth {
        RegistryAuth::IdentityToken(token) => {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ];
            form.extend(service.map(|s| ("service", s)));
            form.extend([("scope", scope), ("client_id", CLIENT_ID)]);
            http.post(url).form(&form)
        }
        RegistryAuth::Basic { username, password } => http
            .get(with_query(url, scope, service))
            .basic_auth(username, Some(password)),
        RegistryAuth::Anonymous | RegistryAuth::Bearer(_) => {
            http.get(with_query(url, scope, service))
        }
    })
}

/// `realm` as a URL credentials may be sent to: `http` or `https` with a
/// host; anything else (`file:`, `ftp:`, a relative path) is refused.
pub(crate) fn realm_url(realm: &str) -> Result<Url, TokenFault> {
    let url = Url::parse(realm).map_err(|_| TokenFault::BadRealm)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TokenFault::Scheme(url.scheme().to_string()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TokenFault::BadRealm);
    }
    Ok(url)
}

fn with_query(mut url: Url, scope: &str, service: Option<&str>) -> Url {
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("scope", scope);
        if let Some(service) = service {
            query.append_pair("service", service);
        }
    }
    url
}

/// Passes a 200; a 401 or 403 says the realm refused the credentials.
pub(crate) fn check_status(status: StatusCode) -> Result<(), TokenFault> {
    match status {
        StatusCode::OK => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(TokenFault::Refused(status.as_u16()))
        }
        other => Err(TokenFault::Status(other.as_u16())),
    }
}

/// The token in a realm's answer: `access_token`, else `token`.
pub(crate) fn parse_answer(body: &[u8]) -> Result<String, TokenFault> {
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        // Where, not what: the answer is not ours to log.
        TokenFault::Json(format!("line {}, column {}", e.line(), e.column()))
    })?;
    [answer.access_token, answer.token]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty())
        .ok_or(TokenFault::NoToken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn challenges(values: &[&str]) -> Challenges {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        Challenges::parse(&headers)
    }

    #[test]
    fn bearer_and_basic_challenges_are_read() {
        let read = challenges(&[
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
            r#"Basic realm="x""#,
        ]);
        assert_eq!(
            read.bearer,
            Some(Challenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            })
        );
        assert!(read.basic);
        assert_eq!(challenges(&["Bearer service=\"x\""]).bearer, None);
        assert_eq!(challenges(&["garbage ,,, ==="]), Challenges::default());
    }

    #[test]
    fn only_http_and_https_realms_are_asked() {
        assert!(realm_url("https://auth.example/token").is_ok());
        assert!(realm_url("http://127.0.0.1:5001/token").is_ok());
        for (realm, fault) in [
            ("file:///etc/shadow", "scheme \"file\""),
            ("ftp://auth.example/token", "scheme \"ftp\""),
            ("unix:/run/docker.sock", "scheme \"unix\""),
            ("/token", "realm is not a URL"),
            ("", "realm is not a URL"),
        ] {
            let err = realm_url(realm).unwrap_err().to_string();
            assert!(err.contains(fault), "{realm}: {err}");
        }
    }

    #[test]
    fn credentials_never_go_to_a_plain_http_realm_of_a_tls_registry() {
        let http = Client::new();
        let challenge = Challenge {
            realm: "http://auth.example/token".into(),
            service: None,
        };
        let token = RegistryAuth::IdentityToken("t".into());
        let scope = "repository:a:pull";
        assert!(matches!(
            request(&http, &challenge, scope, &token, true),
            Err(TokenFault::Cleartext)
        ));
        assert!(request(&http, &challenge, scope, &token, false).is_ok());
        assert!(request(&http, &challenge, scope, &RegistryAuth::Anonymous, true).is_ok());
    }

    #[test]
    fn an_identity_token_is_posted_as_a_refresh_token_grant() {
        let http = Client::new();
        let challenge = Challenge {
            realm: "https://auth.example/token".into(),
            service: Some("registry.example".into()),
        };
        let auth = RegistryAuth::IdentityToken("refresh me".into());
        let built = request(&http, &challenge, "repository:team/app:pull", &auth, true)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(built.method(), reqwest::Method::POST);
        assert_eq!(built.url().as_str(), "https://auth.example/token");
        let body = built.body().and_then(|b| b.as_bytes()).unwrap();
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            "grant_type=refresh_token&refresh_token=refresh+me&service=registry.example\
             &scope=repository%3Ateam%2Fapp%3Apull&client_id=cri-server"
        );
    }

    #[test]
    fn basic_credentials_get_a_token_by_get() {
        let http = Client::new();
        let challenge = Challenge {
            realm: "https://auth.example/token?x=1".into(),
            service: None,
        };
        let auth = RegistryAuth::Basic {
            username: "me".into(),
            password: "pw".into(),
        };
        let built = request(&http, &challenge, "repository:a:pull", &auth, true)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(built.method(), reqwest::Method::GET);
        assert_eq!(
            built.url().as_str(),
            "https://auth.example/token?x=1&scope=repository%3Aa%3Apull"
        );
        assert!(built.headers().contains_key(reqwest::header::AUTHORIZATION));
    }

    #[test]
    fn answers_give_their_token_or_say_why_not() {
        assert_eq!(parse_answer(br#"{"token":"a"}"#).unwrap(), "a");
        assert_eq!(
            parse_answer(br#"{"token":"a","access_token":"b"}"#).unwrap(),
            "b"
        );
        assert_eq!(
            parse_answer(br#"{"token":"a","access_token":""}"#).unwrap(),
            "a"
        );
        assert!(matches!(parse_answer(b"{}"), Err(TokenFault::NoToken)));
        let err = parse_answer(br#""s3cret""#).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(matches!(parse_answer(b"<html>"), Err(TokenFault::Json(_))));
    }

    #[test]
    fn refusals_are_told_from_other_statuses() {
        assert!(check_status(StatusCode::OK).is_ok());
        assert!(matches!(
            check_status(StatusCode::UNAUTHORIZED),
            Err(TokenFault::Refused(401))
        ));
        assert!(matches!(
            check_status(StatusCode::FORBIDDEN),
            Err(TokenFault::Refused(403))
        ));
        assert!(matches!(
            check_status(StatusCode::BAD_GATEWAY),
            Err(TokenFault::Status(502))
        ));
    }
}
