//! Tokens from an external OpenID Connect issuer, so that AetherConnect plugs into an existing
//! identity provider: the issuer's public keys come from its JWKS (a file, or a URL fetched at
//! start, every `refresh` and when a token names a key not seen yet), and a token is accepted
//! when it is signed by one of them with an asymmetric algorithm, names the configured issuer
//! and audience, and has not expired. The product's own tokens are unaffected.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aether_commands::auth::{AuthError, ExternalIdentity};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Largest JWKS document read, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// A token naming an unknown key fetches the key set again at most this often (or every
/// `refresh`, when that is shorter).
const MIN_REFETCH: Duration = Duration::from_secs(30);
/// Longest a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the issuer's public keys are published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

impl JwksSource {
    /// An `http://` or `https://` address is a URL; anything else a file path.
    pub fn parse(value: &str) -> Self {
        let value = value.trim();
        if value.starts_with("https://") || value.starts_with("http://") {
            Self::Url(value.to_owned())
        } else {
            Self::File(PathBuf::from(value))
        }
    }
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url(url) => f.write_str(url),
        }
    }
}

/// An external issuer whose tokens are accepted.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// A value its tokens' `aud` must contain (the client id this deployment is registered as).
    pub audience: String,
    pub jwks: JwksSource,
    /// How often the key set is read again, so that the issuer's key rotations arrive.
    pub refresh: Duration,
    /// Clock difference tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

impl OidcConfig {
    pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the JWKS from {from} is not a JSON key set: {reason}")]
    Parse { from: String, reason: String },
    #[error(
        "the JWKS from {0} has no usable signing key (asymmetric keys with a kid: RSA, EC P-256/P-384, Ed25519)"
    )]
    NoUsableKeys(String),
}

/// A verification key and the algorithms it may be used with.
struct Key {
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ExternalClaims {
    sub: String,
    iss: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

/// The algorithms a key may verify: the one its JWK names, else every asymmetric one of its
/// type. Symmetric keys (`oct`) and encryption keys are never used.
fn algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Vec::new();
    }
    let of_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => Vec::new(),
        },
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => Vec::new(),
        },
        AlgorithmParameters::OctetKey(_) => Vec::new(),
    };
    match jwk.common.key_algorithm {
        None => of_type,
        Some(named) => Algorithm::from_str(&named.to_string())
            .ok()
            .filter(|algorithm| of_type.contains(algorithm))
            .into_iter()
            .collect(),
    }
}

fn parse_key_set(source: &str, bytes: &[u8]) -> Result<HashMap<String, Key>, OidcError> {
    let raw: RawKeySet = serde_json::from_slice(bytes).map_err(|error| OidcError::Parse {
        from: source.to_owned(),
        reason: error.to_string(),
    })?;
    let mut keys = HashMap::new();
    for value in raw.keys {
        // One key the library cannot read does not cost the others.
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let algorithms = algorithms(&jwk);
        if algorithms.is_empty() {
            continue;
        }
        if let Ok(decoding) = DecodingKey::from_jwk(&jwk) {
            keys.insert(
                kid,
                Key {
                    decoding,
                    algorithms,
                },
            );
        }
    }
    if keys.is_empty() {
        return Err(OidcError::NoUsableKeys(source.to_owned()));
    }
    Ok(keys)
}

/// An external issuer's verifier: its current keys, refreshed in the background.
pub struct ExternalIssuer {
    config: OidcConfig,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// When the keys were last read; held while reading, so one fetch runs at a time.
    fetched: tokio::sync::Mutex<Instant>,
    http: reqwest::Client,
}

impl fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalIssuer")
            .field("issuer", &self.config.issuer)
            .field("jwks", &self.config.jwks.to_string())
            .finish_non_exhaustive()
    }
}

impl ExternalIssuer {
    /// Reads the key set once: a deployment configured with an issuer whose keys cannot be read
    /// does not start.
    pub async fn load(config: OidcConfig) -> Result<Arc<Self>, OidcError> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|error| OidcError::Fetch {
                url: config.jwks.to_string(),
                reason: error.to_string(),
            })?;
        let keys = read_key_set(&http, &config.jwks).await?;
        tracing::info!(
            issuer = %config.issuer,
            jwks = %config.jwks,
            keys = keys.len(),
            "accepting tokens of an external OpenID Connect issuer"
        );
        Ok(Arc::new(Self {
            config,
            keys: RwLock::new(Arc::new(keys)),
            fetched: tokio::sync::Mutex::new(Instant::now()),
            http,
        }))
    }

    /// Reads the key set again every `refresh` until `shutdown`. A failed read keeps the keys
    /// already known.
    pub fn spawn_refresh(self: &Arc<Self>, shutdown: CancellationToken) {
        let issuer = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(issuer.config.refresh) => {}
                }
                issuer.reload(Duration::ZERO).await;
            }
        });
    }

    /// Reads the key set unless it was read less than `unless_within` ago.
    async fn reload(&self, unless_within: Duration) {
        let mut fetched = self.fetched.lock().await;
        if fetched.elapsed() < unless_within {
            return;
        }
        *fetched = Instant::now();
        match read_key_set(&self.http, &self.config.jwks).await {
            Ok(keys) => {
                if let Ok(mut current) = self.keys.write() {
                    *current = Arc::new(keys);
                }
            }
            Err(error) => tracing::warn!(%error, "keeping the external issuer's known keys"),
        }
    }

    fn key_set(&self) -> Arc<HashMap<String, Key>> {
        self.keys
            .read()
            .map(|keys| keys.clone())
            .unwrap_or_default()
    }

    /// Whether a token names this issuer (by its unverified `iss`): the caller then verifies it
    /// here rather than as one of the product's own tokens.
    pub fn claims_issuer(&self, token: &str) -> bool {
        unverified_issuer(token).as_deref() == Some(self.config.issuer.as_str())
    }

    /// The identity a token of this issuer speaks for.
    pub async fn verify(&self, token: &str) -> Result<ExternalIdentity, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let mut keys = self.key_set();
        if !keys.contains_key(&kid) {
            // The issuer may have rotated: look again, at most every MIN_REFETCH.
            self.reload(MIN_REFETCH.min(self.config.refresh)).await;
            keys = self.key_set();
        }
        let key = keys.get(&kid).ok_or(AuthError::UnknownKey)?;
        if !key.algorithms.contains(&header.alg) {
            return Err(AuthError::InvalidToken);
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let data = jsonwebtoken::decode::<ExternalClaims>(token, &key.decoding, &validation)
            .map_err(|_| AuthError::InvalidToken)?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::InvalidToken);
        }
        Ok(ExternalIdentity {
            issuer: data.claims.iss,
            subject: data.claims.sub,
            name: data.claims.name,
            preferred_username: data.claims.preferred_username,
            // The leeway accepted for `exp` is part of its life.
            expires_at: Some(
                data.claims
                    .exp
                    .saturating_add(i64::try_from(self.config.leeway.as_secs()).unwrap_or(0)),
            ),
            issued_at: data.claims.iat,
        })
    }
}

/// The `iss` claim of a token, unverified: only for choosing who verifies it.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Issuer {
        iss: Option<String>,
    }
    jsonwebtoken::dangerous::insecure_decode::<Issuer>(token)
        .ok()?
        .claims
        .iss
}

async fn read_key_set(
    http: &reqwest::Client,
    source: &JwksSource,
) -> Result<HashMap<String, Key>, OidcError> {
    let bytes = match source {
        JwksSource::File(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|source| OidcError::Read {
                    path: path.clone(),
                    source,
                })?;
            if bytes.len() > MAX_JWKS_BYTES {
                return Err(OidcError::Parse {
                    from: source.to_string(),
                    reason: format!("larger than {MAX_JWKS_BYTES} bytes"),
                });
            }
            bytes
        }
        JwksSource::Url(url) => fetch(http, url).await?,
    };
    parse_key_set(&source.to_string(), &bytes)
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, OidcError> {
    let failed = |reason: String| OidcError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|error| failed(error.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| failed(error.to_string()))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(failed(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_urls_or_files() {
        assert_eq!(
            JwksSource::parse("https://id.example.com/jwks"),
            JwksSource::Url("https://id.example.com/jwks".into())
        );
        assert_eq!(
            JwksSource::parse("/etc/aether/jwks.json"),
            JwksSource::File("/etc/aether/jwks.json".into())
        );
    }

    #[test]
    fn symmetric_encryption_and_kid_less_keys_are_not_used() {
        let set = serde_json::json!({ "keys": [
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0c2VjcmV0c2VjcmV0" },
            { "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
            { "kty": "OKP", "crv": "Ed25519", "use": "enc", "kid": "enc",
              "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
            { "kty": "unknown", "kid": "odd" },
        ]});
        let bytes = serde_json::to_vec(&set).unwrap_or_default();
        assert!(matches!(
            parse_key_set("test", &bytes),
            Err(OidcError::NoUsableKeys(_))
        ));
    }

    #[test]
    fn a_key_is_limited_to_the_algorithm_it_names() {
        let set = serde_json::json!({ "keys": [
            { "kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
              "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
        ]});
        let bytes = serde_json::to_vec(&set).unwrap_or_default();
        let keys = parse_key_set("test", &bytes).unwrap_or_default();
        assert_eq!(
            keys.get("ed").map(|key| key.algorithms.clone()),
            Some(vec![Algorithm::EdDSA])
        );
    }
}
