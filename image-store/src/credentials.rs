//! Registry credentials as CRI's `AuthConfig` carries them.

use crate::auth::{BadAuth, RegistryAuth};

/// Credentials for one pull, mirroring CRI's `AuthConfig`. Empty strings
/// mean "not given".
///
/// # Examples
///
/// ```
/// use image_store::Credentials;
/// let creds = Credentials { username: "me".into(), password: "secret".into(), ..Default::default() };
/// assert!(format!("{creds:?}").contains("<redacted>"));
/// assert!(!format!("{creds:?}").contains("secret"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name for basic authentication.
    pub username: String,
    /// Password for basic authentication.
    pub password: String,
    /// `base64(username:password)`, as in docker's `config.json`.
    pub auth: String,
    /// An identity token: an OAuth2 refresh token, exchanged at the
    /// registry's token realm for a pull token.
    pub identity_token: String,
    /// A bearer token sent to the registry as is.
    pub registry_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// A digest of every field, to tell credentials apart without keeping
    /// (or comparing) the secrets themselves.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for field in [
            &self.username,
            &self.password,
            &self.auth,
            &self.identity_token,
            &self.registry_token,
        ] {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            hash.update((field.len() as u64).to_le_bytes());
            hash.update(field.as_bytes());
        }
        hash.finalize().into()
    }

    /// The authentication these credentials amount to, in this order: a
    /// registry token, an identity token, the `auth` field, the user name
    /// and password; the error says why an `auth` field cannot be decoded.
    pub(crate) fn to_registry_auth(&self) -> Result<RegistryAuth, BadAuth> {
        if !self.registry_token.is_empty() {
            return Ok(RegistryAuth::Bearer(self.registry_token.clone()));
        }
        if !self.identity_token.is_empty() {
            return Ok(RegistryAuth::IdentityToken(self.identity_token.clone()));
        }
        if !self.auth.is_empty() {
            return RegistryAuth::from_auth_field(&self.auth);
        }
        if !self.username.is_empty() {
            return Ok(RegistryAuth::Basic {
                username: self.username.clone(),
                password: self.password.clone(),
            });
        }
        Ok(RegistryAuth::Anonymous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn each_form_maps_to_an_auth() {
        let basic = Credentials {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        assert_eq!(
            basic.to_registry_auth().unwrap(),
            RegistryAuth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let auth = Credentials {
            auth: base64::engine::general_purpose::STANDARD.encode("u2:p:2"),
            ..Default::default()
        };
        assert_eq!(
            auth.to_registry_auth().unwrap(),
            RegistryAuth::Basic {
                username: "u2".into(),
                password: "p:2".into()
            }
        );
        let token = Credentials {
            registry_token: "t".into(),
            ..Default::default()
        };
        assert_eq!(
            token.to_registry_auth().unwrap(),
            RegistryAuth::Bearer("t".into())
        );
        let identity = Credentials {
            identity_token: "i".into(),
            ..Default::default()
        };
        assert_eq!(
            identity.to_registry_auth().unwrap(),
            RegistryAuth::IdentityToken("i".into())
        );
        assert_eq!(
            Credentials::default().to_registry_auth().unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn fingerprints_tell_credentials_apart() {
        let a = Credentials {
            username: "ab".into(),
            password: "c".into(),
            ..Default::default()
        };
        let b = Credentials {
            username: "a".into(),
            password: "bc".into(),
            ..Default::default()
        };
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_ne!(a.fingerprint(), Credentials::default().fingerprint());
    }

    #[test]
    fn malformed_auth_field_is_an_error() {
        for bad in [
            "%%%",
            &base64::engine::general_purpose::STANDARD.encode("nocolon"),
        ] {
            let c = Credentials {
                auth: bad.to_string(),
                ..Default::default()
            };
            assert!(c.to_registry_auth().is_err());
        }
    }
}
