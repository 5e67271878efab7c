//! Pins end to end, in the embedded mode and on the distributed read models (`in_both_modes!`):
//! `pinMessage` and `unpinMessage`, the `pins` connection of a channel and of a conversation,
//! `MessagePinned` and `MessageUnpinned` on `channelEvents`, the per-channel limit, who may pin,
//! and bad input.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig};
use common::{community, newest, send, unlimited, Client, Subscriber};
use serde_json::{json, Value};

const PIN: &str =
    "mutation($m: ID!) { pinMessage(messageId: $m) { id pinnedAt pinnedBy { username } } }";
const UNPIN: &str =
    "mutation($m: ID!) { unpinMessage(messageId: $m) { id pinnedAt pinnedBy { username } } }";
const PINS: &str = "query($c: ID!, $first: Int, $after: String) { channel(id: $c) { pins(first: $first, \
                    after: $after) { pageInfo { hasNextPage endCursor } edges { cursor node { body pinnedBy { username } } } } } }";
const EVENTS: &str = "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, after: $after) { __typename cursor \
     ... on MessagePinned { message { id pinnedAt pinnedBy { username } } } \
     ... on MessageUnpinned { message { id pinnedAt } } } }";

fn bodies(pins: &Value) -> Vec<String> {
    pins["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn the_owner_pins_members_see_it_live_and_in_the_pins_and_members_may_not_pin(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let channel = place.channel_id.clone();
    alice.consistency = newest(&alice.consistency, &bob.consistency);
    alice.ok("{ me { id } }", json!({})).await?;

    let mut watching = Subscriber::connect(addr, bob.token.as_deref().unwrap_or("")).await?;
    watching
        .subscribe("p", EVENTS, json!({ "c": channel, "after": "0" }))
        .await?;
    // Read from the (empty) channel's start: a message stored before the subscription takes its
    // place still arrives.
    let rules = send(&mut alice, &channel, "House rules: be kind").await?;
    assert_eq!(watching.next_event("p").await?["__typename"], "MessageSent");
    let faq = send(&mut bob, &channel, "FAQ: see the wiki").await?;
    assert_eq!(watching.next_event("p").await?["__typename"], "MessageSent");

    // alice (OWNER) pins; the answer and bob's subscription say by whom.
    let pinned = alice.ok(PIN, json!({ "m": rules })).await?;
    assert_eq!(pinned["pinMessage"]["pinnedBy"]["username"], "alice");
    assert!(pinned["pinMessage"]["pinnedAt"].is_string(), "{pinned}");
    let event = watching.next_event("p").await?;
    assert_eq!(event["__typename"], "MessagePinned", "{event}");
    assert_eq!(event["message"]["id"], rules.as_str());
    assert_eq!(event["message"]["pinnedBy"]["username"], "alice");
    // Pinning again changes nothing, and nobody hears of it.
    alice.ok(PIN, json!({ "m": rules })).await?;
    watching.assert_quiet(Duration::from_millis(300)).await?;

    // bob (MEMBER) may not pin, and nothing changes.
    assert_eq!(bob.error_code(PIN, json!({ "m": faq })).await?, "FORBIDDEN");
    assert_eq!(
        bob.error_code(UNPIN, json!({ "m": rules })).await?,
        "FORBIDDEN"
    );

    alice.ok(PIN, json!({ "m": faq })).await?;
    watching.next_event("p").await?;
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let pins = bob.ok(PINS, json!({ "c": channel })).await?;
    assert_eq!(
        bodies(&pins["channel"]["pins"]),
        vec!["FAQ: see the wiki", "House rules: be kind"],
        "the latest pin first"
    );
    // Paged.
    let page = bob.ok(PINS, json!({ "c": channel, "first": 1 })).await?;
    assert_eq!(page["channel"]["pins"]["pageInfo"]["hasNextPage"], true);
    let rest = bob
        .ok(
            PINS,
            json!({ "c": channel, "after": page["channel"]["pins"]["pageInfo"]["endCursor"] }),
        )
        .await?;
    assert_eq!(
        bodies(&rest["channel"]["pins"]),
        vec!["House rules: be kind"]
    );

    // Unpinning: live, and gone from the pins; unpinning again changes nothing.
    let unpinned = alice.ok(UNPIN, json!({ "m": faq })).await?;
    assert_eq!(unpinned["unpinMessage"]["pinnedAt"], Value::Null);
    let event = watching.next_event("p").await?;
    assert_eq!(event["__typename"], "MessageUnpinned", "{event}");
    assert_eq!(event["message"]["pinnedAt"], Value::Null);
    alice.ok(UNPIN, json!({ "m": faq })).await?;
    watching.assert_quiet(Duration::from_millis(300)).await?;
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let pins = bob.ok(PINS, json!({ "c": channel })).await?;
    assert_eq!(
        bodies(&pins["channel"]["pins"]),
        vec!["House rules: be kind"]
    );

    // A pinned message its author deletes leaves the pins, though the author may not unpin.
    let tip = send(&mut bob, &channel, "Bob's pinned tip").await?;
    alice.consistency = newest(&alice.consistency, &bob.consistency);
    alice.ok(PIN, json!({ "m": tip })).await?;
    assert_eq!(
        bob.error_code(UNPIN, json!({ "m": tip })).await?,
        "FORBIDDEN"
    );
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    bob.ok(
        "mutation($m: ID!) { deleteMessage(messageId: $m) { id } }",
        json!({ "m": tip }),
    )
    .await?;
    let pins = bob.ok(PINS, json!({ "c": channel })).await?;
    assert_eq!(
        bodies(&pins["channel"]["pins"]),
        vec!["House rules: be kind"]
    );

    // Bad input and what cannot be seen.
    let (mut mallory, _) = anonymous.register("mallory").await?;
    assert_eq!(
        alice.error_code(PIN, json!({ "m": "nope" })).await?,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        alice
            .error_code(PIN, json!({ "m": "0190a0d4-0000-7000-8000-000000000000" }))
            .await?,
        "NOT_FOUND"
    );
    assert_eq!(
        mallory.error_code(PIN, json!({ "m": faq })).await?,
        "NOT_FOUND"
    );
    // A deleted message is not pinned.
    alice
        .ok(
            "mutation($m: ID!) { deleteMessage(messageId: $m) { id } }",
            json!({ "m": faq }),
        )
        .await?;
    assert_eq!(
        alice.error_code(PIN, json!({ "m": faq })).await?,
        "CONFLICT"
    );
    Ok(())
}

in_both_modes!(the_owner_pins_members_see_it_live_and_in_the_pins_and_members_may_not_pin);

#[tokio::test]
async fn either_participant_pins_in_a_conversation_and_a_channel_holds_the_configured_number(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        ..unlimited()
    };
    config.api.max_pins = 2;
    let app = start_embedded(config).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let opened = alice
        .ok(
            "mutation($u: [ID!]!) { openDirectConversation(userIds: $u) { id } }",
            json!({ "u": [bob_id] }),
        )
        .await?;
    let conversation = opened["openDirectConversation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut messages = Vec::new();
    for n in 1..=3 {
        let sent = alice
            .ok(
                "mutation($c: ID!, $b: String!) { sendMessage(input: {conversationId: $c, body: $b}) { id } }",
                json!({ "c": conversation, "b": format!("note {n}") }),
            )
            .await?;
        messages.push(
            sent["sendMessage"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    bob.ok(PIN, json!({ "m": messages[0] })).await?;
    alice.ok(PIN, json!({ "m": messages[1] })).await?;
    let refused = bob.raw(PIN, json!({ "m": messages[2] })).await?;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "CONFLICT",
        "{refused}"
    );
    let said = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(said.contains("at most 2"), "{said}");
    // An unpin frees a place.
    alice.ok(UNPIN, json!({ "m": messages[0] })).await?;
    bob.ok(PIN, json!({ "m": messages[2] })).await?;
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let pins = bob
        .ok(
            "query($c: ID!) { conversation(id: $c) { pins { edges { node { body pinnedBy { username } } } } } }",
            json!({ "c": conversation }),
        )
        .await?;
    assert_eq!(
        pins["conversation"]["pins"]["edges"],
        json!([
            { "node": { "body": "note 3", "pinnedBy": { "username": "bob" } } },
            { "node": { "body": "note 2", "pinnedBy": { "username": "alice" } } },
        ])
    );
    app.stop().await?;
    Ok(())
}
