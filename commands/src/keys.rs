//! Token-signing keys: Ed25519 key pairs, each named by a key id (`kid`) that every token
//! carries in its header, so keys can be rotated without signing anyone out.
//!
//! A keyring file is either
//! - a JSON keyring, written by `aether keys generate` / `rotate` / `retire`:
//!   `{"keys": [{"kid", "seed" (hex, 32 bytes), "created_at", "state": "active" | "verify"}]}`,
//!   with exactly one `active` key (the one that signs) and any number of `verify` keys (older
//!   keys whose tokens are still accepted until they expire), or
//! - raw secret bytes (at least 32, e.g. `head -c 64 /dev/urandom`), from which one key is
//!   derived (its seed is the secret's SHA-256). `aether keys rotate` turns such a file into a
//!   keyring that keeps the derived key for verification.
//!
//! The public halves are published as a JWKS (`/.well-known/jwks.json`), so other services can
//! check tokens without holding a secret.

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The shortest raw secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("the keyring is not valid JSON: {0}")]
    Json(String),
    #[error("the keyring has no active key")]
    NoActiveKey,
    #[error("the keyring has more than one active key")]
    SeveralActiveKeys,
    #[error("key {kid}: {reason}")]
    BadKey { kid: String, reason: String },
    #[error("two keys are named {0}")]
    DuplicateKid(String),
    #[error(
        "the signing secret is too weak: {0}; generate one with `aether keys generate` \
         (or `head -c 64 /dev/urandom`)"
    )]
    WeakSecret(String),
    #[error("no key {0} in the keyring")]
    UnknownKid(String),
    #[error("{0} is the active key; rotate first, then retire it")]
    RetiringActive(String),
}

/// Whether a key signs new tokens or only verifies older ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Verify,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    seed: String,
    created_at: DateTime<Utc>,
    state: KeyState,
}

#[derive(Serialize, Deserialize)]
struct StoredKeyring {
    keys: Vec<StoredKey>,
}

/// One key pair.
#[derive(Clone)]
pub struct Key {
    pub kid: String,
    pub created_at: DateTime<Utc>,
    pub state: KeyState,
    signing: SigningKey,
}

impl Key {
    fn from_seed(
        kid: Option<String>,
        seed: [u8; 32],
        created_at: DateTime<Utc>,
        state: KeyState,
    ) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let kid = kid.unwrap_or_else(|| derived_kid(&signing));
        Self {
            kid,
            created_at,
            state,
            signing,
        }
    }

    fn generate(state: KeyState) -> Self {
        let mut seed = [0_u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Self::from_seed(None, seed, Utc::now(), state)
    }

    pub(crate) fn encoding(&self) -> Result<EncodingKey, KeyringError> {
        let der = self
            .signing
            .to_pkcs8_der()
            .map_err(|e| KeyringError::BadKey {
                kid: self.kid.clone(),
                reason: e.to_string(),
            })?;
        Ok(EncodingKey::from_ed_der(der.as_bytes()))
    }

    pub(crate) fn decoding(&self) -> DecodingKey {
        DecodingKey::from_ed_der(self.signing.verifying_key().as_bytes())
    }

    /// The public half as a JSON Web Key.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_id: Some(self.kid.clone()),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: base64url(self.signing.verifying_key().as_bytes()),
            }),
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("state", &self.state)
            .field("seed", &"<hidden>")
            .finish()
    }
}

/// A key id from the public key: stable, and reveals nothing.
fn derived_kid(signing: &SigningKey) -> String {
    let digest = Sha256::digest(signing.verifying_key().as_bytes());
    format!("ed25519-{}", hex::encode(&digest[..6]))
}

/// Base64url without padding, as JWKs and JWTs spell bytes.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Every key a service signs and verifies with.
#[derive(Clone, Debug)]
pub struct Keyring {
    /// Newest first; exactly one is active.
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring of one fresh key.
    pub fn generate() -> Self {
        Self {
            keys: vec![Key::generate(KeyState::Active)],
        }
    }

    /// One key derived from raw secret bytes. Refuses secrets too short or too repetitive to be
    /// random (a placeholder such as `changeme…` or a run of one byte).
    pub fn from_secret(secret: &[u8]) -> Result<Self, KeyringError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyringError::WeakSecret(format!(
                "{} bytes, at least {MIN_SECRET_BYTES} are needed",
                secret.len()
            )));
        }
        let mut distinct = [false; 256];
        for byte in secret {
            distinct[usize::from(*byte)] = true;
        }
        let distinct = distinct.iter().filter(|seen| **seen).count();
        if distinct < 16 {
            return Err(KeyringError::WeakSecret(format!(
                "only {distinct} different byte values"
            )));
        }
        let seed: [u8; 32] = Sha256::digest(secret).into();
        Ok(Self {
            keys: vec![Key::from_seed(
                None,
                seed,
                DateTime::UNIX_EPOCH,
                KeyState::Active,
            )],
        })
    }

    /// A keyring file's contents: a JSON keyring, or raw secret bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyringError> {
        let text = std::str::from_utf8(bytes).ok().map(str::trim_start);
        if text.is_some_and(|text| text.starts_with('{')) {
            let stored: StoredKeyring =
                serde_json::from_slice(bytes).map_err(|e| KeyringError::Json(e.to_string()))?;
            return Self::from_stored(stored);
        }
        Self::from_secret(bytes)
    }

    fn from_stored(stored: StoredKeyring) -> Result<Self, KeyringError> {
        let mut keys = Vec::with_capacity(stored.keys.len());
        for key in stored.keys {
            let bad = |reason: &str| KeyringError::BadKey {
                kid: key.kid.clone(),
                reason: reason.to_owned(),
            };
            let seed: [u8; 32] = hex::decode(key.seed.trim())
                .map_err(|_| bad("the seed is not hex"))?
                .try_into()
                .map_err(|_| bad("the seed is not 32 bytes"))?;
            if key.kid.trim().is_empty() {
                return Err(bad("the kid is empty"));
            }
            if keys.iter().any(|k: &Key| k.kid == key.kid) {
                return Err(KeyringError::DuplicateKid(key.kid));
            }
            keys.push(Key::from_seed(
                Some(key.kid.clone()),
                seed,
                key.created_at,
                key.state,
            ));
        }
        let ring = Self { keys };
        ring.active()?;
        Ok(ring)
    }

    /// The JSON keyring, secrets included: for the keyring file only.
    pub fn to_json(&self) -> String {
        let stored = StoredKeyring {
            keys: self
                .keys
                .iter()
                .map(|key| StoredKey {
                    kid: key.kid.clone(),
                    seed: hex::encode(key.signing.to_bytes()),
                    created_at: key.created_at,
                    state: key.state,
                })
                .collect(),
        };
        serde_json::to_string_pretty(&stored).unwrap_or_default() + "\n"
    }

    /// A new active key; the old active one goes on verifying the tokens it signed.
    pub fn rotated(&self) -> Self {
        let mut keys = vec![Key::generate(KeyState::Active)];
        keys.extend(self.keys.iter().cloned().map(|mut key| {
            key.state = KeyState::Verify;
            key
        }));
        Self { keys }
    }

    /// Without key `kid`: tokens it signed are no longer accepted.
    pub fn retired(&self, kid: &str) -> Result<Self, KeyringError> {
        let key = self
            .keys
            .iter()
            .find(|key| key.kid == kid)
            .ok_or_else(|| KeyringError::UnknownKid(kid.to_owned()))?;
        if key.state == KeyState::Active {
            return Err(KeyringError::RetiringActive(kid.to_owned()));
        }
        Ok(Self {
            keys: self.keys.iter().filter(|k| k.kid != kid).cloned().collect(),
        })
    }

    /// The key that signs.
    pub fn active(&self) -> Result<&Key, KeyringError> {
        let mut active = self.keys.iter().filter(|key| key.state == KeyState::Active);
        let key = active.next().ok_or(KeyringError::NoActiveKey)?;
        if active.next().is_some() {
            return Err(KeyringError::SeveralActiveKeys);
        }
        Ok(key)
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn find(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// The public keys, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(Key::jwk).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_has_no_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn a_keyring_survives_its_file() {
        let ring = Keyring::generate().rotated();
        let again = Keyring::from_bytes(ring.to_json().as_bytes()).unwrap();
        assert_eq!(again.keys().len(), 2);
        assert_eq!(again.active().unwrap().kid, ring.active().unwrap().kid);
        assert_eq!(again.jwks().keys.len(), 2);
    }

    #[test]
    fn weak_secrets_and_broken_keyrings_are_refused() {
        assert!(matches!(
            Keyring::from_bytes(b"changeme"),
            Err(KeyringError::WeakSecret(_))
        ));
        assert!(matches!(
            Keyring::from_bytes(&[b'a'; 64]),
            Err(KeyringError::WeakSecret(_))
        ));
        assert!(matches!(
            Keyring::from_bytes(b"{\"keys\": []}"),
            Err(KeyringError::NoActiveKey)
        ));
        assert!(matches!(
            Keyring::from_bytes(b"{\"keys\": ["),
            Err(KeyringError::Json(_))
        ));
        let seed = "00".repeat(32);
        let two = format!(
            "{{\"keys\": [{{\"kid\": \"a\", \"seed\": \"{seed}\", \"created_at\": \"2026-01-01T00:00:00Z\", \"state\": \"active\"}}, \
             {{\"kid\": \"a\", \"seed\": \"{seed}\", \"created_at\": \"2026-01-01T00:00:00Z\", \"state\": \"verify\"}}]}}"
        );
        assert!(matches!(
            Keyring::from_bytes(two.as_bytes()),
            Err(KeyringError::DuplicateKid(_))
        ));
    }

    #[test]
    fn the_active_key_cannot_be_retired() {
        let ring = Keyring::generate();
        let active = ring.active().unwrap().kid.clone();
        assert!(matches!(
            ring.retired(&active),
            Err(KeyringError::RetiringActive(_))
        ));
        let rotated = ring.rotated();
        let retired = rotated.retired(&active).unwrap();
        assert!(retired.find(&active).is_none());
        assert!(matches!(
            retired.retired("nope"),
            Err(KeyringError::UnknownKid(_))
        ));
    }

    #[test]
    fn debug_output_hides_the_seeds() {
        let ring = Keyring::generate();
        let seed = hex::encode(ring.keys()[0].signing.to_bytes());
        assert!(!format!("{ring:?}").contains(&seed));
    }
}
