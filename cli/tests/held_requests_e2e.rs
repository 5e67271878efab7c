//! What a request can make the server do for it: a consistency token holds a request only
//! when a signed-in caller sends one naming an event that exists, and introspection answers
//! only where it is turned on.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig};
use common::{community, send, Client, PATIENCE};
use serde_json::{json, Value};

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// `query` with `token` in `x-consistency-token`, as `bearer` (or anonymously), within
/// [`PATIENCE`].
async fn with_token(
    addr: SocketAddr,
    bearer: Option<&str>,
    token: &str,
    query: &str,
) -> anyhow::Result<Value> {
    let mut request = Client::new(addr)
        .http
        .post(format!("http://{addr}/graphql"))
        .header("x-consistency-token", token)
        .json(&json!({ "query": query }));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let answer = tokio::time::timeout(PATIENCE, async {
        anyhow::Ok(request.send().await?.json::<Value>().await?)
    })
    .await;
    match answer {
        Ok(body) => body,
        Err(_) => anyhow::bail!("the request was held for more than {PATIENCE:?}"),
    }
}

#[tokio::test]
async fn a_consistency_token_holds_only_a_signed_in_request_for_a_real_event() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let config = EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        // A request that waits for the read models waits long: longer than a test waits.
        consistency_wait: Duration::from_secs(60),
        ..common::unlimited()
    };
    let app = start_embedded(config).await?;
    let addr = app.local_addr;
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    send(&mut alice, &place.channel_id, "hello").await?;
    let real = alice.consistency.clone().unwrap_or_default();
    let (kind, rest) = real.split_once('/').unwrap_or_default();
    let (aggregate, _) = rest.split_once('/').unwrap_or_default();
    // The same aggregate, a sequence it never reached; and an aggregate that never was.
    let made_up = [
        format!("{kind}/{aggregate}/999999"),
        format!("{kind}/{}/1", uuid::Uuid::now_v7()),
    ];
    let token = alice.token.clone().unwrap_or_default();

    // Anonymous: answered at once, whatever the token names.
    for forged in &made_up {
        let body = with_token(addr, None, forged, "{ __typename }").await?;
        assert_eq!(body["data"]["__typename"], "QueryRoot", "{body}");
    }
    // Signed in, a made-up event: refused, not waited for.
    for forged in &made_up {
        let body = with_token(addr, Some(&token), forged, "{ me { username } }").await?;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    }
    // Signed in, a real event: answered once the read models have it.
    let body = with_token(addr, Some(&token), &real, "{ me { username } }").await?;
    assert_eq!(body["data"]["me"]["username"], "alice", "{body}");
    // Not a token at all: refused, signed in or not.
    let body = with_token(addr, None, "not-a-token", "{ __typename }").await?;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn introspection_answers_only_where_it_is_turned_on() -> anyhow::Result<()> {
    let introspect = "{ __schema { queryType { name } } }";
    let dir = tempfile::tempdir()?;
    let mut config = EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        ..common::unlimited()
    };
    config.api.introspection = false;
    let app = start_embedded(config).await?;
    let mut anonymous = Client::new(app.local_addr);
    let body = anonymous.raw(introspect, json!({})).await?;
    assert!(body["data"]["__schema"].is_null(), "{body}");
    let (mut alice, _) = anonymous.register("alice").await?;
    let body = alice.raw(introspect, json!({})).await?;
    assert!(body["data"]["__schema"].is_null(), "{body}");
    // Queries themselves are unaffected.
    assert_eq!(
        alice.ok("{ me { username } }", json!({})).await?["me"]["username"],
        "alice"
    );
    app.stop().await?;

    // On (the embedded mode's default): the schema describes itself.
    let app = common::start(dir.path()).await?;
    let body = Client::new(app.local_addr)
        .ok(introspect, json!({}))
        .await?;
    assert_eq!(body["__schema"]["queryType"]["name"], "QueryRoot");
    app.stop().await?;
    Ok(())
}
