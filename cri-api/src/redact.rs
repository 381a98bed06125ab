//! Debug for the messages whose fields the proto marks `debug_redact`
//! (prost does not honour the option; build.rs skips their derived Debug).

use crate::v1::AuthConfig;
use std::fmt;

/// Shown instead of a secret that was given; an empty one stays visible as
/// empty, since "no password" is worth seeing while debugging a pull.
const REDACTED: &str = "<redacted>";

fn secret(value: &str) -> &str {
    if value.is_empty() {
        ""
    } else {
        REDACTED
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("auth", &secret(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &secret(&self.identity_token))
            .field("registry_token", &secret(&self.registry_token))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_redacted_and_the_rest_is_shown() {
        let auth = AuthConfig {
            username: "alice".into(),
            password: "p4ss".into(),
            auth: "YWxpY2U6cDRzcw==".into(),
            server_address: "registry.example".into(),
            identity_token: "idt".into(),
            registry_token: "rgt".into(),
        };
        let shown = format!("{auth:?}");
        for secret in ["p4ss", "YWxpY2U6cDRzcw==", "idt", "rgt"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("alice") && shown.contains("registry.example"));
    }
}
