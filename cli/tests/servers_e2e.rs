//! Servers and channels end to end, in the embedded mode and on the distributed read models
//! (`in_both_modes!`): a channel's topic, its category and place, unarchiving, handing a server to
//! another member, deleting a server, and the `serverEvents` subscription (live, resumed from a
//! cursor, filtered like `Server.channels`, ended when the caller stops being a member).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{community, newest, send, Client, Subscriber, CHANNEL_EVENTS};
use serde_json::{json, Value};

const TOPIC: &str = "mutation($c: ID!, $t: String) { setChannelTopic(channelId: $c, topic: $t) \
                     { id topic category } }";
const MOVE: &str =
    "mutation($c: ID!, $cat: String, $p: Int!) { moveChannel(input: {channelId: $c, \
                    category: $cat, position: $p}) { id topic category } }";
const ARCHIVE: &str = "mutation($c: ID!) { archiveChannel(channelId: $c) { id archived } }";
const UNARCHIVE: &str = "mutation($c: ID!) { unarchiveChannel(channelId: $c) { id archived } }";
const CHANNELS: &str =
    "query($s: ID!) { server(id: $s) { channels { name topic category archived } } }";
const CREATE_CHANNEL: &str = "mutation($s: ID!, $n: String!, $p: Boolean) { createChannel(input: \
                              {serverId: $s, name: $n, private: $p}) { id } }";
const TRANSFER: &str = "mutation($s: ID!, $u: ID!) { transferOwnership(serverId: $s, userId: $u) \
                        { id owner { username } } }";
const DELETE: &str = "mutation($s: ID!) { deleteServer(serverId: $s) }";
const MEMBERS: &str = "query($s: ID!) { server(id: $s) { owner { username } members { edges { \
                       node { user { username } role } } } } }";
const SERVER_EVENTS: &str = "subscription($s: ID!, $after: String) { serverEvents(serverId: $s, \
     after: $after) { cursor kind serverId channelId userId actorId role name topic category \
     position messageId } }";

async fn create_channel(
    owner: &mut Client,
    server: &str,
    name: &str,
    private: bool,
) -> anyhow::Result<String> {
    let created = owner
        .ok(
            CREATE_CHANNEL,
            json!({ "s": server, "n": name, "p": private }),
        )
        .await?;
    Ok(created["createChannel"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

fn names(channels: &Value) -> Vec<String> {
    channels
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

async fn next_server_event(subscriber: &mut Subscriber, id: &str) -> anyhow::Result<Value> {
    subscriber.next_data(id, "serverEvents").await
}

async fn admins_set_topics_move_channels_under_categories_and_unarchive_them(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let (server, general) = (place.server_id.clone(), place.channel_id.clone());
    alice.consistency = newest(&alice.consistency, &bob.consistency);
    let random = create_channel(&mut alice, &server, "random", false).await?;

    // A topic: set, read back by a member, refused to a member, bounded, cleared.
    let set = alice
        .ok(
            TOPIC,
            json!({ "c": general, "t": "  Say hello\nand be kind " }),
        )
        .await?;
    assert_eq!(set["setChannelTopic"]["topic"], "Say hello\nand be kind");
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let seen = bob.ok(CHANNELS, json!({ "s": server })).await?;
    assert_eq!(
        seen["server"]["channels"][0]["topic"],
        "Say hello\nand be kind"
    );
    assert_eq!(
        bob.error_code(TOPIC, json!({ "c": general, "t": "mine" }))
            .await?,
        "FORBIDDEN"
    );
    let too_long = "t".repeat(1_025);
    assert_eq!(
        alice
            .error_code(TOPIC, json!({ "c": general, "t": too_long }))
            .await?,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        alice
            .error_code(TOPIC, json!({ "c": general, "t": "bell\u{7}" }))
            .await?,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        alice
            .error_code(TOPIC, json!({ "c": "nope", "t": "x" }))
            .await?,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        alice
            .error_code(
                TOPIC,
                json!({ "c": "01906d93-7a20-769e-a568-cd8b4659389b", "t": "x" })
            )
            .await?,
        "NOT_FOUND"
    );
    // Nothing of the refused attempts was applied.
    let seen = alice.ok(CHANNELS, json!({ "s": server })).await?;
    assert_eq!(
        seen["server"]["channels"][0]["topic"],
        "Say hello\nand be kind"
    );

    // Move random to the top under "Chat"; the list follows.
    let moved = alice
        .ok(MOVE, json!({ "c": random, "cat": "Chat", "p": 0 }))
        .await?;
    assert_eq!(moved["moveChannel"]["category"], "Chat");
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let seen = bob.ok(CHANNELS, json!({ "s": server })).await?;
    assert_eq!(
        names(&seen["server"]["channels"]),
        vec!["random", "general"]
    );
    assert_eq!(seen["server"]["channels"][0]["category"], "Chat");
    assert_eq!(seen["server"]["channels"][1]["category"], Value::Null);
    // A channel created later comes last.
    create_channel(&mut alice, &server, "later", false).await?;
    let seen = alice.ok(CHANNELS, json!({ "s": server })).await?;
    assert_eq!(
        names(&seen["server"]["channels"]),
        vec!["random", "general", "later"]
    );
    // Out of range, negative, a member: refused, and the order is unchanged.
    for (position, code) in [(3, "BAD_USER_INPUT"), (-1, "BAD_USER_INPUT")] {
        assert_eq!(
            alice
                .error_code(MOVE, json!({ "c": general, "p": position }))
                .await?,
            code
        );
    }
    assert_eq!(
        bob.error_code(MOVE, json!({ "c": general, "p": 0 }))
            .await?,
        "FORBIDDEN"
    );
    assert_eq!(
        alice
            .error_code(MOVE, json!({ "c": general, "cat": "", "p": 0 }))
            .await?,
        "BAD_USER_INPUT"
    );
    let seen = alice.ok(CHANNELS, json!({ "s": server })).await?;
    assert_eq!(
        names(&seen["server"]["channels"]),
        vec!["random", "general", "later"]
    );

    // Archived: nobody posts; unarchived: members post again. Only admins unarchive.
    alice.ok(ARCHIVE, json!({ "c": general })).await?;
    assert!(send(&mut bob, &general, "still here?").await.is_err());
    assert_eq!(
        bob.error_code(UNARCHIVE, json!({ "c": general })).await?,
        "FORBIDDEN"
    );
    let live = alice.ok(UNARCHIVE, json!({ "c": general })).await?;
    assert_eq!(live["unarchiveChannel"]["archived"], false);
    send(&mut bob, &general, "back again").await?;
    // Unarchiving a live channel changes nothing.
    alice.ok(UNARCHIVE, json!({ "c": general })).await?;

    // Cleared.
    let cleared = alice.ok(TOPIC, json!({ "c": general, "t": null })).await?;
    assert_eq!(cleared["setChannelTopic"]["topic"], Value::Null);
    Ok(())
}

in_both_modes!(admins_set_topics_move_channels_under_categories_and_unarchive_them);

async fn the_owner_hands_the_server_over_and_the_new_owner_deletes_it(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let (mut carol, carol_id) = anonymous.register("carol").await?;
    let place = community(&mut alice, &mut bob).await?;
    let (server, general) = (place.server_id.clone(), place.channel_id.clone());
    alice.consistency = newest(&alice.consistency, &bob.consistency);

    // Only the owner transfers, only to a member.
    assert_eq!(
        bob.error_code(TRANSFER, json!({ "s": server, "u": bob_id }))
            .await?,
        "FORBIDDEN"
    );
    assert_eq!(
        alice
            .error_code(TRANSFER, json!({ "s": server, "u": carol_id }))
            .await?,
        "NOT_FOUND"
    );
    let handed = alice
        .ok(TRANSFER, json!({ "s": server, "u": bob_id }))
        .await?;
    assert_eq!(handed["transferOwnership"]["owner"]["username"], "bob");
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let members = bob.ok(MEMBERS, json!({ "s": server })).await?;
    assert_eq!(members["server"]["owner"]["username"], "bob");
    let roles: Vec<(String, String)> = members["server"]["members"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|edge| {
            (
                edge["node"]["user"]["username"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                edge["node"]["role"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        roles.contains(&("alice".into(), "ADMIN".into())),
        "{roles:?}"
    );
    assert!(roles.contains(&("bob".into(), "OWNER".into())), "{roles:?}");

    // The old owner may no longer delete.
    assert_eq!(
        alice.error_code(DELETE, json!({ "s": server })).await?,
        "FORBIDDEN"
    );
    // A stranger neither.
    assert_eq!(
        carol.error_code(DELETE, json!({ "s": server })).await?,
        "FORBIDDEN"
    );

    let mut watching = Subscriber::connect(addr, alice.token.as_deref().unwrap_or("")).await?;
    watching
        .subscribe("c", CHANNEL_EVENTS, json!({ "c": general, "after": "0" }))
        .await?;
    send(&mut bob, &general, "last words").await?;
    // Read from the channel's start: on a loaded machine the message may be stored before the
    // subscription has taken its place, and it must still arrive.
    loop {
        let event = watching.next_event("c").await?;
        if event["message"]["body"] == "last words" {
            break;
        }
    }

    assert_eq!(
        bob.ok(DELETE, json!({ "s": server })).await?["deleteServer"],
        true
    );
    // The subscription to its channel ends.
    assert_eq!(watching.refusal("c").await?, "FORBIDDEN");
    // Everything about it answers as if it never existed.
    alice.consistency = bob.consistency.clone();
    for client in [&mut alice, &mut bob] {
        let lists = client
            .ok(
                "query($s: ID!, $c: ID!) { servers { id } server(id: $s) { id } channel(id: $c) { id } }",
                json!({ "s": server, "c": general }),
            )
            .await?;
        assert_eq!(lists["servers"], json!([]), "{lists}");
        assert_eq!(lists["server"], Value::Null);
        assert_eq!(lists["channel"], Value::Null);
    }
    assert!(send(&mut alice, &general, "hello?").await.is_err());
    assert_eq!(
        alice
            .error_code(
                "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }",
                json!({ "c": general, "b": "hello?" })
            )
            .await?,
        "NOT_FOUND"
    );
    assert_eq!(
        bob.error_code(DELETE, json!({ "s": server })).await?,
        "NOT_FOUND"
    );
    assert_eq!(
        bob.error_code(TOPIC, json!({ "c": general, "t": "x" }))
            .await?,
        "NOT_FOUND"
    );
    watching
        .subscribe("again", CHANNEL_EVENTS, json!({ "c": general }))
        .await?;
    assert_eq!(watching.refusal("again").await?, "NOT_FOUND");
    Ok(())
}

in_both_modes!(the_owner_hands_the_server_over_and_the_new_owner_deletes_it);

async fn server_events_are_pushed_resumed_filtered_and_end_with_membership(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let (mut carol, _) = anonymous.register("carol").await?;
    let place = community(&mut alice, &mut bob).await?;
    let (server, general) = (place.server_id.clone(), place.channel_id.clone());
    alice.consistency = newest(&alice.consistency, &bob.consistency);

    // Refusals: a stranger, an unknown server, a bad cursor.
    let mut stranger = Subscriber::connect(addr, carol.token.as_deref().unwrap_or("")).await?;
    stranger
        .subscribe("s", SERVER_EVENTS, json!({ "s": server }))
        .await?;
    assert_eq!(stranger.refusal("s").await?, "FORBIDDEN");
    stranger
        .subscribe(
            "u",
            SERVER_EVENTS,
            json!({ "s": "01906d8e-e640-7b3e-8d33-433b31b52523" }),
        )
        .await?;
    assert_eq!(stranger.refusal("u").await?, "NOT_FOUND");
    stranger
        .subscribe("b", SERVER_EVENTS, json!({ "s": server, "after": "soon" }))
        .await?;
    assert_eq!(stranger.refusal("b").await?, "BAD_USER_INPUT");

    let mut watching = Subscriber::connect(addr, bob.token.as_deref().unwrap_or("")).await?;
    watching
        .subscribe("e", SERVER_EVENTS, json!({ "s": server }))
        .await?;
    // The subscription is live once an event of its own arrives.
    let random = create_channel(&mut alice, &server, "random", false).await?;
    let created = next_server_event(&mut watching, "e").await?;
    assert_eq!(created["kind"], "CHANNEL_CREATED", "{created}");
    assert_eq!(created["channelId"], random.as_str());
    assert_eq!(created["name"], "random");

    // A private channel is not news for a member; the next public one is.
    let secret = create_channel(&mut alice, &server, "staff", true).await?;
    alice
        .ok(TOPIC, json!({ "c": secret, "t": "Staff only" }))
        .await?;
    alice
        .ok(TOPIC, json!({ "c": random, "t": "Anything goes" }))
        .await?;
    let topic = next_server_event(&mut watching, "e").await?;
    assert_eq!(topic["kind"], "CHANNEL_TOPIC_CHANGED", "{topic}");
    assert_eq!(topic["channelId"], random.as_str());
    assert_eq!(topic["topic"], "Anything goes");
    let resume_from = topic["cursor"].as_str().unwrap_or_default().to_owned();

    alice
        .ok(MOVE, json!({ "c": random, "cat": "Chat", "p": 0 }))
        .await?;
    let moved = next_server_event(&mut watching, "e").await?;
    assert_eq!(moved["kind"], "CHANNEL_MOVED");
    assert_eq!(
        (moved["category"].clone(), moved["position"].clone()),
        (json!("Chat"), json!(0))
    );
    alice
        .ok(
            "mutation($s: ID!, $n: String!) { renameServer(serverId: $s, name: $n) { id } }",
            json!({ "s": server, "n": "Crabs" }),
        )
        .await?;
    let renamed = next_server_event(&mut watching, "e").await?;
    assert_eq!(
        (renamed["kind"].clone(), renamed["name"].clone()),
        (json!("SERVER_RENAMED"), json!("Crabs"))
    );
    let message = send(&mut bob, &general, "pin me").await?;
    alice.consistency = newest(&alice.consistency, &bob.consistency);
    alice
        .ok(
            "mutation($m: ID!) { pinMessage(messageId: $m) { id } }",
            json!({ "m": message }),
        )
        .await?;
    let pinned = next_server_event(&mut watching, "e").await?;
    assert_eq!(pinned["kind"], "MESSAGE_PINNED", "{pinned}");
    assert_eq!(pinned["messageId"], message.as_str());
    assert_eq!(pinned["channelId"], general.as_str());
    watching.assert_quiet(Duration::from_millis(300)).await?;

    // Resumed from a cursor: what came after it, in order, then live, nothing twice.
    let mut again = Subscriber::connect(addr, bob.token.as_deref().unwrap_or("")).await?;
    again
        .subscribe(
            "r",
            SERVER_EVENTS,
            json!({ "s": server, "after": resume_from }),
        )
        .await?;
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(next_server_event(&mut again, "r").await?["kind"].clone());
    }
    assert_eq!(
        kinds,
        vec![
            json!("CHANNEL_MOVED"),
            json!("SERVER_RENAMED"),
            json!("MESSAGE_PINNED")
        ]
    );
    again.assert_quiet(Duration::from_millis(300)).await?;

    // carol joins: both of bob's subscriptions hear it once.
    let invite = alice
        .ok(
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": server }),
        )
        .await?;
    carol
        .ok(
            "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
            json!({ "c": invite["createInvite"]["code"] }),
        )
        .await?;
    for (subscriber, id) in [(&mut watching, "e"), (&mut again, "r")] {
        let joined = next_server_event(subscriber, id).await?;
        assert_eq!(joined["kind"], "MEMBER_JOINED", "{joined}");
        assert_eq!(joined["role"], "MEMBER");
    }

    // bob is removed: he hears of it, then the subscription ends with FORBIDDEN.
    alice
        .ok(
            "mutation($s: ID!, $u: ID!) { removeMember(input: {serverId: $s, userId: $u}) }",
            json!({ "s": server, "u": bob_id }),
        )
        .await?;
    let removed = next_server_event(&mut watching, "e").await?;
    assert_eq!(removed["kind"], "MEMBER_REMOVED", "{removed}");
    assert_eq!(removed["userId"], bob_id.as_str());
    assert_eq!(watching.refusal("e").await?, "FORBIDDEN");
    let ended = watching.next_message().await?;
    assert_eq!(
        (ended["type"].as_str(), ended["id"].as_str()),
        (Some("complete"), Some("e"))
    );
    // Nothing after his removal reaches him.
    let _ = create_channel(&mut alice, &server, "after-bob", false).await?;
    watching.assert_quiet(Duration::from_millis(300)).await?;
    Ok(())
}

in_both_modes!(server_events_are_pushed_resumed_filtered_and_end_with_membership);
