//! Forwards end to end: a message forwarded to another channel or conversation keeps its
//! origin, shown only to those who may see the original; what the forwarder cannot see or post
//! to is refused. In the embedded mode and on the projectors' read models.

mod common;

use std::net::SocketAddr;

use anyhow::Context;
use common::{community, send, Client};
use serde_json::{json, Value};

const FORWARD: &str = "mutation($m: ID!, $c: ID, $d: ID) { forwardMessage(input: \
     {messageId: $m, channelId: $c, conversationId: $d}) { id body forwarded channelId conversationId } }";

const MESSAGE: &str = "query($c: ID!) { channel(id: $c) { messages(last: 1) { edges { node { \
     id body forwarded forwardedFrom { messageId channelId conversationId serverId sentAt \
     author { username } } } } } } }";

/// The newest message of `channel` as `client` sees it.
async fn newest(client: &mut Client, writer: &Client, channel: &str) -> anyhow::Result<Value> {
    client.consistency = writer.consistency.clone();
    let data = client.ok(MESSAGE, json!({ "c": channel })).await?;
    Ok(data["channel"]["messages"]["edges"][0]["node"].clone())
}

async fn create_channel(
    client: &mut Client,
    server: &str,
    name: &str,
    private: bool,
) -> anyhow::Result<String> {
    let data = client
        .ok(
            "mutation($s: ID!, $n: String!, $p: Boolean!) { createChannel(input: {serverId: $s, name: $n, private: $p}) { id } }",
            json!({ "s": server, "n": name, "p": private }),
        )
        .await?;
    Ok(data["createChannel"]["id"]
        .as_str()
        .context("channel id")?
        .to_owned())
}

/// alice owns two servers: "Rustaceans" with bob (#general, private #staff) and "Lobby" with
/// carol, who is not in the first.
async fn forwards_keep_their_origin_for_those_who_may_see_it(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, alice_id) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let (mut carol, _) = anonymous.register("carol").await?;
    let rust = community(&mut alice, &mut bob).await?;
    let staff = create_channel(&mut alice, &rust.server_id, "staff", true).await?;
    let lobby = community(&mut alice, &mut carol).await?;

    // alice forwards bob's message from #general to the other server: same body, forwarded.
    let original = send(&mut bob, &rust.channel_id, "the release is out").await?;
    alice.consistency = bob.consistency.clone();
    let forwarded = alice
        .ok(FORWARD, json!({ "m": original, "c": lobby.channel_id }))
        .await?;
    let forwarded = &forwarded["forwardMessage"];
    assert_eq!(forwarded["body"], "the release is out", "{forwarded}");
    assert_eq!(forwarded["forwarded"], true);
    assert_eq!(forwarded["channelId"], lobby.channel_id.as_str());

    // alice may see the original: she sees where it comes from.
    let writer = alice.clone();
    let seen = newest(&mut alice, &writer, &lobby.channel_id).await?;
    let origin = &seen["forwardedFrom"];
    assert_eq!(origin["messageId"], original.as_str(), "{seen}");
    assert_eq!(origin["channelId"], rust.channel_id.as_str());
    assert_eq!(origin["serverId"], rust.server_id.as_str());
    assert_eq!(origin["conversationId"], Value::Null);
    assert_eq!(origin["author"]["username"], "bob");
    // carol may not: she sees the text and that it is forwarded, not from where.
    let seen = newest(&mut carol, &writer, &lobby.channel_id).await?;
    assert_eq!(seen["body"], "the release is out", "{seen}");
    assert_eq!(seen["forwarded"], true);
    assert_eq!(seen["forwardedFrom"], Value::Null);

    // bob forwards to a direct conversation with alice.
    let conversation = bob
        .ok(
            "mutation($u: ID!) { openDirectConversation(userIds: [$u]) { id } }",
            json!({ "u": alice_id }),
        )
        .await?;
    let conversation = conversation["openDirectConversation"]["id"]
        .as_str()
        .context("conversation id")?
        .to_owned();
    let to_dm = bob
        .ok(FORWARD, json!({ "m": original, "d": conversation }))
        .await?;
    assert_eq!(
        to_dm["forwardMessage"]["conversationId"],
        conversation.as_str()
    );
    assert_eq!(to_dm["forwardMessage"]["channelId"], Value::Null);

    // What bob cannot see does not exist for him; where carol may not post, she may not.
    let secret = send(&mut alice, &staff, "staff only").await?;
    bob.consistency = alice.consistency.clone();
    let code = bob
        .error_code(FORWARD, json!({ "m": secret, "c": rust.channel_id }))
        .await?;
    assert_eq!(code, "NOT_FOUND");
    carol.consistency = alice.consistency.clone();
    let from_lobby = send(&mut carol, &lobby.channel_id, "hello lobby").await?;
    let code = carol
        .error_code(FORWARD, json!({ "m": from_lobby, "c": rust.channel_id }))
        .await?;
    assert!(code == "FORBIDDEN" || code == "NOT_FOUND", "{code}");
    // Bad input: both places, neither, an id that is none; a deleted message.
    for variables in [
        json!({ "m": original, "c": lobby.channel_id, "d": conversation }),
        json!({ "m": original }),
        json!({ "m": "not-an-id", "c": lobby.channel_id }),
    ] {
        let code = alice.error_code(FORWARD, variables.clone()).await?;
        assert_eq!(code, "BAD_USER_INPUT", "{variables}");
    }
    bob.ok(
        "mutation($m: ID!) { deleteMessage(messageId: $m) { id } }",
        json!({ "m": original }),
    )
    .await?;
    alice.consistency = bob.consistency.clone();
    let code = alice
        .error_code(FORWARD, json!({ "m": original, "c": lobby.channel_id }))
        .await?;
    assert_eq!(code, "CONFLICT");
    Ok(())
}

in_both_modes!(forwards_keep_their_origin_for_those_who_may_see_it);
