//! Every live subscription re-checks access on the caller's membership changes, as
//! `channelEvents` does: `typing` and `presence` end with `FORBIDDEN` once the caller is
//! removed, banned, leaves, or (for a private channel) is demoted below it.

mod common;

use anyhow::{bail, Context};
use common::{community, start, Client, Subscriber};
use serde_json::{json, Value};

const TYPING: &str = "subscription($c: ID!) { typing(channelId: $c) { user { username } typing } }";
const PRESENCE: &str =
    "subscription($s: ID!) { presence(serverId: $s) { user { username } status } }";

/// The next message of subscription `id` that `wanted` accepts; messages of other
/// subscriptions, and of this one that `wanted` does not accept, are skipped.
async fn next_of(
    subscriber: &mut Subscriber,
    id: &str,
    wanted: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    for _ in 0..100 {
        let message = subscriber.next_message().await?;
        if message["id"] == id && wanted(&message) {
            return Ok(message);
        }
    }
    bail!("subscription {id} never sent what was expected")
}

/// The error codes subscriptions `ids` end with, in `ids`' order, skipping their events.
async fn ended_with(subscriber: &mut Subscriber, ids: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut codes: Vec<Option<String>> = vec![None; ids.len()];
    for _ in 0..200 {
        if codes.iter().all(Option::is_some) {
            break;
        }
        let message = subscriber.next_message().await?;
        let Some(at) = ids.iter().position(|id| message["id"] == *id) else {
            continue;
        };
        if let Some(code) = message["payload"]["errors"][0]["extensions"]["code"].as_str() {
            codes[at] = Some(code.to_owned());
        }
    }
    codes
        .into_iter()
        .zip(ids)
        .map(|(code, id)| code.with_context(|| format!("subscription {id} did not end")))
        .collect()
}

async fn invite(owner: &mut Client, server: &str) -> anyhow::Result<String> {
    let data = owner
        .ok(
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": server }),
        )
        .await?;
    Ok(data["createInvite"]["code"]
        .as_str()
        .context("code")?
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_presence_end_with_forbidden_when_access_goes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let addr = app.local_addr;
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();
    let mods = alice
        .ok(
            "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"mods\", private: true}) { id } }",
            json!({ "s": place.server_id }),
        )
        .await?["createChannel"]["id"]
        .as_str()
        .context("mods")?
        .to_owned();
    // carol is banned, dave leaves, erin is a moderator who is demoted.
    let mut others = Vec::new();
    for name in ["carol", "dave", "erin"] {
        let (mut client, id) = anonymous.register(name).await?;
        let code = invite(&mut alice, &place.server_id).await?;
        client
            .ok(
                "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
                json!({ "c": code }),
            )
            .await?;
        alice.consistency = client.consistency.clone();
        others.push((client, id));
    }
    let [(carol, carol_id), (mut dave, _), (erin, erin_id)] =
        <[(Client, String); 3]>::try_from(others).map_err(|_| anyhow::anyhow!("three members"))?;
    let role = "mutation($s: ID!, $u: ID!, $r: Role!) { setMemberRole(input: {serverId: $s, userId: $u, role: $r}) { role } }";
    alice
        .ok(
            role,
            json!({ "s": place.server_id, "u": erin_id, "r": "MODERATOR" }),
        )
        .await?;

    let is_alice = |path: &str| {
        let path = path.to_owned();
        move |m: &Value| m["payload"]["data"][&path]["user"]["username"] == "alice"
    };
    // Each one watches typing and presence: the general channel, or (erin) the private one.
    let mut sockets = Vec::new();
    for (client, channel) in [
        (&bob, &place.channel_id),
        (&carol, &place.channel_id),
        (&dave, &place.channel_id),
        (&erin, &mods),
    ] {
        let mut socket = Subscriber::connect(addr, client.token.as_deref().unwrap_or("")).await?;
        socket
            .subscribe("typing", TYPING, json!({ "c": channel }))
            .await?;
        socket
            .subscribe("presence", PRESENCE, json!({ "s": place.server_id }))
            .await?;
        sockets.push(socket);
    }
    // Both subscriptions of each are live: alice's presence changes show in presence, her
    // typing in the channel each watches (repeated until seen: a subscription starts a little
    // after its subscribe message).
    let _alice_online = Subscriber::connect(addr, alice.token.as_deref().unwrap_or("")).await?;
    let channels = [
        &place.channel_id,
        &place.channel_id,
        &place.channel_id,
        &mods,
    ];
    let mut away = false;
    for (socket, channel) in sockets.iter_mut().zip(channels) {
        let mut seen = false;
        for _ in 0..20 {
            away = !away;
            let status = if away { "AWAY" } else { "ONLINE" };
            alice
                .ok(
                    &format!("mutation {{ setPresence(status: {status}) }}"),
                    json!({}),
                )
                .await?;
            let wait = std::time::Duration::from_millis(1500);
            if tokio::time::timeout(wait, next_of(socket, "presence", is_alice("presence")))
                .await
                .is_ok()
            {
                seen = true;
                break;
            }
        }
        anyhow::ensure!(seen, "a presence subscription never started");
        let mut seen = false;
        for _ in 0..20 {
            alice
                .ok(
                    "mutation($c: ID!) { startTyping(channelId: $c) }",
                    json!({ "c": channel }),
                )
                .await?;
            let wait = std::time::Duration::from_millis(1500);
            if tokio::time::timeout(wait, next_of(socket, "typing", is_alice("typing")))
                .await
                .is_ok()
            {
                seen = true;
                break;
            }
        }
        anyhow::ensure!(seen, "a typing subscription never started");
    }
    let [mut bob_socket, mut carol_socket, mut dave_socket, mut erin_socket] =
        <[Subscriber; 4]>::try_from(sockets).map_err(|_| anyhow::anyhow!("four sockets"))?;

    // Removed, banned, left: both subscriptions end with FORBIDDEN.
    alice
        .ok(
            "mutation($s: ID!, $u: ID!) { removeMember(input: {serverId: $s, userId: $u}) }",
            json!({ "s": place.server_id, "u": bob_id }),
        )
        .await?;
    alice
        .ok(
            "mutation($s: ID!, $u: ID!) { banUser(input: {serverId: $s, userId: $u}) }",
            json!({ "s": place.server_id, "u": carol_id }),
        )
        .await?;
    dave.ok(
        "mutation($s: ID!) { leaveServer(serverId: $s) }",
        json!({ "s": place.server_id }),
    )
    .await?;
    for (name, socket) in [
        ("bob", &mut bob_socket),
        ("carol", &mut carol_socket),
        ("dave", &mut dave_socket),
    ] {
        assert_eq!(
            ended_with(socket, &["typing", "presence"]).await?,
            ["FORBIDDEN", "FORBIDDEN"],
            "{name}"
        );
    }

    // Demoted below the private channel: its typing ends; she still sees the server's
    // presence (still a member): alice going away reaches her.
    alice
        .ok(
            role,
            json!({ "s": place.server_id, "u": erin_id, "r": "MEMBER" }),
        )
        .await?;
    assert_eq!(
        ended_with(&mut erin_socket, &["typing"]).await?,
        ["FORBIDDEN"]
    );
    let status = if away { "ONLINE" } else { "AWAY" };
    alice
        .ok(
            &format!("mutation {{ setPresence(status: {status}) }}"),
            json!({}),
        )
        .await?;
    let change = next_of(&mut erin_socket, "presence", |m| {
        m["payload"]["data"]["presence"]["status"] == status || m["payload"].get("errors").is_some()
    })
    .await?;
    assert_eq!(
        change["payload"]["data"]["presence"]["user"]["username"], "alice",
        "{change}"
    );
    app.stop().await?;
    Ok(())
}
