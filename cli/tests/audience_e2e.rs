//! Channel events are serialized once per audience (subscribers of one edge with the same
//! subscription document and variables), each subscriber still getting its own framing; and the
//! edge's own `graphql-transport-ws` handling refuses what the protocol forbids with its close
//! codes.

mod common;

use std::time::Duration;

use aether_realtime_edge::http::HttpLimits;
use common::{
    community, newest, send, start, start_with_http, unlimited, Client, Subscriber, CHANNEL_EVENTS,
};
use serde_json::json;

const CURSORS_ONLY: &str =
    "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, after: $after) { cursor } }";

#[tokio::test]
async fn subscribers_with_the_same_document_share_each_events_payload() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    bob.consistency = newest(&alice.consistency, &bob.consistency);
    bob.ok("{ me { id } }", json!({})).await?;
    let (alice_token, bob_token) = (
        alice.token.clone().unwrap_or_default(),
        bob.token.clone().unwrap_or_default(),
    );

    // One audience of three subscribers (two people, three connections, different ids) and a
    // second audience of one, whose document asks for less.
    let variables = json!({ "c": place.channel_id, "after": "0" });
    let mut same = Vec::new();
    for (token, id) in [(&bob_token, "1"), (&bob_token, "7"), (&alice_token, "x")] {
        let mut subscriber = Subscriber::connect(app.local_addr, token).await?;
        subscriber
            .subscribe(id, CHANNEL_EVENTS, variables.clone())
            .await?;
        same.push((subscriber, id));
    }
    let mut cursors = Subscriber::connect(app.local_addr, &alice_token).await?;
    cursors.subscribe("c", CURSORS_ONLY, variables).await?;
    let before = app.audience_stats();

    let bodies: Vec<String> = (1..=5).map(|n| format!("message {n}")).collect();
    let mut ids = Vec::new();
    for body in &bodies {
        ids.push(send(&mut alice, &place.channel_id, body).await?);
    }

    for (subscriber, id) in &mut same {
        for (n, (body, message_id)) in bodies.iter().zip(&ids).enumerate() {
            let event = subscriber.next_event(id).await?;
            assert_eq!(event["__typename"], "MessageSent", "{event}");
            assert_eq!(event["cursor"], (n + 1).to_string(), "{event}");
            assert_eq!(event["message"]["body"], body.as_str(), "{event}");
            assert_eq!(event["message"]["id"], message_id.as_str(), "{event}");
            assert_eq!(event["message"]["author"]["username"], "alice", "{event}");
        }
    }
    for n in 1..=5 {
        let event = cursors.next_event("c").await?;
        assert_eq!(event, json!({ "cursor": n.to_string() }));
    }

    // Five events, two audiences: ten payloads serialized for twenty deliveries.
    let after = app.audience_stats();
    assert_eq!(after.serialized - before.serialized, 10, "{after:?}");
    assert_eq!(after.delivered - before.delivered, 20, "{after:?}");

    // A subscriber that joins later with the same document resumes from the shared payloads.
    let mut late = Subscriber::connect(app.local_addr, &bob_token).await?;
    late.subscribe(
        "late",
        CHANNEL_EVENTS,
        json!({ "c": place.channel_id, "after": "3" }),
    )
    .await?;
    for body in &bodies[3..] {
        let event = late.next_event("late").await?;
        assert_eq!(event["message"]["body"], body.as_str(), "{event}");
    }
    let resumed = app.audience_stats();
    assert_eq!(resumed.serialized, after.serialized, "{resumed:?}");
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_protocol_refuses_what_graphql_transport_ws_forbids() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let http = HttpLimits {
        ws_init_timeout: Duration::from_millis(500),
        ..unlimited().http
    };
    let app = start_with_http(dir.path(), http).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (alice, _) = anonymous.register("alice").await?;
    let token = alice.token.clone().unwrap_or_default();
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { userEvents { __typename } }" } });

    // Nothing at all, for longer than the initialisation timeout: 4408.
    let mut silent = Subscriber::open(app.local_addr).await?;
    let (code, reason) = silent.close_frame().await?;
    assert_eq!(code, 4408, "{reason}");

    // Subscribing before connection_init: 4401.
    let mut early = Subscriber::open(app.local_addr).await?;
    early.send(subscribe.clone()).await?;
    assert_eq!(early.close_frame().await?.0, 4401);

    // A second connection_init: 4429.
    let mut twice = Subscriber::connect(app.local_addr, &token).await?;
    twice
        .send(json!({ "type": "connection_init", "payload": {} }))
        .await?;
    assert_eq!(twice.close_frame().await?.0, 4429);

    // Two subscriptions with one id: 4409.
    let mut duplicate = Subscriber::connect(app.local_addr, &token).await?;
    duplicate.send(subscribe.clone()).await?;
    duplicate.send(subscribe.clone()).await?;
    let (code, reason) = duplicate.close_frame().await?;
    assert_eq!(code, 4409, "{reason}");

    // Something that is not a protocol message: 4400, saying what was wrong.
    let mut garbled = Subscriber::connect(app.local_addr, &token).await?;
    garbled.send_text("{\"type\": \"subscribe\"").await?;
    let (code, reason) = garbled.close_frame().await?;
    assert_eq!(code, 4400);
    assert!(reason.contains("graphql-transport-ws"), "{reason}");

    // A bad token in connection_init: 4403, with the reason.
    let mut forged = Subscriber::open(app.local_addr).await?;
    forged
        .send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged" } }))
        .await?;
    assert_eq!(forged.close_frame().await?.0, 4403);

    // Ping gets pong; complete ends a subscription with complete.
    let mut fine = Subscriber::connect(app.local_addr, &token).await?;
    fine.send(json!({ "type": "ping" })).await?;
    assert_eq!(fine.next_message().await?["type"], "pong");
    fine.send(subscribe).await?;
    fine.send(json!({ "id": "1", "type": "complete" })).await?;
    let done = fine.next_message().await?;
    assert_eq!(
        (done["type"].as_str(), done["id"].as_str()),
        (Some("complete"), Some("1"))
    );
    app.stop().await?;
    Ok(())
}
