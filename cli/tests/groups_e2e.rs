//! Group conversations end to end: people added, removed and leaving, the group named, its
//! owner handing over, what each person then sees and hears, and every refusal. In the
//! embedded mode and on the projectors' read models.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use common::{Client, Subscriber};
use serde_json::{json, Value};

const OPEN: &str = "mutation($u: [ID!]!) { openDirectConversation(userIds: $u) { \
     id isGroup name owner { username } participants { username } } }";

const ADD: &str = "mutation($c: ID!, $u: [ID!]!) { addToConversation(input: \
     {conversationId: $c, userIds: $u}) { id participants { username } } }";

const REMOVE: &str = "mutation($c: ID!, $u: ID!) { removeFromConversation(input: \
     {conversationId: $c, userId: $u}) { id participants { username } } }";

const LEAVE: &str = "mutation($c: ID!) { leaveConversation(conversationId: $c) }";

const RENAME: &str = "mutation($c: ID!, $n: String) { renameConversation(input: \
     {conversationId: $c, name: $n}) { id name } }";

const CONVERSATION: &str = "query($c: ID!) { conversation(id: $c) { id name isGroup \
     owner { username } participants { username } messages(last: 5) { edges { node { body } } } } }";

const SEND: &str = "mutation($c: ID!, $b: String!) { \
     sendMessage(input: {conversationId: $c, body: $b}) { id } }";

const USER_EVENTS: &str = "subscription { userEvents { __typename \
     ... on ConversationChanged { conversation { id name participants { username } } } \
     ... on ConversationLeft { conversationId } } }";

const CONVERSATION_EVENTS: &str =
    "subscription($c: ID!) { conversationEvents(conversationId: $c) { \
     __typename ... on MessageSent { message { body } } } }";

fn usernames(people: &Value) -> Vec<String> {
    let mut names: Vec<String> = people
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|person| person["username"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

async fn groups_change_people_and_names(addr: SocketAddr) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, alice_id) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let (mut carol, carol_id) = anonymous.register("carol").await?;
    let (mut dave, dave_id) = anonymous.register("dave").await?;
    let (mut erin, erin_id) = anonymous.register("erin").await?;

    let opened =
        alice.ok(OPEN, json!({ "u": [bob_id, carol_id] })).await?["openDirectConversation"].clone();
    let group = opened["id"].as_str().context("group id")?.to_owned();
    assert_eq!(opened["isGroup"], true, "{opened}");
    assert_eq!(opened["owner"]["username"], "alice");
    assert_eq!(opened["name"], Value::Null);

    // Bob follows his own news; carol follows the group's messages.
    let mut bobs_feed = Subscriber::connect(addr, bob.token.as_deref().unwrap_or("")).await?;
    bobs_feed.subscribe("news", USER_EVENTS, json!({})).await?;
    let mut carols_feed = Subscriber::connect(addr, carol.token.as_deref().unwrap_or("")).await?;
    carols_feed
        .subscribe("group", CONVERSATION_EVENTS, json!({ "c": group }))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Any participant names it; bob hears of it live.
    let renamed = bob.ok(RENAME, json!({ "c": group, "n": " Trip " })).await?;
    assert_eq!(renamed["renameConversation"]["name"], "Trip");
    let mut news = bobs_feed.next_data("news", "userEvents").await?;
    if news["__typename"] == "ConversationOpened" {
        // The opening itself, when it reached this instance after the subscription began (in
        // the distributed mode news arrive from the projectors, after the mutation's answer).
        news = bobs_feed.next_data("news", "userEvents").await?;
    }
    assert_eq!(news["__typename"], "ConversationChanged", "{news}");
    assert_eq!(news["conversation"]["name"], "Trip", "{news}");

    // Any participant adds people; those already in stay as they are.
    let added = bob
        .ok(ADD, json!({ "c": group, "u": [dave_id, carol_id] }))
        .await?;
    assert_eq!(
        usernames(&added["addToConversation"]["participants"]),
        ["alice", "bob", "carol", "dave"]
    );
    let news = bobs_feed.next_data("news", "userEvents").await?;
    assert_eq!(
        usernames(&news["conversation"]["participants"]),
        ["alice", "bob", "carol", "dave"],
        "{news}"
    );
    // The newcomer reads the history and posts; carol sees it live.
    let seen = dave.ok(CONVERSATION, json!({ "c": group })).await?;
    assert_eq!(seen["conversation"]["name"], "Trip", "{seen}");
    dave.ok(SEND, json!({ "c": group, "b": "hi all" })).await?;
    let event = carols_feed.next_data("group", "conversationEvents").await?;
    assert_eq!(event["message"]["body"], "hi all", "{event}");

    // Only the owner removes others.
    assert_eq!(
        bob.error_code(REMOVE, json!({ "c": group, "u": carol_id }))
            .await?,
        "FORBIDDEN"
    );
    let removed = alice
        .ok(REMOVE, json!({ "c": group, "u": carol_id }))
        .await?;
    assert_eq!(
        usernames(&removed["removeFromConversation"]["participants"]),
        ["alice", "bob", "dave"]
    );
    // Carol's subscription ends at once; she no longer sees the group or posts to it.
    assert_eq!(carols_feed.refusal("group").await?, "FORBIDDEN");
    // Not theirs: as if it did not exist.
    assert_eq!(
        carol.ok(CONVERSATION, json!({ "c": group })).await?["conversation"],
        Value::Null
    );
    let refused = carol
        .error_code(SEND, json!({ "c": group, "b": "still here?" }))
        .await?;
    assert!(
        refused == "NOT_FOUND" || refused == "FORBIDDEN",
        "{refused}"
    );
    // Removing her twice is a clear refusal.
    assert_eq!(
        alice
            .error_code(REMOVE, json!({ "c": group, "u": carol_id }))
            .await?,
        "BAD_USER_INPUT"
    );

    // The owner leaves: the longest-standing participant (bob, there from the start) takes
    // over.
    assert_eq!(
        alice.ok(LEAVE, json!({ "c": group })).await?["leaveConversation"],
        true
    );
    let seen = bob.ok(CONVERSATION, json!({ "c": group })).await?;
    assert_eq!(seen["conversation"]["owner"]["username"], "bob", "{seen}");
    assert_eq!(
        usernames(&seen["conversation"]["participants"]),
        ["bob", "dave"]
    );
    // Not theirs: as if it did not exist.
    assert_eq!(
        alice.ok(CONVERSATION, json!({ "c": group })).await?["conversation"],
        Value::Null
    );

    // The same three people open a group again: the first has changed, so a new one opens,
    // and opening it once more finds that one.
    let again = alice.ok(OPEN, json!({ "u": [bob_id, carol_id] })).await?["openDirectConversation"]
        ["id"]
        .clone();
    assert_ne!(again, group.as_str());
    let once_more = carol.ok(OPEN, json!({ "u": [alice_id, bob_id] })).await?
        ["openDirectConversation"]["id"]
        .clone();
    assert_eq!(once_more, again);

    // A name is 1–100 visible characters; blank clears it.
    assert_eq!(
        bob.error_code(RENAME, json!({ "c": group, "n": "x".repeat(101) }))
            .await?,
        "BAD_USER_INPUT"
    );
    let cleared = bob.ok(RENAME, json!({ "c": group, "n": "  " })).await?;
    assert_eq!(cleared["renameConversation"]["name"], Value::Null);

    // Outsiders learn nothing; bad ids and lists are refused.
    for (query, variables) in [
        (RENAME, json!({ "c": group, "n": "mine" })),
        (ADD, json!({ "c": group, "u": [erin_id] })),
        (LEAVE, json!({ "c": group })),
    ] {
        assert_eq!(erin.error_code(query, variables).await?, "NOT_FOUND");
    }
    let unknown = "0190a000-0000-7000-8000-000000000000";
    for (query, variables, code) in [
        (ADD, json!({ "c": group, "u": [unknown] }), "NOT_FOUND"),
        (ADD, json!({ "c": group, "u": [] }), "BAD_USER_INPUT"),
        (
            ADD,
            json!({ "c": "nope", "u": [erin_id] }),
            "BAD_USER_INPUT",
        ),
        (
            ADD,
            json!({ "c": group, "u": vec![erin_id.clone(); 51] }),
            "BAD_USER_INPUT",
        ),
        (REMOVE, json!({ "c": group, "u": "nope" }), "BAD_USER_INPUT"),
    ] {
        assert_eq!(
            bob.error_code(query, variables.clone()).await?,
            code,
            "{variables}"
        );
    }
    assert_eq!(
        anonymous.error_code(LEAVE, json!({ "c": group })).await?,
        "UNAUTHENTICATED"
    );

    // A one-to-one conversation stays between its two people.
    let pair = alice.ok(OPEN, json!({ "u": [erin_id] })).await?["openDirectConversation"].clone();
    assert_eq!(pair["isGroup"], false, "{pair}");
    assert_eq!(pair["owner"], Value::Null, "{pair}");
    let pair = pair["id"].as_str().context("pair id")?;
    for (query, variables) in [
        (ADD, json!({ "c": pair, "u": [dave_id] })),
        (LEAVE, json!({ "c": pair })),
        (RENAME, json!({ "c": pair, "n": "us" })),
    ] {
        assert_eq!(alice.error_code(query, variables).await?, "BAD_USER_INPUT");
    }
    Ok(())
}

in_both_modes!(groups_change_people_and_names);
