//! Passwords (argon2id) and tokens (JWT, EdDSA, signed by the keyring's active key and
//! carrying its `kid`; see [`crate::keys`]).

use std::time::Duration;

use aether_domain::{Password, UserId};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::{Keyring, KeyringError};

/// Hashes a password with argon2id and a random salt, in PHC string format.
pub fn hash_password(password: &Password) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Checks a password against a stored PHC hash in time independent of where they differ.
pub fn verify_password(password: &str, phc_hash: &str) -> bool {
    PasswordHash::new(phc_hash)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is invalid or expired")]
    InvalidToken,
    #[error("the token is signed by a key this service does not know (no such kid)")]
    UnknownKey,
    #[error("this is not an access token")]
    WrongTokenKind,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("token signing failed: {0}")]
    Signing(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub kind: TokenKind,
    /// The sign-in session the token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// A refresh token's generation within its session: only the newest is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
}

/// What a verified token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    pub session: Option<uuid::Uuid>,
    pub generation: Option<u32>,
    /// When the token was issued and when it expires (seconds since the epoch).
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Issues tokens with the keyring's active key and verifies them with any of its keys.
#[derive(Clone)]
pub struct TokenIssuer {
    kid: String,
    encoding: EncodingKey,
    decoding: Arc<HashMap<String, DecodingKey>>,
    jwks: Arc<JwkSet>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    verified: Arc<VerifiedTokens>,
}

/// Access tokens whose signature was checked, remembered until they expire. A client sends the
/// same access token with every request, and checking an EdDSA signature again each time was
/// 3–4 % of the CPU of a server taking 1,000 messages a second. Only the signature check is
/// skipped: the claims were checked with it, expiry is checked on every use, and what a caller
/// checks after verification (a signed-out session) is unaffected.
#[derive(Debug, Default)]
struct VerifiedTokens {
    entries: std::sync::Mutex<HashMap<String, (Verified, i64)>>,
}

/// Tokens remembered at most (about 400 bytes each); when full, the expired are forgotten, and
/// if that is not enough, all.
const VERIFIED_TOKENS_MAX: usize = 10_000;

impl VerifiedTokens {
    fn get(&self, token: &str, now: i64) -> Option<Verified> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (verified, exp) = entries.get(token)?;
        (*exp >= now).then_some(*verified)
    }

    fn remember(&self, token: &str, verified: Verified, exp: i64, now: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= VERIFIED_TOKENS_MAX {
            entries.retain(|_, (_, exp)| *exp >= now);
            if entries.len() >= VERIFIED_TOKENS_MAX {
                entries.clear();
            }
        }
        entries.insert(token.to_owned(), (verified, exp));
    }
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.kid)
            .field("keys", &self.decoding.len())
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish()
    }
}

/// The default lifetime of an access token.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// The default lifetime of a refresh token.
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

impl TokenIssuer {
    pub fn new(
        keyring: &Keyring,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<Self, KeyringError> {
        let active = keyring.active()?;
        let decoding = keyring
            .keys()
            .iter()
            .map(|key| (key.kid.clone(), key.decoding()))
            .collect();
        Ok(Self {
            kid: active.kid.clone(),
            encoding: active.encoding()?,
            decoding: Arc::new(decoding),
            jwks: Arc::new(keyring.jwks()),
            access_ttl,
            refresh_ttl,
            verified: Arc::default(),
        })
    }

    /// The public keys tokens are verified with, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// How long an access token lives.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn issue(&self, user: UserId, kind: TokenKind) -> Result<String, AuthError> {
        self.sign(user, kind, None, None)
    }

    /// A token of `session`: the access token names it (so signing out knows which), the
    /// refresh token also carries its generation.
    pub fn issue_for_session(
        &self,
        user: UserId,
        kind: TokenKind,
        session: uuid::Uuid,
        generation: u32,
    ) -> Result<String, AuthError> {
        let generation = (kind == TokenKind::Refresh).then_some(generation);
        self.sign(user, kind, Some(session.to_string()), generation)
    }

    fn sign(
        &self,
        user: UserId,
        kind: TokenKind,
        sid: Option<String>,
        generation: Option<u32>,
    ) -> Result<String, AuthError> {
        let now = Utc::now().timestamp();
        let ttl = match kind {
            TokenKind::Access => self.access_ttl,
            TokenKind::Refresh => self.refresh_ttl,
        };
        let claims = Claims {
            sub: user.to_string(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            kind,
            sid,
            generation,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| AuthError::Signing(e.to_string()))
    }

    /// The user a token of `kind` speaks for. The header must name a known key (`kid`) and
    /// EdDSA, the only algorithm accepted (so neither `none` nor an HMAC "signed" with a public
    /// key gets through); `exp` and `sub` are required and no leeway is given.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<UserId, AuthError> {
        self.verify_claims(token, kind)
            .map(|verified| verified.user)
    }

    /// As [`Self::verify`], with the session and generation the token carries.
    pub fn verify_claims(&self, token: &str, kind: TokenKind) -> Result<Verified, AuthError> {
        let now = Utc::now().timestamp();
        if kind == TokenKind::Access {
            if let Some(verified) = self.verified.get(token, now) {
                return Ok(verified);
            }
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::InvalidToken);
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = self.decoding.get(&kid).ok_or(AuthError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|_| AuthError::InvalidToken)?;
        if data.claims.kind != kind {
            return Err(AuthError::WrongTokenKind);
        }
        let session = match data.claims.sid.as_deref() {
            Some(sid) => Some(uuid::Uuid::parse_str(sid).map_err(|_| AuthError::InvalidToken)?),
            None => None,
        };
        let verified = Verified {
            user: UserId::parse(&data.claims.sub).map_err(|_| AuthError::InvalidToken)?,
            session,
            generation: data.claims.generation,
            issued_at: data.claims.iat,
            expires_at: data.claims.exp,
        };
        if kind == TokenKind::Access {
            self.verified
                .remember(token, verified, data.claims.exp, now);
        }
        Ok(verified)
    }
}

/// Someone an external OpenID Connect issuer vouches for: its `iss` and `sub` claims, and the
/// names it gives (used once, for the account's display name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub issuer: String,
    pub subject: String,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    /// The token's `exp` and `iat` (seconds since the epoch): a WebSocket signed in with it
    /// lives as long as the token does.
    pub expires_at: Option<i64>,
    pub issued_at: Option<i64>,
}

/// The namespace of the user ids derived from external identities.
const EXTERNAL_USER_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5d1e_40a7_8b3c_4f0e_9a62_c3d8_e1f0_7b24);

impl ExternalIdentity {
    /// The account this identity signs in to: a UUIDv5 of issuer and subject, so every
    /// instance, and every restart, arrives at the same account without asking anyone.
    pub fn user_id(&self) -> UserId {
        let name = format!("{}\n{}", self.issuer, self.subject);
        UserId::from_uuid(uuid::Uuid::new_v5(
            &EXTERNAL_USER_NAMESPACE,
            name.as_bytes(),
        ))
    }
}

/// A valid argon2id hash of a random password, checked against when a username does not exist
/// so that a failed login takes the same time either way.
pub(crate) const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$K7zbLkRM2ZV/lTgQ3eI1u5a2Eq2p7C1cL3wVv3j5a7E";

/// Reads the token-signing secret at `path`, creating a random 64-byte one (readable only by
/// the owner) on first run.
pub fn load_or_create_secret(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use rand::RngCore;
    match std::fs::read(path) {
        Ok(secret) if secret.len() >= 32 => Ok(secret),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} holds fewer than 32 bytes", path.display()),
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0_u8; 64];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path)?;
            std::io::Write::write_all(&mut file, &secret)?;
            file.sync_all()?;
            Ok(secret)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(keyring: &Keyring) -> TokenIssuer {
        TokenIssuer::new(keyring, DEFAULT_ACCESS_TTL, DEFAULT_REFRESH_TTL).unwrap()
    }

    /// A token with `header` and `claims` as given, signed (or not) as given: what a forger
    /// can send.
    fn forged(header: &serde_json::Value, claims: &serde_json::Value, signature: &str) -> String {
        let part = |value: &serde_json::Value| {
            base64url(serde_json::to_vec(value).unwrap_or_default().as_slice())
        };
        format!("{}.{}.{signature}", part(header), part(claims))
    }

    use crate::keys::base64url;

    fn claims(user: UserId, exp_in: i64) -> serde_json::Value {
        let now = Utc::now().timestamp();
        serde_json::json!({ "sub": user.to_string(), "iat": now, "exp": now + exp_in, "kind": "access" })
    }

    #[test]
    fn a_token_speaks_for_its_user_only_with_the_right_keys() {
        let (ring, other) = (Keyring::generate(), Keyring::generate());
        let user = UserId::new();
        let token = issuer(&ring).issue(user, TokenKind::Access).unwrap();
        assert_eq!(
            issuer(&ring).verify(&token, TokenKind::Access).unwrap(),
            user
        );
        // Another service's keys: not even the kid is known.
        assert!(matches!(
            issuer(&other).verify(&token, TokenKind::Access),
            Err(AuthError::UnknownKey)
        ));
    }

    #[test]
    fn a_remembered_token_still_expires_and_keeps_its_kind() {
        let ring = Keyring::generate();
        let issuer = issuer(&ring);
        let user = UserId::new();
        let access = issuer.issue(user, TokenKind::Access).unwrap();
        assert_eq!(issuer.verify(&access, TokenKind::Access).unwrap(), user);
        // Remembered: the same answer again, and still not a refresh token.
        assert_eq!(issuer.verify(&access, TokenKind::Access).unwrap(), user);
        assert!(matches!(
            issuer.verify(&access, TokenKind::Refresh),
            Err(AuthError::WrongTokenKind)
        ));
        // Past its expiry a remembered token is not accepted.
        let verified = issuer.verify_claims(&access, TokenKind::Access).unwrap();
        let now = Utc::now().timestamp();
        let tokens = VerifiedTokens::default();
        tokens.remember(&access, verified, now - 1, now);
        assert_eq!(tokens.get(&access, now), None);
        assert_eq!(tokens.get(&access, now - 1), Some(verified));
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let tokens = VerifiedTokens::default();
        let verified = Verified {
            user: UserId::new(),
            session: None,
            generation: None,
            issued_at: 0,
            expires_at: 100,
        };
        for i in 0..VERIFIED_TOKENS_MAX + 10 {
            tokens.remember(&format!("token-{i}"), verified, 100, 50);
        }
        let held = tokens.entries.lock().unwrap().len();
        assert!(held <= VERIFIED_TOKENS_MAX, "{held}");
        // The newest is always kept.
        let newest = format!("token-{}", VERIFIED_TOKENS_MAX + 9);
        assert_eq!(tokens.get(&newest, 50), Some(verified));
    }

    #[test]
    fn a_refresh_token_is_not_an_access_token() {
        let issuer = issuer(&Keyring::generate());
        let refresh = issuer.issue(UserId::new(), TokenKind::Refresh).unwrap();
        assert!(matches!(
            issuer.verify(&refresh, TokenKind::Access),
            Err(AuthError::WrongTokenKind)
        ));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let issuer =
            TokenIssuer::new(&Keyring::generate(), Duration::ZERO, Duration::ZERO).unwrap();
        let token = issuer.issue(UserId::new(), TokenKind::Access).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(
            issuer.verify(&token, TokenKind::Access),
            Err(AuthError::InvalidToken)
        ));
    }

    #[test]
    fn a_forged_signature_is_refused() {
        let ring = Keyring::generate();
        let issuer = issuer(&ring);
        let token = issuer.issue(UserId::new(), TokenKind::Access).unwrap();
        // The genuine token is verified first, so it is remembered: that must not help a forgery.
        assert!(issuer.verify(&token, TokenKind::Access).is_ok());
        // Same header and key id, someone else's claims, the original signature.
        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let other = base64url(&serde_json::to_vec(&claims(UserId::new(), 600)).unwrap());
        let tampered = format!("{header}.{other}.{signature}");
        assert!(matches!(
            issuer.verify(&tampered, TokenKind::Access),
            Err(AuthError::InvalidToken)
        ));
    }

    #[test]
    fn alg_none_and_hmac_with_the_public_key_are_refused() {
        let ring = Keyring::generate();
        let issuer = issuer(&ring);
        let kid = ring.active().unwrap().kid.clone();
        let user = UserId::new();
        let none = forged(
            &serde_json::json!({ "alg": "none", "kid": kid }),
            &claims(user, 600),
            "",
        );
        assert!(issuer.verify(&none, TokenKind::Access).is_err());
        // The classic confusion: HS256 keyed with the published public key.
        let public = ring.keys()[0].jwk();
        let x = match &public.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(params) => params.x.clone(),
            _ => String::new(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid);
        let hmac = jsonwebtoken::encode(
            &header,
            &claims(user, 600),
            &EncodingKey::from_secret(x.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            issuer.verify(&hmac, TokenKind::Access),
            Err(AuthError::InvalidToken)
        ));
    }

    #[test]
    fn a_token_without_a_known_kid_is_refused() {
        let ring = Keyring::generate();
        let token = issuer(&ring)
            .issue(UserId::new(), TokenKind::Access)
            .unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        for header in [
            serde_json::json!({ "alg": "EdDSA", "typ": "JWT" }),
            serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": "ed25519-000000000000" }),
        ] {
            let swapped = format!(
                "{}.{rest}",
                base64url(&serde_json::to_vec(&header).unwrap())
            );
            assert!(matches!(
                issuer(&ring).verify(&swapped, TokenKind::Access),
                Err(AuthError::UnknownKey)
            ));
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_their_key_is_retired() {
        let ring = Keyring::generate();
        let old_kid = ring.active().unwrap().kid.clone();
        let user = UserId::new();
        let old = issuer(&ring).issue(user, TokenKind::Access).unwrap();
        let rotated = ring.rotated();
        let new = issuer(&rotated).issue(user, TokenKind::Access).unwrap();
        assert_ne!(
            jsonwebtoken::decode_header(&new).unwrap().kid,
            Some(old_kid.clone())
        );
        assert_eq!(
            issuer(&rotated).verify(&old, TokenKind::Access).unwrap(),
            user
        );
        assert_eq!(
            issuer(&rotated).verify(&new, TokenKind::Access).unwrap(),
            user
        );
        let retired = rotated.retired(&old_kid).unwrap();
        assert!(issuer(&retired).verify(&old, TokenKind::Access).is_err());
        assert_eq!(
            issuer(&retired).verify(&new, TokenKind::Access).unwrap(),
            user
        );
    }

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password(&Password::parse("correct horse").unwrap()).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse!", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn the_dummy_hash_costs_a_real_verification() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("anything", DUMMY_HASH));
    }
}
