//! [`RegistryAuth`]: how requests to one registry endpoint authenticate,
//! whoever supplied the secret (CRI's `AuthConfig`, the node's auth file).
//!
//! Secrets never reach a log or an error: the type's `Debug` redacts them,
//! and nothing in this crate formats them otherwise.

use base64::Engine;

/// How requests to one registry endpoint authenticate.
///
/// What a registry's 401 challenge gets depends on the form: with
/// `Bearer realm=…` the realm is asked for a pull token (with the basic
/// credentials, or by exchanging the identity token); with `Basic`, the
/// basic credentials are sent. A [`RegistryAuth::Bearer`] token is sent
/// from the first request on and never exchanged.
///
/// # Examples
///
/// ```
/// use image_store::RegistryAuth;
/// let auth = RegistryAuth::IdentityToken("refresh-me".into());
/// assert_eq!(format!("{auth:?}"), "IdentityToken(<redacted>)");
/// let basic = RegistryAuth::Basic { username: "me".into(), password: "s3cret".into() };
/// assert!(!format!("{basic:?}").contains("s3cret"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials: only a pull token the realm hands anyone.
    #[default]
    Anonymous,
    /// A user name and password (or a `user:password` `auth` field).
    Basic {
        /// The user name, which may appear in logs.
        username: String,
        /// The password, which never does.
        password: String,
    },
    /// A registry token, sent as `Authorization: Bearer` as it is.
    Bearer(String),
    /// An identity token: an OAuth2 refresh token exchanged at the
    /// registry's token realm (`grant_type=refresh_token`) for a pull token.
    IdentityToken(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const REDACTED: &str = "<redacted>";
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &format_args!("{REDACTED}"))
                .finish(),
            RegistryAuth::Bearer(_) => write!(f, "Bearer({REDACTED})"),
            RegistryAuth::IdentityToken(_) => write!(f, "IdentityToken({REDACTED})"),
        }
    }
}

impl RegistryAuth {
    /// Whether there are no credentials at all.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, RegistryAuth::Anonymous)
    }

    /// Basic credentials from an `auth` field, `base64(user:password)` as
    /// in docker's `config.json` and CRI's `AuthConfig`.
    ///
    /// # Examples
    ///
    /// ```
    /// use image_store::RegistryAuth;
    /// let auth = RegistryAuth::from_auth_field("bWU6czNjcmV0")?;
    /// assert_eq!(auth, RegistryAuth::Basic { username: "me".into(), password: "s3cret".into() });
    /// assert!(RegistryAuth::from_auth_field("%%%").is_err());
    /// # Ok::<(), image_store::BadAuth>(())
    /// ```
    pub fn from_auth_field(field: &str) -> Result<RegistryAuth, BadAuth> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(field.trim())
            .map_err(|_| BadAuth::NotBase64)?;
        let decoded = String::from_utf8(decoded).map_err(|_| BadAuth::NotUtf8)?;
        let (username, password) = decoded.split_once(':').ok_or(BadAuth::NoColon)?;
        Ok(RegistryAuth::Basic {
            username: username.into(),
            password: password.into(),
        })
    }
}

/// Why an `auth` field cannot be decoded. The messages never quote the
/// field: it is a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadAuth {
    /// Not base64.
    #[error("auth field is not base64")]
    NotBase64,
    /// Decodes to something that is not UTF-8.
    #[error("auth field is not UTF-8")]
    NotUtf8,
    /// Decodes to text without the `:` between user and password.
    #[error("auth field is not user:password")]
    NoColon,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_holds_a_secret() {
        let secret = "s3cr3t-value";
        for auth in [
            RegistryAuth::Basic {
                username: "me".into(),
                password: secret.into(),
            },
            RegistryAuth::Bearer(secret.into()),
            RegistryAuth::IdentityToken(secret.into()),
        ] {
            let shown = format!("{auth:?} {auth:#?}");
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        assert_eq!(format!("{:?}", RegistryAuth::Anonymous), "Anonymous");
    }

    #[test]
    fn auth_fields_decode_or_say_why_not() {
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            RegistryAuth::from_auth_field(&encode("u2:p:2")),
            Ok(RegistryAuth::Basic {
                username: "u2".into(),
                password: "p:2".into()
            })
        );
        assert_eq!(
            RegistryAuth::from_auth_field("%%%"),
            Err(BadAuth::NotBase64)
        );
        assert_eq!(
            RegistryAuth::from_auth_field(&encode("nocolon")),
            Err(BadAuth::NoColon)
        );
        let not_utf8 = base64::engine::general_purpose::STANDARD.encode([0xff, b':']);
        assert_eq!(
            RegistryAuth::from_auth_field(&not_utf8),
            Err(BadAuth::NotUtf8)
        );
    }
}
