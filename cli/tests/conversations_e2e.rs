//! Direct conversations end to end through the embedded application: opening one (1:1 and
//! group), messages in it, who may see and post, `conversationEvents` with resume, the
//! `userEvents` notice, read state, and a restart.

mod common;

use anyhow::Context;
use common::{start, Client, Subscriber};
use serde_json::{json, Value};

const OPEN: &str = "mutation($u: [ID!]!) { openDirectConversation(userIds: $u) { \
     id participants { username } openedBy { username } } }";

const SEND: &str = "mutation($c: ID!, $b: String!) { \
     sendMessage(input: {conversationId: $c, body: $b}) { id channelId conversationId body } }";

const CONVERSATION: &str = "query($c: ID!) { conversation(id: $c) { id \
     participants { username } readState { unreadCount lastReadSequence } \
     messages(first: 50) { edges { cursor node { id body deleted conversationId channelId } } } } }";

const CONVERSATION_EVENTS: &str =
    "subscription($c: ID!, $after: String) { conversationEvents(conversationId: $c, after: $after) { \
     __typename cursor ... on MessageSent { message { id body conversationId channelId author { username } } } \
     ... on MessageEdited { message { id body } } ... on MessageDeleted { messageId } } }";

const USER_EVENTS: &str = "subscription { userEvents { __typename \
     ... on ConversationOpened { conversation { id participants { username } } } } }";

async fn open(client: &mut Client, others: &[&str]) -> anyhow::Result<Value> {
    let data = client.ok(OPEN, json!({ "u": others })).await?;
    Ok(data["openDirectConversation"].clone())
}

async fn send(client: &mut Client, conversation: &str, body: &str) -> anyhow::Result<Value> {
    let data = client
        .ok(SEND, json!({ "c": conversation, "b": body }))
        .await?;
    Ok(data["sendMessage"].clone())
}

fn usernames(people: &Value) -> Vec<&str> {
    people
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|person| person["username"].as_str())
        .collect()
}

#[tokio::test]
async fn two_people_talk_in_a_conversation_nobody_else_can_see() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let (mut carol, carol_id) = anonymous.register("carol").await?;

    // Bob hears of the conversation on his own feed the moment alice opens it.
    let mut bobs_feed =
        Subscriber::connect(app.local_addr, bob.token.as_deref().unwrap_or("")).await?;
    bobs_feed.subscribe("news", USER_EVENTS, json!({})).await?;
    // Let the subscription start before the mutation.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let opened = open(&mut alice, &[&bob_id]).await?;
    let id = opened["id"].as_str().context("conversation id")?.to_owned();
    assert_eq!(usernames(&opened["participants"]).len(), 2, "{opened}");
    assert!(usernames(&opened["participants"]).contains(&"bob"));
    assert_eq!(opened["openedBy"]["username"], "alice");
    let news = bobs_feed.next_data("news", "userEvents").await?;
    assert_eq!(news["__typename"], "ConversationOpened", "{news}");
    assert_eq!(news["conversation"]["id"], id.as_str());

    // Opening it again, from either side, finds the same conversation.
    let again = open(&mut bob, &[&alice_id(&mut alice).await?]).await?;
    assert_eq!(again["id"], id.as_str());
    bobs_feed
        .assert_quiet(std::time::Duration::from_millis(300))
        .await?;

    // Bob follows the conversation; alice's message reaches him, marked as a conversation's.
    bobs_feed
        .subscribe("dm", CONVERSATION_EVENTS, json!({ "c": id }))
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let hello = send(&mut alice, &id, "hi bob").await?;
    assert_eq!(hello["conversationId"], id.as_str(), "{hello}");
    assert_eq!(hello["channelId"], Value::Null);
    let event = bobs_feed.next_data("dm", "conversationEvents").await?;
    assert_eq!(event["__typename"], "MessageSent", "{event}");
    assert_eq!(event["message"]["body"], "hi bob");
    assert_eq!(event["message"]["author"]["username"], "alice");
    assert_eq!(event["message"]["conversationId"], id.as_str());
    let reply = send(&mut bob, &id, "hi alice").await?;
    let event = bobs_feed.next_data("dm", "conversationEvents").await?;
    assert_eq!(event["message"]["id"], reply["id"]);

    // Carol is not in it: she sees nothing and can do nothing there.
    let message_id = hello["id"].as_str().context("message id")?.to_owned();
    let seen = carol.ok(CONVERSATION, json!({ "c": id })).await?;
    assert_eq!(seen["conversation"], Value::Null);
    let seen = carol
        .ok(
            "query($m: ID!) { message(id: $m) { id } }",
            json!({ "m": message_id }),
        )
        .await?;
    assert_eq!(seen["message"], Value::Null);
    assert_eq!(
        carol
            .error_code(SEND, json!({ "c": id, "b": "let me in" }))
            .await?,
        "FORBIDDEN"
    );
    assert_eq!(
        carol
            .error_code(
                "mutation($c: ID!, $m: ID!) { markRead(input: {conversationId: $c, messageId: $m}) { unreadCount } }",
                json!({ "c": id, "m": message_id }),
            )
            .await?,
        "FORBIDDEN"
    );
    let mut carols_feed =
        Subscriber::connect(app.local_addr, carol.token.as_deref().unwrap_or("")).await?;
    carols_feed
        .subscribe("spy", CONVERSATION_EVENTS, json!({ "c": id }))
        .await?;
    let refused = carols_feed.next_message().await?;
    assert_eq!(refused["id"], "spy", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{refused}"
    );
    // Nobody moderates a conversation: bob cannot delete alice's words, alice can.
    assert_eq!(
        bob.error_code(
            "mutation($m: ID!) { deleteMessage(messageId: $m) { id } }",
            json!({ "m": message_id }),
        )
        .await?,
        "FORBIDDEN"
    );
    alice
        .ok(
            "mutation($m: ID!, $b: String!) { editMessage(input: {messageId: $m, body: $b}) { id } }",
            json!({ "m": message_id, "b": "hi bob!" }),
        )
        .await?;
    let edited = bobs_feed.next_data("dm", "conversationEvents").await?;
    assert_eq!(edited["__typename"], "MessageEdited");
    assert_eq!(edited["message"]["body"], "hi bob!");

    // Bob's badge: alice's one message is unread until he marks it read.
    bob.consistency = alice.consistency.clone();
    let state = bob.ok(CONVERSATION, json!({ "c": id })).await?;
    assert_eq!(
        state["conversation"]["readState"]["unreadCount"], 1,
        "{state}"
    );
    assert_eq!(
        state["conversation"]["messages"]["edges"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let marked = bob
        .ok(
            "mutation($c: ID!, $m: ID!) { markRead(input: {conversationId: $c, messageId: $m}) { unreadCount lastReadSequence } }",
            json!({ "c": id, "m": reply["id"] }),
        )
        .await?;
    assert_eq!(marked["markRead"]["unreadCount"], 0, "{marked}");
    assert_eq!(marked["markRead"]["lastReadSequence"], 2);

    // A group of three is another conversation; bob lists both, newest first.
    let group = open(&mut alice, &[&bob_id, &carol_id]).await?;
    assert_ne!(group["id"], id.as_str());
    assert_eq!(usernames(&group["participants"]).len(), 3);
    let news = bobs_feed.next_data("news", "userEvents").await?;
    assert_eq!(news["conversation"]["id"], group["id"]);
    bob.consistency = alice.consistency.clone();
    let listed = bob.ok("{ conversations { id } }", json!({})).await?;
    let listed: Vec<&str> = listed["conversations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&id.as_str()));

    // Everything is in the log: a restart serves the same conversation and history.
    drop(bobs_feed);
    drop(carols_feed);
    app.stop().await?;
    let app = start(dir.path()).await?;
    let mut bob = Client::new(app.local_addr).with_token(bob.token.as_deref().unwrap_or(""));
    let after = bob.ok(CONVERSATION, json!({ "c": id })).await?;
    let bodies: Vec<&str> = after["conversation"]["messages"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["hi bob!", "hi alice"], "{after}");
    assert_eq!(after["conversation"]["readState"]["unreadCount"], 0);
    app.stop().await?;
    Ok(())
}

async fn alice_id(alice: &mut Client) -> anyhow::Result<String> {
    let me = alice.ok("{ me { id } }", json!({})).await?;
    Ok(me["me"]["id"].as_str().context("my id")?.to_owned())
}

#[tokio::test]
async fn a_reconnecting_participant_gets_exactly_what_it_missed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (bob, bob_id) = anonymous.register("bob").await?;
    let opened = open(&mut alice, &[&bob_id]).await?;
    let id = opened["id"].as_str().context("conversation id")?.to_owned();
    let token = bob.token.clone().unwrap_or_default();

    let mut feed = Subscriber::connect(app.local_addr, &token).await?;
    feed.subscribe("dm", CONVERSATION_EVENTS, json!({ "c": id }))
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    send(&mut alice, &id, "before the tunnel").await?;
    let first = feed.next_data("dm", "conversationEvents").await?;
    let cursor = first["cursor"].as_str().context("cursor")?.to_owned();
    drop(feed);

    let mut missed = Vec::new();
    for n in 1..=20 {
        missed.push(send(&mut alice, &id, &format!("missed {n}")).await?["id"].clone());
    }
    let mut feed = Subscriber::connect(app.local_addr, &token).await?;
    feed.subscribe(
        "dm",
        CONVERSATION_EVENTS,
        json!({ "c": id, "after": cursor }),
    )
    .await?;
    for expected in &missed {
        let event = feed.next_data("dm", "conversationEvents").await?;
        assert_eq!(&event["message"]["id"], expected, "{event}");
    }
    feed.assert_quiet(std::time::Duration::from_millis(300))
        .await?;
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn opening_a_conversation_refuses_bad_people_lists() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, alice_id) = anonymous.register("alice").await?;
    let (_, bob_id) = anonymous.register("bob").await?;

    let unknown = "0190a000-0000-7000-8000-000000000000";
    for (people, code) in [
        (json!([]), "BAD_USER_INPUT"),
        (json!([alice_id]), "BAD_USER_INPUT"),
        (json!(["not-an-id"]), "BAD_USER_INPUT"),
        (json!([bob_id, unknown]), "NOT_FOUND"),
        (json!(vec![bob_id.clone(); 51]), "BAD_USER_INPUT"),
    ] {
        let got = alice.error_code(OPEN, json!({ "u": people })).await?;
        assert_eq!(got, code, "{people}");
    }
    // Fifty people in all is the limit: forty-nine others who exist.
    let mut others = Vec::new();
    for n in 0..49 {
        others.push(anonymous.register(&format!("friend{n}")).await?.1);
    }
    let refs: Vec<&str> = others.iter().map(String::as_str).collect();
    let big = open(&mut alice, &refs).await?;
    assert_eq!(usernames(&big["participants"]).len(), 50);
    let mut fifty_one = refs.clone();
    fifty_one.push(&bob_id);
    assert_eq!(
        alice.error_code(OPEN, json!({ "u": fifty_one })).await?,
        "BAD_USER_INPUT"
    );
    // Signed out.
    assert_eq!(
        anonymous.error_code(OPEN, json!({ "u": [bob_id] })).await?,
        "UNAUTHENTICATED"
    );
    // sendMessage to an id that is no conversation.
    assert_eq!(
        alice
            .error_code(SEND, json!({ "c": unknown, "b": "anyone?" }))
            .await?,
        "NOT_FOUND"
    );
    app.stop().await?;
    Ok(())
}
