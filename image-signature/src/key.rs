//! Public keys as cosign writes them (`cosign.pub`: one PEM `PUBLIC KEY`
//! block holding a DER SubjectPublicKeyInfo), and the two signature schemes
//! we accept: ECDSA P-256 over SHA-256 (cosign's default) and Ed25519.
//!
//! Keys are parsed when the policy is loaded, so a bad key stops the load
//! rather than failing (or, worse, passing) at pull time. A key is named by
//! its fingerprint, the SHA-256 of its SPKI DER, the same bytes whichever
//! file or `keyData` it came from.

use crate::error::KeyError;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use p256::ecdsa::signature::Verifier as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use std::fmt;

/// id-ecPublicKey (RFC 5480).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1, the P-256 curve (RFC 5480).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// id-Ed25519 (RFC 8410).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The largest key file (or decoded `keyData`) we read: a P-256 PEM is
/// under 200 bytes, so anything near this is not a public key.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// Which signature scheme a key verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 over the SHA-256 of the payload, ASN.1 DER signatures.
    #[serde(rename = "ecdsa-p256-sha256")]
    EcdsaP256Sha256,
    /// Ed25519 over the payload itself (64-byte signatures).
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            KeyAlgorithm::Ed25519 => "ed25519",
        })
    }
}

#[derive(Clone)]
enum Inner {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A public key a policy trusts.
///
/// # Examples
///
/// ```
/// use image_signature::{KeyAlgorithm, PublicKey};
/// let pem = "-----BEGIN PUBLIC KEY-----\n\
///     MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
///     -----END PUBLIC KEY-----\n";
/// let key = PublicKey::from_pem(pem.as_bytes())?;
/// assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
/// assert!(key.fingerprint().starts_with("sha256:"));
/// assert!(!key.verify(b"payload", &[0; 64]));
/// # Ok::<(), image_signature::KeyError>(())
/// ```
#[derive(Clone)]
pub struct PublicKey {
    inner: Inner,
    fingerprint: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    /// Parses one PEM `PUBLIC KEY` block (surrounding whitespace allowed,
    /// nothing else).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        if pem.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLarge {
                limit: MAX_KEY_BYTES,
            });
        }
        let text = std::str::from_utf8(pem).map_err(|_| KeyError::Pem("not UTF-8 text".into()))?;
        let (label, document) =
            spki::Document::from_pem(text.trim()).map_err(|e| KeyError::Pem(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::Pem(format!(
                "a {label:?} block, not a \"PUBLIC KEY\" block"
            )));
        }
        Self::from_der(document.as_bytes())
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = SubjectPublicKeyInfoRef::try_from(der)
            .map_err(|e| KeyError::Invalid(format!("not a SubjectPublicKeyInfo: {e}")))?;
        let inner = match info.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                let curve = info.algorithm.parameters_oid().ok();
                if curve != Some(OID_P256) {
                    return Err(KeyError::UnsupportedAlgorithm(format!(
                        "ECDSA on curve {}",
                        curve.map_or_else(|| "(none given)".to_string(), |c| c.to_string())
                    )));
                }
                let key = p256::PublicKey::from_public_key_der(der)
                    .map_err(|e| KeyError::Invalid(format!("P-256 key: {e}")))?;
                Inner::P256(key.into())
            }
            OID_ED25519 => Inner::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(der)
                    .map_err(|e| KeyError::Invalid(format!("Ed25519 key: {e}")))?,
            ),
            other => {
                return Err(KeyError::UnsupportedAlgorithm(format!(
                    "algorithm {other} ({})",
                    algorithm_name(&other)
                )))
            }
        };
        Ok(Self {
            inner,
            fingerprint: format!("sha256:{}", hex::encode(Sha256::digest(der))),
        })
    }

    /// The signature scheme this key verifies.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            Inner::P256(_) => KeyAlgorithm::EcdsaP256Sha256,
            Inner::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// `sha256:<hex>` of the key's SPKI DER.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether `signature` (raw bytes, already base64-decoded) is this key's
    /// signature over exactly `payload`. Malformed signatures are simply not
    /// valid.
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> bool {
        match &self.inner {
            Inner::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify(payload, &sig).is_ok()),
            Inner::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(payload, &sig).is_ok()),
        }
    }
}

/// A readable name for the key algorithms people are likely to try, so the
/// refusal says "RSA" rather than only an OID.
fn algorithm_name(oid: &ObjectIdentifier) -> &'static str {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.3.101.113" => "Ed448",
        "1.2.840.10040.4.1" => "DSA",
        _ => "unknown",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    /// A deterministic P-256 key for tests (never a real secret).
    pub(crate) fn p256_key(seed: u8) -> p256::ecdsa::SigningKey {
        let mut bytes = [seed; 32];
        bytes[0] = 1;
        p256::ecdsa::SigningKey::from_slice(&bytes).unwrap()
    }

    /// A deterministic Ed25519 key for tests.
    pub(crate) fn ed25519_key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn p256_pem(key: &p256::ecdsa::SigningKey) -> String {
        key.verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap()
    }

    pub(crate) fn ed25519_pem(key: &ed25519_dalek::SigningKey) -> String {
        ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_pem(
            &key.verifying_key(),
            Default::default(),
        )
        .unwrap()
    }

    pub(crate) fn p256_sign(key: &p256::ecdsa::SigningKey, payload: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = key.sign(payload);
        sig.to_der().as_bytes().to_vec()
    }

    pub(crate) fn ed25519_sign(key: &ed25519_dalek::SigningKey, payload: &[u8]) -> Vec<u8> {
        ed25519_dalek::Signer::sign(key, payload)
            .to_bytes()
            .to_vec()
    }

    #[test]
    fn p256_keys_verify_their_own_der_signatures_only() {
        let key = PublicKey::from_pem(p256_pem(&p256_key(7)).as_bytes()).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256Sha256);
        let sig = p256_sign(&p256_key(7), b"payload");
        assert!(key.verify(b"payload", &sig));
        assert!(!key.verify(b"payload!", &sig));
        assert!(!key.verify(b"payload", &p256_sign(&p256_key(8), b"payload")));
        // A raw r||s signature is not the ASN.1 DER cosign writes.
        let raw: p256::ecdsa::Signature = p256_key(7).sign(b"payload");
        assert!(!key.verify(b"payload", &raw.to_bytes()));
    }

    #[test]
    fn ed25519_keys_verify_their_own_signatures_only() {
        let key = PublicKey::from_pem(ed25519_pem(&ed25519_key(3)).as_bytes()).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
        let sig = ed25519_sign(&ed25519_key(3), b"payload");
        assert!(key.verify(b"payload", &sig));
        assert!(!key.verify(b"other", &sig));
        assert!(!key.verify(b"payload", &sig[..63]));
    }

    #[test]
    fn fingerprint_is_sha256_of_the_spki_der() {
        let der = p256_key(1)
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .into_vec();
        let key = PublicKey::from_der(&der).unwrap();
        let want = format!("sha256:{}", hex::encode(Sha256::digest(&der)));
        assert_eq!(key.fingerprint(), want);
        let pem_key = PublicKey::from_pem(p256_pem(&p256_key(1)).as_bytes()).unwrap();
        assert_eq!(pem_key, key);
    }

    #[test]
    fn other_keys_and_formats_are_refused_with_reasons() {
        // SPKIs of other algorithms: refused by algorithm, named.
        let rsa = [
            0x30, 0x14, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
            0x01, 0x05, 0x00, 0x03, 0x03, 0x00, 0x30, 0x00,
        ];
        let err = PublicKey::from_der(&rsa).unwrap_err();
        assert!(
            matches!(&err, KeyError::UnsupportedAlgorithm(what) if what.contains("RSA")),
            "{err}"
        );
        let p384 = [
            0x30, 0x16, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x02, 0x00, 0x04,
        ];
        let err = PublicKey::from_der(&p384).unwrap_err();
        assert!(
            matches!(&err, KeyError::UnsupportedAlgorithm(what) if what.contains("1.3.132.0.34")),
            "{err}"
        );
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIDfHRIbKQ0yCvjd5qr3nSHnmOZ2VNbOBTuURRDsUMh9R\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(private.as_bytes()),
            Err(KeyError::Pem(_))
        ));
        let two = format!("{0}{0}", p256_pem(&p256_key(1)));
        assert!(PublicKey::from_pem(two.as_bytes()).is_err());
        assert!(PublicKey::from_pem(b"not a key").is_err());
        assert!(PublicKey::from_pem(&[0xff; 10]).is_err());
        assert!(matches!(
            PublicKey::from_pem(&vec![b' '; MAX_KEY_BYTES + 1]),
            Err(KeyError::TooLarge { .. })
        ));
        assert!(PublicKey::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    }
}
