//! Passwords (argon2id) and access tokens (JWT, HS256).

use std::time::Duration;

use aether_domain::{Password, UserId};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
}

/// Issues and verifies tokens with one HMAC secret.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("secret", &"<hidden>")
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
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn issue(&self, user: UserId, kind: TokenKind) -> Result<String, AuthError> {
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
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Signing(e.to_string()))
    }

    /// The user a token of `kind` speaks for. Only HS256 is accepted, `exp` is required, and
    /// no leeway is given.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<UserId, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| AuthError::InvalidToken)?;
        if data.claims.kind != kind {
            return Err(AuthError::WrongTokenKind);
        }
        UserId::parse(&data.claims.sub).map_err(|_| AuthError::InvalidToken)
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

    fn issuer(secret: &[u8]) -> TokenIssuer {
        TokenIssuer::new(secret, DEFAULT_ACCESS_TTL, DEFAULT_REFRESH_TTL)
    }

    #[test]
    fn a_token_speaks_for_its_user_only_with_the_right_secret() {
        let user = UserId::new();
        let token = issuer(b"one secret")
            .issue(user, TokenKind::Access)
            .unwrap();
        assert_eq!(
            issuer(b"one secret")
                .verify(&token, TokenKind::Access)
                .unwrap(),
            user
        );
        assert!(issuer(b"another secret")
            .verify(&token, TokenKind::Access)
            .is_err());
    }

    #[test]
    fn a_refresh_token_is_not_an_access_token() {
        let issuer = issuer(b"secret");
        let refresh = issuer.issue(UserId::new(), TokenKind::Refresh).unwrap();
        assert!(matches!(
            issuer.verify(&refresh, TokenKind::Access),
            Err(AuthError::WrongTokenKind)
        ));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let issuer = TokenIssuer::new(b"secret", Duration::ZERO, Duration::ZERO);
        let token = issuer.issue(UserId::new(), TokenKind::Access).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(issuer.verify(&token, TokenKind::Access).is_err());
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
