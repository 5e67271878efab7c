//! Rate limits end to end through the embedded application: a user flooding mutations or
//! guessing passwords is throttled with `RATE_LIMITED` and a retry hint, another user is not,
//! and every message the server accepted is kept.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig, Running};
use aether_query_api::rate::{Rate, RateLimits};
use aether_query_api::ApiLimits;
use common::{community, send, Client};
use futures::future::join_all;
use serde_json::{json, Value};

async fn start_limited(dir: &std::path::Path) -> anyhow::Result<Running> {
    let config = EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        api: ApiLimits {
            rates: RateLimits {
                mutations_per_user: Rate::new(5.0, 10),
                // Every test client shares 127.0.0.1: limit users, not the address.
                mutations_per_ip: Rate::unlimited(),
                logins_per_ip: Rate::new(5.0, 40),
                logins_per_username: Rate::new(0.1, 5),
                subscribes_per_connection: Rate::new(1.0, 3),
                ..RateLimits::default()
            },
            ..ApiLimits::default()
        },
        ..EmbeddedConfig::default()
    };
    Ok(start_embedded(config).await?)
}

const SEND: &str =
    "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id body } }";

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

#[tokio::test]
async fn a_flooding_user_is_throttled_while_another_is_not_and_nothing_accepted_is_lost(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_limited(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut mallory, _) = anonymous.register("mallory").await?;
    let place = community(&mut alice, &mut mallory).await?;
    // Let the buckets refill after the set-up's mutations.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Mallory fires 200 messages at once; alice sends 8, one every 300 ms, meanwhile.
    let flood = join_all((0..200).map(|n| {
        let mut mallory = mallory.clone();
        let channel = place.channel_id.clone();
        async move {
            mallory
                .raw(SEND, json!({ "c": channel, "b": format!("flood {n}") }))
                .await
        }
    }));
    let steady = async {
        let mut answers = Vec::new();
        for n in 0..8 {
            let mut alice = alice.clone();
            answers.push(
                alice
                    .raw(
                        SEND,
                        json!({ "c": place.channel_id, "b": format!("alice {n}") }),
                    )
                    .await,
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        answers
    };
    let (flooded, steady) = tokio::join!(flood, steady);

    let mut accepted = Vec::new();
    let mut throttled = 0;
    for answer in flooded {
        let answer = answer?;
        match code(&answer) {
            None => accepted.push(
                answer["data"]["sendMessage"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            Some("RATE_LIMITED") => {
                throttled += 1;
                let retry = answer["errors"][0]["extensions"]["retryAfterMs"].as_u64();
                assert!(retry.is_some_and(|ms| ms > 0 && ms <= 1_000), "{answer}");
            }
            Some(other) => anyhow::bail!("unexpected {other}: {answer}"),
        }
    }
    assert!(throttled >= 150, "only {throttled} of 200 throttled");
    assert!(
        accepted.len() >= 10,
        "the burst passes: {} accepted",
        accepted.len()
    );
    for answer in steady {
        let answer = answer?;
        assert_eq!(code(&answer), None, "alice was throttled: {answer}");
        accepted.push(
            answer["data"]["sendMessage"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }

    // Every accepted message is in the channel, and nothing else.
    let history = alice
        .ok(
            "query($c: ID!) { channel(id: $c) { messages(first: 100) { edges { node { body } } } } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    let mut stored: Vec<String> = history["channel"]["messages"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|edge| edge["node"]["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    stored.sort();
    accepted.sort();
    assert_eq!(stored, accepted);
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn password_guessing_is_throttled_per_account() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_limited(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    anonymous.register("alice").await?;
    anonymous.register("bob").await?;
    let login = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { accessToken } }";

    let mut codes = Vec::new();
    for n in 0..12 {
        let answer = anonymous
            .raw(login, json!({ "u": "alice", "p": format!("guess {n}") }))
            .await?;
        codes.push(code(&answer).unwrap_or("OK").to_owned());
    }
    assert_eq!(codes[..5], ["UNAUTHENTICATED"; 5], "{codes:?}");
    assert!(codes[5..].iter().all(|c| c == "RATE_LIMITED"), "{codes:?}");
    // Even the right password waits: the account's bucket is empty.
    let right = anonymous
        .raw(login, json!({ "u": "alice", "p": "correct horse" }))
        .await?;
    assert_eq!(code(&right), Some("RATE_LIMITED"));
    // Another account from the same address signs in.
    let bob = anonymous
        .raw(login, json!({ "u": "bob", "p": "correct horse" }))
        .await?;
    assert_eq!(code(&bob), None, "{bob}");
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn connection_and_subscription_limits_refuse_clearly_and_free_up() -> anyhow::Result<()> {
    use aether_realtime_edge::http::HttpLimits;
    use common::{Subscriber, CHANNEL_EVENTS};

    let dir = tempfile::tempdir()?;
    let config = EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        http: HttpLimits {
            max_connections: 2,
            max_subscriptions_per_connection: 2,
            ..HttpLimits::default()
        },
        ..EmbeddedConfig::default()
    };
    let app = start_embedded(config).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let token = bob.token.clone().unwrap_or_default();

    // Two subscriptions on one connection; the third is refused, and ending one frees a place.
    let mut first = Subscriber::connect(app.local_addr, &token).await?;
    for id in ["1", "2"] {
        first
            .subscribe(
                id,
                CHANNEL_EVENTS,
                json!({ "c": place.channel_id, "after": "0" }),
            )
            .await?;
    }
    // Subscriptions start concurrently: let the first two take their places.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first
        .subscribe("3", CHANNEL_EVENTS, json!({ "c": place.channel_id }))
        .await?;
    let refused = first.next_message().await?;
    assert_eq!(refused["id"], "3", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused}"
    );
    first.send(json!({ "id": "1", "type": "complete" })).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // From the channel's start, so the message reaches it however long it takes to start.
    first
        .subscribe(
            "4",
            CHANNEL_EVENTS,
            json!({ "c": place.channel_id, "after": "0" }),
        )
        .await?;
    send(&mut alice, &place.channel_id, "fits").await?;
    // Subscriptions 2 and 4 both get it, in either order.
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let message = first.next_message().await?;
        // `complete` frames of the refused and the ended subscription may come first.
        if message["type"] != "next" {
            continue;
        }
        assert!(message["payload"].get("errors").is_none(), "{message}");
        if message["payload"]["data"]["channelEvents"]["message"]["body"] != "fits" {
            continue;
        }
        ids.push(message["id"].as_str().unwrap_or_default().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["2", "4"]);

    // Two connections are the most; a third is refused with 503 and a reason.
    let second = Subscriber::connect(app.local_addr, &token).await?;
    let third = Subscriber::connect(app.local_addr, &token).await;
    let error = third.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("503"), "{error}");
    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _again = Subscriber::connect(app.local_addr, &token).await?;
    drop(first);
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn too_many_aliases_and_oversized_websocket_messages_are_refused() -> anyhow::Result<()> {
    use common::Subscriber;

    let dir = tempfile::tempdir()?;
    let app = start_limited(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;

    let aliased = |n: usize| {
        let fields: Vec<String> = (0..n).map(|i| format!("a{i}: me {{ id }}")).collect();
        format!("{{ {} }}", fields.join(" "))
    };
    let within = alice.raw(&aliased(30), json!({})).await?;
    assert_eq!(code(&within), None, "{within}");
    let over = alice.raw(&aliased(31), json!({})).await?;
    assert_eq!(code(&over), Some("BAD_USER_INPUT"), "{over}");
    assert!(over["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("aliases"));

    // A WebSocket message over 64 KiB closes the connection; the server goes on serving.
    let token = alice.token.clone().unwrap_or_default();
    let mut socket = Subscriber::connect(app.local_addr, &token).await?;
    socket
        .send(json!({ "id": "x", "type": "subscribe", "payload": { "query": "x".repeat(100 * 1024) } }))
        .await?;
    let closed = socket.next_message().await;
    assert!(closed.is_err(), "still open: {closed:?}");
    let mut again = Subscriber::connect(app.local_addr, &token).await?;
    again
        .subscribe(
            "ok",
            "subscription($c: ID!) { typing(channelId: $c) { typing } }",
            json!({ "c": "not-an-id" }),
        )
        .await?;
    let answer = again.next_message().await?;
    assert_eq!(
        answer["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{answer}"
    );
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_connection_starting_subscriptions_too_fast_is_throttled() -> anyhow::Result<()> {
    use common::{Subscriber, CHANNEL_EVENTS};

    let dir = tempfile::tempdir()?;
    let app = start_limited(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let token = bob.token.clone().unwrap_or_default();
    let mut socket = Subscriber::connect(app.local_addr, &token).await?;
    // Three at once pass (the burst); a fourth at once is refused with a retry hint.
    for id in ["1", "2", "3", "4"] {
        socket
            .subscribe(id, CHANNEL_EVENTS, json!({ "c": place.channel_id }))
            .await?;
    }
    let mut throttled = None;
    for _ in 0..8 {
        let message = socket.next_message().await?;
        if message["payload"]["errors"][0]["extensions"]["code"] == "RATE_LIMITED" {
            throttled = Some(message);
            break;
        }
    }
    let throttled = throttled.ok_or_else(|| anyhow::anyhow!("no subscription was throttled"))?;
    // Subscriptions start concurrently: any one of the four may be the one refused.
    assert!(throttled["id"].is_string(), "{throttled}");
    let retry = throttled["payload"]["errors"][0]["extensions"]["retryAfterMs"].as_u64();
    assert!(retry.is_some_and(|ms| ms > 0 && ms <= 1_000), "{throttled}");
    // Another connection has its own budget.
    let mut other = Subscriber::connect(app.local_addr, &token).await?;
    other
        .subscribe("1", CHANNEL_EVENTS, json!({ "c": place.channel_id }))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&mut alice, &place.channel_id, "heard").await?;
    let heard = other.next_event("1").await?;
    assert_eq!(heard["message"]["body"], "heard");
    app.stop().await?;
    Ok(())
}
