//! Blocking a person: their messages reach the one who blocked them without words, in queries
//! and live (while everyone else's live copy keeps them), quotes of them too, and no direct
//! message passes between the two. In the embedded mode and on the projectors' read models.

mod common;

use std::net::SocketAddr;

use anyhow::Context;
use common::{community, send, Client, Subscriber};
use serde_json::{json, Value};

const BLOCK: &str = "mutation($u: ID!) { blockUser(userId: $u) }";
const UNBLOCK: &str = "mutation($u: ID!) { unblockUser(userId: $u) }";
const BLOCKED: &str = "{ blockedUsers { username } }";
const LIVE: &str = "subscription($c: ID!) { channelEvents(channelId: $c) { __typename \
     ... on MessageSent { message { body authorBlocked author { username } \
     replyTo { excerpt author { username } } } } } }";
const MESSAGES: &str = "query($c: ID!) { channel(id: $c) { messages(first: 50) { edges { node { \
     body authorBlocked author { username } replyTo { excerpt } } } } } }";
const SEND_REPLY: &str = "mutation($c: ID!, $b: String!, $r: ID!) { \
     sendMessage(input: {channelId: $c, body: $b, replyToId: $r}) { id } }";
const SEND_DIRECT: &str = "mutation($c: ID!, $b: String!) { \
     sendMessage(input: {conversationId: $c, body: $b}) { id } }";

/// The next `MessageSent` a subscriber hears, as its `message`.
async fn next_message(subscriber: &mut Subscriber) -> anyhow::Result<Value> {
    loop {
        let frame = subscriber.next_message().await?;
        anyhow::ensure!(frame["type"] == "next", "unexpected frame {frame}");
        let event = &frame["payload"]["data"]["channelEvents"];
        if event["__typename"] == "MessageSent" {
            return Ok(event["message"].clone());
        }
    }
}

fn usernames(data: &Value) -> Vec<&str> {
    data["blockedUsers"]
        .as_array()
        .map(|users| {
            users
                .iter()
                .filter_map(|u| u["username"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

async fn blocking_hides_words_and_stops_direct_messages(addr: SocketAddr) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, alice_id) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let (mut carol, _) = anonymous.register("carol").await?;
    let place = community(&mut alice, &mut bob).await?;
    let invite = alice
        .ok(
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": place.server_id }),
        )
        .await?;
    carol.consistency = alice.consistency.clone();
    carol
        .ok(
            "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
            json!({ "c": invite["createInvite"]["code"] }),
        )
        .await?;
    let direct = bob
        .ok(
            "mutation($u: ID!) { openDirectConversation(userIds: [$u]) { id } }",
            json!({ "u": alice_id }),
        )
        .await?;
    let direct = direct["openDirectConversation"]["id"]
        .as_str()
        .context("conversation id")?
        .to_owned();

    // Refusals first: nothing is blocked by them.
    let code = bob.error_code(BLOCK, json!({ "u": bob_id })).await?;
    assert_eq!(code, "BAD_USER_INPUT", "nobody blocks themselves");
    let stranger = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        bob.error_code(BLOCK, json!({ "u": stranger })).await?,
        "NOT_FOUND"
    );
    assert_eq!(
        bob.error_code(BLOCK, json!({ "u": "not-an-id" })).await?,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        anonymous
            .error_code(BLOCK, json!({ "u": alice_id }))
            .await?,
        "UNAUTHENTICATED"
    );
    assert_eq!(
        usernames(&bob.ok(BLOCKED, json!({})).await?),
        Vec::<&str>::new()
    );

    // Both watch the channel; bob blocks alice (twice: the second changes nothing).
    let token = |client: &Client| client.token.clone().unwrap_or_default();
    let mut bob_live = Subscriber::connect(addr, &token(&bob)).await?;
    let mut carol_live = Subscriber::connect(addr, &token(&carol)).await?;
    for live in [&mut bob_live, &mut carol_live] {
        live.subscribe("1", LIVE, json!({ "c": place.channel_id }))
            .await?;
    }
    for _ in 0..2 {
        let blocked = bob.ok(BLOCK, json!({ "u": alice_id })).await?;
        assert_eq!(blocked["blockUser"], true, "{blocked}");
    }
    assert_eq!(usernames(&bob.ok(BLOCKED, json!({})).await?), ["alice"]);
    // Let the subscriptions take their places before anything is sent.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // alice writes; carol quotes her.
    let from_alice = send(&mut alice, &place.channel_id, "words bob will not read").await?;
    carol.consistency = alice.consistency.clone();
    carol
        .ok(
            SEND_REPLY,
            json!({ "c": place.channel_id, "b": "quoting alice", "r": from_alice }),
        )
        .await?;

    let heard = next_message(&mut bob_live).await?;
    assert_eq!(heard["author"]["username"], "alice", "{heard}");
    assert_eq!(heard["body"], "", "{heard}");
    assert_eq!(heard["authorBlocked"], true, "{heard}");
    let quoted = next_message(&mut bob_live).await?;
    assert_eq!(quoted["body"], "quoting alice", "{quoted}");
    assert_eq!(quoted["authorBlocked"], false, "{quoted}");
    assert_eq!(quoted["replyTo"]["excerpt"], "", "{quoted}");
    assert_eq!(quoted["replyTo"]["author"]["username"], "alice", "{quoted}");

    let heard = next_message(&mut carol_live).await?;
    assert_eq!(heard["body"], "words bob will not read", "{heard}");
    assert_eq!(heard["authorBlocked"], false, "{heard}");
    let quoted = next_message(&mut carol_live).await?;
    assert_eq!(quoted["replyTo"]["excerpt"], "words bob will not read");

    // The history says the same to each.
    bob.consistency = carol.consistency.clone();
    let history = bob.ok(MESSAGES, json!({ "c": place.channel_id })).await?;
    let nodes: Vec<&Value> = history["channel"]["messages"]["edges"]
        .as_array()
        .context("edges")?
        .iter()
        .map(|edge| &edge["node"])
        .collect();
    let alices = nodes
        .iter()
        .find(|node| node["author"]["username"] == "alice")
        .context("alice's message")?;
    assert_eq!(alices["body"], "", "{history}");
    assert_eq!(alices["authorBlocked"], true, "{history}");
    let carols = nodes
        .iter()
        .find(|node| node["author"]["username"] == "carol")
        .context("carol's message")?;
    assert_eq!(carols["replyTo"]["excerpt"], "", "{history}");

    // No direct message either way; alice is not told who blocked whom beyond that.
    let code = alice
        .error_code(SEND_DIRECT, json!({ "c": direct, "b": "hello?" }))
        .await?;
    assert_eq!(code, "FORBIDDEN");
    let code = bob
        .error_code(SEND_DIRECT, json!({ "c": direct, "b": "hi" }))
        .await?;
    assert_eq!(code, "FORBIDDEN");

    // Unblocked: the words come back, direct messages flow.
    let unblocked = bob.ok(UNBLOCK, json!({ "u": alice_id })).await?;
    assert_eq!(unblocked["unblockUser"], false, "{unblocked}");
    assert_eq!(
        usernames(&bob.ok(BLOCKED, json!({})).await?),
        Vec::<&str>::new()
    );
    let history = bob.ok(MESSAGES, json!({ "c": place.channel_id })).await?;
    let bodies: Vec<&str> = history["channel"]["messages"]["edges"]
        .as_array()
        .context("edges")?
        .iter()
        .filter_map(|edge| edge["node"]["body"].as_str())
        .collect();
    assert!(bodies.contains(&"words bob will not read"), "{history}");
    alice.consistency = bob.consistency.clone();
    alice
        .ok(SEND_DIRECT, json!({ "c": direct, "b": "hello again" }))
        .await?;
    Ok(())
}

in_both_modes!(blocking_hides_words_and_stops_direct_messages);
