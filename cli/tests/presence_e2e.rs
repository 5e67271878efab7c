//! Typing and presence end to end: over WebSockets on the embedded application, and across two
//! distributed instances that share a broker (tansu) and PostgreSQL.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig};
use aether_query_api::ephemeral::EphemeralLimits;
use common::{community, Client, Cluster, Subscriber};
use serde_json::json;

const TYPING: &str =
    "subscription($c: ID!) { typing(channelId: $c) { channelId typing expiresAt user { username } } }";
const PRESENCE: &str =
    "subscription($s: ID!) { presence(serverId: $s) { status user { username } } }";
const START_TYPING: &str = "mutation($c: ID!) { startTyping(channelId: $c) }";

fn limits() -> EphemeralLimits {
    EphemeralLimits {
        typing_ttl: Duration::from_secs(1),
        offline_grace: Duration::from_millis(500),
        heartbeat: Duration::from_secs(2),
        ..EphemeralLimits::default()
    }
}

fn config(dir: &Path) -> EmbeddedConfig {
    EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        ephemeral: limits(),
        ..EmbeddedConfig::default()
    }
}

fn token(client: &Client) -> String {
    client.token.clone().unwrap_or_default()
}

#[tokio::test]
async fn typing_reaches_other_members_and_expires() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_embedded(config(dir.path())).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let (mut carol, _) = anonymous.register("carol").await?;
    let place = community(&mut alice, &mut bob).await?;

    let mut watcher = Subscriber::connect(app.local_addr, &token(&bob)).await?;
    watcher
        .subscribe("t", TYPING, json!({ "c": place.channel_id }))
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = alice
        .ok(START_TYPING, json!({ "c": place.channel_id }))
        .await?;
    assert_eq!(started["startTyping"], true);
    // A second signal at once is coalesced.
    let again = alice
        .ok(START_TYPING, json!({ "c": place.channel_id }))
        .await?;
    assert_eq!(again["startTyping"], false);

    let typing = watcher.next_data("t", "typing").await?;
    assert_eq!(typing["typing"], true);
    assert_eq!(typing["user"]["username"], "alice");
    assert_eq!(typing["channelId"], place.channel_id.as_str());
    // Not renewed: it lapses by itself.
    let stopped = watcher.next_data("t", "typing").await?;
    assert_eq!(stopped["typing"], false);
    assert_eq!(stopped["user"]["username"], "alice");
    watcher.assert_quiet(Duration::from_millis(300)).await?;

    // Someone outside the server can neither signal nor watch.
    let code = carol
        .error_code(START_TYPING, json!({ "c": place.channel_id }))
        .await?;
    assert_eq!(code, "FORBIDDEN");
    let mut outsider = Subscriber::connect(app.local_addr, &token(&carol)).await?;
    outsider
        .subscribe("t", TYPING, json!({ "c": place.channel_id }))
        .await?;
    let refused = outsider.next_message().await?;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn typing_and_presence_are_serialized_once_per_audience() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_embedded(config(dir.path())).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;

    // Bob on two devices, each watching typing in the channel with the same document.
    let mut devices = Vec::new();
    for _ in 0..2 {
        let mut device = Subscriber::connect(app.local_addr, &token(&bob)).await?;
        device
            .subscribe("t", TYPING, json!({ "c": place.channel_id }))
            .await?;
        devices.push(device);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = app.audience_stats();
    alice
        .ok(START_TYPING, json!({ "c": place.channel_id }))
        .await?;
    for device in &mut devices {
        let typing = device.next_data("t", "typing").await?;
        assert_eq!(
            (
                typing["typing"].as_bool(),
                typing["user"]["username"].as_str()
            ),
            (Some(true), Some("alice"))
        );
        let stopped = device.next_data("t", "typing").await?;
        assert_eq!(stopped["typing"], false);
    }
    let typed = app.audience_stats();
    // Started and stopped: two payloads, each sent to both devices.
    assert_eq!(typed.serialized - before.serialized, 2, "{typed:?}");
    assert_eq!(typed.delivered - before.delivered, 4, "{typed:?}");

    // Both devices watch the server's presence; alice comes online.
    for device in &mut devices {
        device
            .subscribe("p", PRESENCE, json!({ "s": place.server_id }))
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let watching = app.audience_stats();
    let _alices_socket = Subscriber::connect(app.local_addr, &token(&alice)).await?;
    let mut seen = 0;
    for device in &mut devices {
        // Bob's own devices may be announced first.
        loop {
            let change = device.next_data("p", "presence").await?;
            seen += 1;
            if change["user"]["username"] == "alice" {
                assert_eq!(change["status"], "ONLINE");
                break;
            }
        }
    }
    let after = app.audience_stats();
    assert_eq!(after.delivered - watching.delivered, seen, "{after:?}");
    assert_eq!(
        2 * (after.serialized - watching.serialized),
        seen,
        "{after:?}"
    );
    app.stop().await?;
    Ok(())
}

const CONVERSATION_PRESENCE: &str =
    "subscription($c: ID!) { presence(conversationId: $c) { status user { username } } }";

#[tokio::test]
async fn typing_and_presence_in_a_direct_conversation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_embedded(config(dir.path())).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let (mut carol, _) = anonymous.register("carol").await?;
    let opened = alice
        .ok(
            "mutation($u: [ID!]!) { openDirectConversation(userIds: $u) { id } }",
            json!({ "u": [bob_id] }),
        )
        .await?;
    let id = opened["openDirectConversation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    bob.consistency = alice.consistency.clone();
    carol.consistency = alice.consistency.clone();

    // Alice watches the conversation's typing and its people's presence.
    let mut watcher = Subscriber::connect(app.local_addr, &token(&alice)).await?;
    watcher.subscribe("t", TYPING, json!({ "c": id })).await?;
    watcher
        .subscribe("p", CONVERSATION_PRESENCE, json!({ "c": id }))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Carol, who is not in it, comes online: alice hears nothing of her.
    let carols_socket = Subscriber::connect(app.local_addr, &token(&carol)).await?;
    // Bob comes online and types.
    let bobs_socket = Subscriber::connect(app.local_addr, &token(&bob)).await?;
    let mut seen = watcher.next_data("p", "presence").await?;
    // Alice's own connection may be announced first.
    if seen["user"]["username"] == "alice" {
        seen = watcher.next_data("p", "presence").await?;
    }
    assert_eq!(seen["user"]["username"], "bob", "{seen}");
    assert_eq!(seen["status"], "ONLINE");
    let started = bob.ok(START_TYPING, json!({ "c": id })).await?;
    assert_eq!(started["startTyping"], true);
    let typing = watcher.next_data("t", "typing").await?;
    assert_eq!(typing["user"]["username"], "bob");
    assert_eq!(typing["typing"], true);
    assert_eq!(typing["channelId"], id.as_str());
    let stopped = watcher.next_data("t", "typing").await?;
    assert_eq!(stopped["typing"], false);

    // Bob's last connection closes: offline. Carol never showed up.
    drop(bobs_socket);
    let gone = watcher.next_data("p", "presence").await?;
    assert_eq!(gone["user"]["username"], "bob", "{gone}");
    assert_eq!(gone["status"], "OFFLINE");
    drop(carols_socket);
    watcher.assert_quiet(Duration::from_millis(900)).await?;

    // Carol can neither signal, nor watch typing or presence there: to her it does not exist.
    assert_eq!(
        carol.error_code(START_TYPING, json!({ "c": id })).await?,
        "NOT_FOUND"
    );
    let mut outsider = Subscriber::connect(app.local_addr, &token(&carol)).await?;
    outsider.subscribe("t", TYPING, json!({ "c": id })).await?;
    assert_eq!(outsider.refusal("t").await?, "NOT_FOUND");
    outsider
        .subscribe("p", CONVERSATION_PRESENCE, json!({ "c": id }))
        .await?;
    assert_eq!(outsider.refusal("p").await?, "NOT_FOUND");
    // Naming both a server and a conversation, or neither, is refused.
    for (query, variables) in [
        ("subscription { presence { status } }", json!({})),
        (
            "subscription($c: ID!) { presence(serverId: $c, conversationId: $c) { status } }",
            json!({ "c": id }),
        ),
    ] {
        outsider.subscribe("bad", query, variables).await?;
        assert_eq!(outsider.refusal("bad").await?, "BAD_USER_INPUT");
    }
    app.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_cross_instances() -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let dir = tempfile::tempdir()?;
    let one = cluster.instance(config(dir.path()), true).await?;
    let two = cluster.instance(config(dir.path()), false).await?;
    let _stop = [
        one.shutdown.clone().drop_guard(),
        two.shutdown.clone().drop_guard(),
    ];

    let mut anonymous = Client::new(one.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    // Instance two has caught up with the membership before anyone uses it.
    let mut bob_on_two = Client::new(two.local_addr).with_token(&token(&bob));
    bob_on_two.consistency = bob.consistency.clone();
    bob_on_two.ok("{ me { id } }", json!({})).await?;

    // Alice watches from instance one.
    let mut watcher = Subscriber::connect(one.local_addr, &token(&alice)).await?;
    watcher
        .subscribe("p", PRESENCE, json!({ "s": place.server_id }))
        .await?;
    watcher
        .subscribe("t", TYPING, json!({ "c": place.channel_id }))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Bob connects to instance two: online on instance one.
    let bob_socket = Subscriber::connect(two.local_addr, &token(&bob)).await?;
    let mut seen = watcher.next_data("p", "presence").await?;
    // Alice's own connection may be announced first.
    if seen["user"]["username"] == "alice" {
        seen = watcher.next_data("p", "presence").await?;
    }
    assert_eq!(seen["user"]["username"], "bob", "{seen}");
    assert_eq!(seen["status"], "ONLINE");

    // Bob types on instance two: alice sees it on instance one.
    bob_on_two
        .ok(START_TYPING, json!({ "c": place.channel_id }))
        .await?;
    let typing = watcher.next_data("t", "typing").await?;
    assert_eq!(typing["user"]["username"], "bob");
    assert_eq!(typing["typing"], true);
    let stopped = watcher.next_data("t", "typing").await?;
    assert_eq!(stopped["typing"], false);

    // Bob's last connection closes: offline on instance one, after the grace.
    drop(bob_socket);
    let gone = watcher.next_data("p", "presence").await?;
    assert_eq!(gone["user"]["username"], "bob");
    assert_eq!(gone["status"], "OFFLINE");

    cluster.stop(vec![one, two]).await
}
