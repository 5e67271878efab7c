//! Read receipts end to end, in the embedded mode and (but for the restart) on the distributed
//! read models: `markRead`, the channel's read state (unread and mention badges), mentions, and
//! the rules that keep a pointer honest.

mod common;

use std::net::SocketAddr;

use common::{community, send, start, Client, Subscriber, PATIENCE};
use serde_json::{json, Value};

const READ_STATE: &str = "query($c: ID!) { channel(id: $c) { readState { \
     lastReadMessageId lastReadSequence readAt unreadCount mentionCount } } }";

const MARK_READ: &str =
    "mutation($c: ID!, $m: ID!) { markRead(input: {channelId: $c, messageId: $m}) \
     { channelId lastReadMessageId lastReadSequence readAt unreadCount mentionCount } }";

async fn read_state(client: &mut Client, channel: &str) -> anyhow::Result<Value> {
    let data = client.ok(READ_STATE, json!({ "c": channel })).await?;
    Ok(data["channel"]["readState"].clone())
}

async fn mark_read(client: &mut Client, channel: &str, message: &str) -> anyhow::Result<Value> {
    let data = client
        .ok(MARK_READ, json!({ "c": channel, "m": message }))
        .await?;
    Ok(data["markRead"].clone())
}

#[tokio::test]
async fn badges_count_what_a_member_has_not_read_and_mark_read_clears_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let channel = place.channel_id.as_str();

    // Five messages from alice, two of them mentioning bob; one from bob himself.
    let mut sent = Vec::new();
    for n in 1..=5 {
        let body = if n % 2 == 0 {
            format!("message {n} for <@{bob_id}>")
        } else {
            format!("message {n}")
        };
        sent.push(send(&mut alice, channel, &body).await?);
    }
    send(&mut bob, channel, "my own words are never unread").await?;

    let fresh = read_state(&mut bob, channel).await?;
    assert_eq!(fresh["unreadCount"], 5, "{fresh}");
    assert_eq!(fresh["mentionCount"], 2, "{fresh}");
    assert_eq!(fresh["lastReadMessageId"], Value::Null);
    assert_eq!(fresh["lastReadSequence"], 0);

    // Reading up to the third message leaves two unread, one of them a mention.
    let marked = mark_read(&mut bob, channel, &sent[2]).await?;
    assert_eq!(marked["channelId"], channel);
    assert_eq!(marked["lastReadMessageId"], sent[2].as_str());
    assert_eq!(marked["lastReadSequence"], 3);
    assert_eq!(marked["unreadCount"], 2, "{marked}");
    assert_eq!(marked["mentionCount"], 1, "{marked}");
    assert!(marked["readAt"].is_string());

    // A late markRead of an older message (another device) does not un-read anything.
    let older = mark_read(&mut bob, channel, &sent[0]).await?;
    assert_eq!(older["lastReadMessageId"], sent[2].as_str(), "{older}");
    assert_eq!(older["unreadCount"], 2);

    // A deleted message is no longer waiting to be read, nor is its mention.
    alice
        .ok(
            "mutation($m: ID!) { deleteMessage(messageId: $m) { id } }",
            json!({ "m": sent[3] }),
        )
        .await?;
    // An edit that adds a mention counts it.
    alice
        .ok(
            "mutation($m: ID!, $b: String!) { editMessage(input: {messageId: $m, body: $b}) { id } }",
            json!({ "m": sent[4], "b": format!("now for <@{bob_id}> too") }),
        )
        .await?;
    // Bob reads after alice's writes: her newest consistency token covers them.
    bob.consistency = alice.consistency.clone();
    let after_changes = read_state(&mut bob, channel).await?;
    assert_eq!(after_changes["unreadCount"], 1, "{after_changes}");
    assert_eq!(after_changes["mentionCount"], 1, "{after_changes}");

    let all_read = mark_read(&mut bob, channel, &sent[4]).await?;
    assert_eq!(all_read["unreadCount"], 0);
    assert_eq!(all_read["mentionCount"], 0);
    assert_eq!(all_read["lastReadSequence"], 5);

    // Alice's pointer is her own: she has not marked anything.
    let alices = read_state(&mut alice, channel).await?;
    assert_eq!(alices["lastReadMessageId"], Value::Null);
    assert_eq!(
        alices["unreadCount"], 1,
        "bob's message is unread for alice: {alices}"
    );

    // The pointer survives a restart: it is in the log, not only in the read model.
    app.stop().await?;
    let app = start(dir.path()).await?;
    let mut bob = Client::new(app.local_addr).with_token(bob.token.as_deref().unwrap_or(""));
    let restarted = read_state(&mut bob, channel).await?;
    assert_eq!(restarted["lastReadMessageId"], sent[4].as_str());
    assert_eq!(restarted["unreadCount"], 0);
    app.stop().await?;
    Ok(())
}

async fn mark_read_refuses_what_the_caller_cannot_mark(addr: SocketAddr) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let (mut carol, _) = anonymous.register("carol").await?;
    let place = community(&mut alice, &mut bob).await?;
    let channel = place.channel_id.as_str();
    let message = send(&mut alice, channel, "hello").await?;

    // Not a member of the server.
    let code = carol
        .error_code(MARK_READ, json!({ "c": channel, "m": message }))
        .await?;
    assert_eq!(code, "FORBIDDEN");
    // Signed out.
    let code = anonymous
        .error_code(MARK_READ, json!({ "c": channel, "m": message }))
        .await?;
    assert_eq!(code, "UNAUTHENTICATED");
    // A message that does not exist, or an id that is not one.
    let unknown = "0190a000-0000-7000-8000-000000000000";
    let code = bob
        .error_code(MARK_READ, json!({ "c": channel, "m": unknown }))
        .await?;
    assert_eq!(code, "NOT_FOUND");
    let code = bob
        .error_code(MARK_READ, json!({ "c": channel, "m": "not-an-id" }))
        .await?;
    assert_eq!(code, "BAD_USER_INPUT");
    // A message of another channel.
    let other = alice
        .ok(
            "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"random\"}) { id } }",
            json!({ "s": place.server_id }),
        )
        .await?;
    let other = other["createChannel"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let elsewhere = send(&mut alice, &other, "elsewhere").await?;
    let code = bob
        .error_code(MARK_READ, json!({ "c": channel, "m": elsewhere }))
        .await?;
    assert_eq!(code, "NOT_FOUND");
    // An id that names no conversation.
    let code = bob
        .error_code(
            "mutation($m: ID!) { markRead(input: {conversationId: $m, messageId: $m}) { unreadCount } }",
            json!({ "m": message }),
        )
        .await?;
    assert_eq!(code, "NOT_FOUND");

    // None of that moved bob's pointer.
    let state = read_state(&mut bob, channel).await?;
    assert_eq!(state["lastReadMessageId"], Value::Null);
    assert_eq!(state["unreadCount"], 1);
    Ok(())
}

in_both_modes!(mark_read_refuses_what_the_caller_cannot_mark);

/// `reader`'s badges in `channel` once `writer`'s writes are in the read models.
async fn badges_after(
    reader: &mut Client,
    writer: &Client,
    channel: &str,
) -> anyhow::Result<(i64, i64)> {
    reader.consistency = writer.consistency.clone();
    let state = read_state(reader, channel).await?;
    Ok((
        state["unreadCount"].as_i64().unwrap_or(-1),
        state["mentionCount"].as_i64().unwrap_or(-1),
    ))
}

async fn everyone_and_here_mention_people_when_a_moderator_or_more_sends_them(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let channel = place.channel_id.as_str();

    // From a member, `@everyone` and `@here` are text: nobody is mentioned.
    send(&mut bob, channel, "@everyone look at this, @here").await?;
    assert_eq!(badges_after(&mut alice, &bob, channel).await?, (1, 0));

    // From the owner, `@everyone` mentions every member.
    send(&mut alice, channel, "@everyone standup in 5").await?;
    assert_eq!(badges_after(&mut bob, &alice, channel).await?, (1, 1));

    // `@here` reaches only who is connected: bob is not.
    send(&mut alice, channel, "@here anyone around?").await?;
    assert_eq!(badges_after(&mut bob, &alice, channel).await?, (2, 1));

    // Once bob is connected (and shows so), `@here` reaches him.
    let _socket = Subscriber::connect(addr, bob.token.as_deref().unwrap_or_default()).await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let me = bob.ok("{ me { presence } }", json!({})).await?;
        if me["me"]["presence"] == "ONLINE" {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "bob never showed online: {me}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    send(&mut alice, channel, "@here now?").await?;
    assert_eq!(badges_after(&mut bob, &alice, channel).await?, (3, 2));

    // Named and `@everyone` in one message: one mention.
    let both = send(
        &mut alice,
        channel,
        &format!("<@{bob_id}> and @everyone: review?"),
    )
    .await?;
    assert_eq!(badges_after(&mut bob, &alice, channel).await?, (4, 3));

    // An edit that drops the mentions takes them off the badge.
    alice
        .ok(
            "mutation($m: ID!) { editMessage(input: {messageId: $m, body: \"never mind\"}) { id } }",
            json!({ "m": both }),
        )
        .await?;
    assert_eq!(badges_after(&mut bob, &alice, channel).await?, (4, 2));
    Ok(())
}

in_both_modes!(everyone_and_here_mention_people_when_a_moderator_or_more_sends_them);

async fn a_thread_reply_is_unread_in_the_channel_only_when_sent_there_but_its_mention_counts(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    const REPLY: &str = "mutation($c: ID!, $b: String!, $t: ID!, $also: Boolean) { \
         sendMessage(input: {channelId: $c, body: $b, threadRootId: $t, alsoToChannel: $also}) \
         { id } }";
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let channel = place.channel_id.as_str();

    let root = send(&mut alice, channel, "what shall we read?").await?;
    for (body, also) in [
        ("in the thread only".to_owned(), false),
        (format!("in the thread only, for <@{bob_id}>"), false),
        ("in the thread and the channel".to_owned(), true),
    ] {
        alice
            .ok(
                REPLY,
                json!({ "c": channel, "b": body, "t": root, "also": also }),
            )
            .await?;
    }
    bob.consistency = alice.consistency.clone();
    let state = read_state(&mut bob, channel).await?;
    // The root and the reply also sent to the channel; the mention in the thread counts.
    assert_eq!(state["unreadCount"], 2, "{state}");
    assert_eq!(state["mentionCount"], 1, "{state}");
    Ok(())
}

in_both_modes!(a_thread_reply_is_unread_in_the_channel_only_when_sent_there_but_its_mention_counts);
