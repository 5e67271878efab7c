//! Tokens of an external OpenID Connect issuer: a stand-in identity provider on loopback
//! publishes RS256 and ES256 keys as a JWKS; its users reach the API with its tokens, get an
//! account on first sight, and everything a verifier must refuse is refused.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig};
use aether_realtime_edge::oidc::{JwksSource, OidcConfig};
use common::{unlimited, Client};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUER: &str = "https://id.example.test/realms/chat";
const AUDIENCE: &str = "aether-web";
const ME: &str = "{ me { id username displayName } }";

/// A signing key of the stand-in provider.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
}

impl SigningKey {
    fn rsa(kid: &str) -> anyhow::Result<Self> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
        Ok(Self {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(key.to_pkcs1_der()?.as_bytes()),
        })
    }

    fn ec(kid: &str) -> anyhow::Result<Self> {
        use p256::pkcs8::EncodePrivateKey;
        let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
        Ok(Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(key.to_pkcs8_der()?.as_bytes()),
        })
    }

    fn jwk(&self) -> anyhow::Result<Jwk> {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg)?;
        jwk.common.key_id = Some(self.kid.clone());
        Ok(jwk)
    }

    fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

fn claims(subject: &str, name: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "name": name, "iat": now, "exp": now + 300 })
}

/// Serves the provider's JWKS at `/jwks` on loopback; the set can change while it runs.
async fn provider(keys: Arc<Mutex<JwkSet>>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let keys = keys.clone();
            async move {
                let set = keys
                    .lock()
                    .map(|set| set.clone())
                    .unwrap_or(JwkSet { keys: vec![] });
                axum::Json(set)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn config(dir: &std::path::Path, jwks: JwksSource) -> EmbeddedConfig {
    EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        oidc: Some(OidcConfig {
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            jwks,
            refresh: Duration::from_secs(1),
            leeway: Duration::from_secs(5),
        }),
        ..unlimited()
    }
}

async fn code_of(client: &mut Client) -> anyhow::Result<String> {
    let body = client.raw(ME, json!({})).await?;
    Ok(body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("OK")
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_providers_users_sign_in_with_its_tokens() -> anyhow::Result<()> {
    let rsa = SigningKey::rsa("rsa-1")?;
    let ec = SigningKey::ec("ec-1")?;
    let keys = Arc::new(Mutex::new(JwkSet {
        keys: vec![rsa.jwk()?, ec.jwk()?],
    }));
    let idp = provider(keys.clone()).await?;
    let dir = tempfile::tempdir()?;
    let app = start_embedded(config(
        dir.path(),
        JwksSource::Url(format!("http://{idp}/jwks")),
    ))
    .await?;
    let anonymous = Client::new(app.local_addr);

    // First sight creates the account, named by the provider; later tokens reach the same one.
    let mut alice = anonymous.with_token(&rsa.sign(&claims("248289761001", "Alice Example"))?);
    let me = alice.ok(ME, json!({})).await?;
    assert_eq!(me["me"]["displayName"], "Alice Example", "{me}");
    let username = me["me"]["username"].as_str().unwrap_or_default();
    assert!(username.starts_with("oidc-"), "{me}");
    let mut again = anonymous.with_token(&rsa.sign(&claims("248289761001", "Renamed"))?);
    let same = again.ok(ME, json!({})).await?;
    assert_eq!(same["me"]["id"], me["me"]["id"]);
    assert_eq!(same["me"]["displayName"], "Alice Example");

    // An ES256 user, and the two talk like any other users.
    let mut bob = anonymous.with_token(&ec.sign(&claims("bob@example.test", "Bob"))?);
    let bob_id = bob.ok(ME, json!({})).await?["me"]["id"].clone();
    assert_ne!(bob_id, me["me"]["id"]);
    let place = common::community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();
    common::send(
        &mut alice,
        &place.channel_id,
        "hello from the identity provider",
    )
    .await?;

    // What a verifier must refuse.
    let now = chrono::Utc::now().timestamp();
    let stranger = SigningKey::rsa("rsa-1")?;
    let mut refused = Vec::new();
    let cases: Vec<(&str, String)> = vec![
        ("wrong audience", rsa.sign(&json!({ "iss": ISSUER, "aud": "another-app", "sub": "x", "exp": now + 300 }))?),
        ("no audience", rsa.sign(&json!({ "iss": ISSUER, "sub": "x", "exp": now + 300 }))?),
        ("expired beyond the leeway", rsa.sign(&json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now - 60 }))?),
        ("no expiry", rsa.sign(&json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "x" }))?),
        ("empty subject", rsa.sign(&json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "", "exp": now + 300 }))?),
        ("another issuer", rsa.sign(&json!({ "iss": "https://evil.example.test", "aud": AUDIENCE, "sub": "x", "exp": now + 300 }))?),
        ("a key the provider never published, under a published kid", stranger.sign(&claims("x", "X"))?),
        ("an unknown kid", SigningKey::rsa("rsa-9")?.sign(&claims("x", "X"))?),
        ("alg none", format!("{}.{}.", b64(&json!({ "alg": "none", "kid": "rsa-1" })), b64(&claims("x", "X")))),
        ("HS256 keyed with the public key", {
            let public = serde_json::to_vec(&rsa.jwk()?)?;
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("rsa-1".into());
            jsonwebtoken::encode(&header, &claims("x", "X"), &EncodingKey::from_secret(&public))?
        }),
        ("ES256 header on the RSA key", {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("rsa-1".into());
            jsonwebtoken::encode(&header, &claims("x", "X"), &ec.encoding)?
        }),
    ];
    for (what, token) in cases {
        let code = code_of(&mut anonymous.with_token(&token)).await?;
        if code != "UNAUTHENTICATED" {
            refused.push(format!("{what}: {code}"));
        }
    }
    assert!(
        refused.is_empty(),
        "accepted or wrongly refused: {refused:?}"
    );

    // The provider rotates: a token of its new key is accepted once the set is read again
    // (a token naming an unknown key triggers that, at most once per refresh interval).
    let rotated = SigningKey::rsa("rsa-2")?;
    if let Ok(mut set) = keys.lock() {
        set.keys.push(rotated.jwk()?);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut carol = anonymous.with_token(&rotated.sign(&claims("carol", "Carol"))?);
    assert_eq!(carol.ok(ME, json!({})).await?["me"]["displayName"], "Carol");

    // The product's own tokens keep working beside the provider's.
    let mut local = Client::new(app.local_addr);
    let (mut dave, _) = local.register("dave").await?;
    assert_eq!(code_of(&mut dave).await?, "OK");
    app.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_signed_in_with_a_providers_token_lives_as_long_as_the_token() -> anyhow::Result<()>
{
    use common::Subscriber;

    let rsa = SigningKey::rsa("rsa-1")?;
    let keys = Arc::new(Mutex::new(JwkSet {
        keys: vec![rsa.jwk()?],
    }));
    let idp = provider(keys).await?;
    let dir = tempfile::tempdir()?;
    let app = start_embedded(config(
        dir.path(),
        JwksSource::Url(format!("http://{idp}/jwks")),
    ))
    .await?;
    let now = chrono::Utc::now().timestamp();
    let token = |exp: i64| {
        rsa.sign(&json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "carol-1", "name": "Carol", "iat": now, "exp": exp }))
    };
    // Valid for a second, plus the 5 s leeway.
    let short = token(now + 1)?;
    let mut left_alone = Subscriber::connect(app.local_addr, &short).await?;
    let mut renewed = Subscriber::connect(app.local_addr, &short).await?;
    renewed
        .send(json!({ "type": "ping", "payload": { "authorization": format!("Bearer {}", token(now + 300)?) } }))
        .await?;
    assert_eq!(renewed.next_message().await?["type"], "pong");
    // The token lapses: the socket left alone closes with 4403; the renewed one answers.
    let (code, _) = left_alone.close_frame().await?;
    assert_eq!(code, 4403);
    let answer = renewed.execute("1", ME, json!({})).await?;
    assert_eq!(answer["data"]["me"]["displayName"], "Carol", "{answer}");
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_deployment_whose_issuer_keys_cannot_be_read_does_not_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-such-jwks.json");
    let error = start_embedded(config(dir.path(), JwksSource::File(missing)))
        .await
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("no-such-jwks.json"), "{error}");

    // A file works like a URL.
    let key = SigningKey::ec("file-1")?;
    let file = dir.path().join("jwks.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&JwkSet {
            keys: vec![key.jwk()?],
        })?,
    )?;
    let app = start_embedded(config(dir.path(), JwksSource::File(file))).await?;
    let mut erin = Client::new(app.local_addr).with_token(&key.sign(&claims("erin", "Erin"))?);
    assert_eq!(erin.ok(ME, json!({})).await?["me"]["displayName"], "Erin");
    app.stop().await?;
    Ok(())
}

fn b64(value: &Value) -> String {
    aether_commands::keys::base64url(value.to_string().as_bytes())
}
