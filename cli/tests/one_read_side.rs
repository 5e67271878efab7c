//! One read side for every instance, with real processes: `aether serve` as relay, projectors
//! (catalog, receipts, timeline), two APIs and an edge, against real PostgreSQL, tansu and a
//! MongoDB-compatible server. The API and edge instances keep no copy of the log and write no
//! file: a write through one API is read through the other with its consistency token, reaches
//! the edge's subscribers live and on resume, and a rebuilt catalog serves every query after
//! the switch with nothing missing, without restarting the API.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use common::processes::{Deployment, EVENT_WAIT, PATIENCE};
use common::{Client, Subscriber};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Every file and directory under `dir`, recursively.
fn everything_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// What these tests do through one instance's API, beyond the shared client.
impl Client {
    /// The same user and consistency token, against another instance.
    fn at(&self, addr: SocketAddr) -> Self {
        Self {
            addr,
            ..self.clone()
        }
    }

    async fn create_server(&mut self, name: &str) -> anyhow::Result<String> {
        let data = self
            .ok(
                "mutation($n: String!) { createServer(input: {name: $n}) { id } }",
                json!({ "n": name }),
            )
            .await?;
        Ok(data["createServer"]["id"]
            .as_str()
            .context("server id")?
            .to_owned())
    }

    async fn create_channel(&mut self, server: &str, name: &str) -> anyhow::Result<String> {
        let data = self
            .ok(
                "mutation($s: ID!, $n: String!) { createChannel(input: {serverId: $s, name: $n}) { id } }",
                json!({ "s": server, "n": name }),
            )
            .await?;
        Ok(data["createChannel"]["id"]
            .as_str()
            .context("channel id")?
            .to_owned())
    }

    async fn create_invite(&mut self, server: &str) -> anyhow::Result<String> {
        let data = self
            .ok(
                "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
                json!({ "s": server }),
            )
            .await?;
        Ok(data["createInvite"]["code"]
            .as_str()
            .context("invite code")?
            .to_owned())
    }

    async fn join(&mut self, code: &str) -> anyhow::Result<Value> {
        let data = self
            .ok(
                "mutation($c: String!) { joinServer(inviteCode: $c) { id channels { id } } }",
                json!({ "c": code }),
            )
            .await?;
        Ok(data["joinServer"].clone())
    }
}

const CHANNEL_EVENTS: &str =
    "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, after: $after) { \
     __typename cursor ... on MessageSent { message { id body author { username } } } \
     ... on ReactionChanged { emoji added user { username } message { id reactions { emoji count } } } \
     ... on ThreadReplied { rootId reply { body } root { thread { replyCount } } } \
     ... on MessagePinned { message { id pinnedBy { username } } } \
     ... on MessageHidden { message { id body hidden } } \
     ... on MessageRestored { message { id body hidden } } } }";

/// The message ids of a channel's history, oldest first.
fn history_ids(data: &Value) -> Vec<String> {
    data["channel"]["messages"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["id"].as_str().map(str::to_owned))
        .collect()
}

const SERVER_EVENTS: &str = "subscription($s: ID!, $after: String) { serverEvents(serverId: $s, \
                             after: $after) { cursor kind topic } }";

/// The next `serverEvents` event of subscription `id`.
async fn next_server_event(subscriber: &mut Subscriber, id: &str) -> anyhow::Result<Value> {
    let message = subscriber.next_message_within(EVENT_WAIT).await?;
    ensure!(
        message["id"] == id
            && message["type"] == "next"
            && message["payload"].get("errors").is_none(),
        "expected an event for {id}, got {message}"
    );
    Ok(message["payload"]["data"]["serverEvents"].clone())
}

const HISTORY: &str = "query($c: ID!) { channel(id: $c) { messages(first: 50) { edges { cursor \
                       node { id body author { username } } } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_one_api_is_read_through_another_and_reaches_the_edge_live_and_on_resume(
) -> anyhow::Result<()> {
    across_instances("mongodb").await
}

/// The same with the timeline in PostgreSQL and no MongoDB URL given to any process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_read_model_in_postgresql_no_process_needs_mongodb() -> anyhow::Result<()> {
    across_instances("postgres").await
}

/// A write through api-1 read through api-2 with its token, live on the edge and again on a
/// resumed subscription, with no file written by an API or edge instance; `timeline_store` is
/// every process's `--timeline-store`.
async fn across_instances(timeline_store: &'static str) -> anyhow::Result<()> {
    let started = Instant::now();
    let deployment =
        Deployment::start_with_timeline("one_read_side", PATIENCE * 2, timeline_store).await?;
    let mut processes = deployment.background().await?;
    let homes = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let (api_one, one) = deployment.instance("api-1", "api", homes[0].path()).await?;
    let (api_two, two) = deployment.instance("api-2", "api", homes[1].path()).await?;
    let (edge_process, edge) = deployment.instance("edge", "edge", homes[2].path()).await?;
    eprintln!("deployment up after {:?}", started.elapsed());

    // Alice registers through api-1, bob through api-2; alice's community, bob joins on api-2.
    let (mut alice, _) = Client::new(one).register("alice").await?;
    let (mut bob, _) = Client::new(two).register("bob").await?;
    let server = alice.create_server("Rustaceans").await?;
    let channel = alice.create_channel(&server, "general").await?;
    let code = alice.create_invite(&server).await?;
    let joined = bob.join(&code).await?;
    assert_eq!(joined["id"], json!(server), "{joined}");
    assert_eq!(joined["channels"][0]["id"], json!(channel), "{joined}");

    // Bob's join is visible on the edge with his token, before he subscribes there.
    let mut bob_on_edge = bob.at(edge);
    let seen = bob_on_edge
        .ok(
            "query($c: ID!) { channel(id: $c) { id } }",
            json!({ "c": channel }),
        )
        .await?;
    assert_eq!(seen["channel"]["id"], json!(channel), "{seen}");
    let bob_token = bob.token.clone().context("bob's token")?;

    let mut subscriber = Subscriber::connect_to_process(edge, &bob_token).await?;
    subscriber
        .subscribe("1", CHANNEL_EVENTS, json!({ "c": channel, "after": "0" }))
        .await?;
    // An empty channel: nothing to catch up on; the subscription is in place and live.
    subscriber.expect_nothing(Duration::from_secs(1)).await?;

    // Alice sends through api-1 ...
    alice.consistency = None;
    let first = common::send(&mut alice, &channel, "across processes").await?;
    let token = alice
        .consistency
        .clone()
        .context("api-1 returned no consistency token with sendMessage")?;
    // ... and reads it through api-2 with the token api-1 returned: at once, no retry.
    let mut alice_on_two = alice.at(two);
    alice_on_two.consistency = Some(token);
    let history = alice_on_two.ok(HISTORY, json!({ "c": channel })).await?;
    assert_eq!(
        history_ids(&history),
        std::slice::from_ref(&first),
        "{history}"
    );
    let node = &history["channel"]["messages"]["edges"][0]["node"];
    assert_eq!(node["body"], "across processes");
    assert_eq!(node["author"]["username"], "alice");

    // It reaches bob on the edge, live.
    let event = subscriber.next_process_event("1").await?;
    assert_eq!(event["__typename"], "MessageSent", "{event}");
    assert_eq!(event["message"]["id"], json!(first), "{event}");
    assert_eq!(event["message"]["body"], "across processes");
    assert_eq!(event["message"]["author"]["username"], "alice");
    let cursor = event["cursor"]
        .as_str()
        .context("the event has no cursor")?
        .to_owned();
    subscriber
        .expect_nothing(Duration::from_millis(500))
        .await?;

    // Bob goes away; alice sends five more; bob comes back after the last event he saw.
    subscriber.disconnect().await?;
    let mut missed = Vec::new();
    for n in 1..=5 {
        missed.push(common::send(&mut alice, &channel, &format!("while bob was away {n}")).await?);
    }
    let mut subscriber = Subscriber::connect_to_process(edge, &bob_token).await?;
    subscriber
        .subscribe(
            "2",
            CHANNEL_EVENTS,
            json!({ "c": channel, "after": cursor }),
        )
        .await?;
    let mut resumed = Vec::new();
    let mut cursors = vec![cursor.parse::<i64>().context("a numeric cursor")?];
    for _ in 0..5 {
        let event = subscriber.next_process_event("2").await?;
        assert_eq!(event["__typename"], "MessageSent", "{event}");
        resumed.push(
            event["message"]["id"]
                .as_str()
                .context("message id")?
                .to_owned(),
        );
        cursors.push(
            event["cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .context("cursor")?,
        );
    }
    assert_eq!(
        resumed, missed,
        "exactly the five missed messages, in order"
    );
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "cursors increase: {cursors:?}"
    );
    // Nothing more: no duplicate of what was caught up, and not the first message again.
    subscriber.expect_nothing(Duration::from_secs(2)).await?;
    // And it is live again: the next message is the next event.
    let last = common::send(&mut alice, &channel, "welcome back").await?;
    let event = subscriber.next_process_event("2").await?;
    assert_eq!(event["message"]["id"], json!(last), "{event}");
    subscriber
        .expect_nothing(Duration::from_millis(500))
        .await?;

    // Bob reacts through api-2: the edge pushes it, and alice reads it through api-1.
    bob.ok(
        "mutation($m: ID!) { addReaction(messageId: $m, emoji: \"🎉\") { id } }",
        json!({ "m": last }),
    )
    .await?;
    let reacted = subscriber.next_process_event("2").await?;
    assert_eq!(reacted["__typename"], "ReactionChanged", "{reacted}");
    assert_eq!(reacted["user"]["username"], "bob", "{reacted}");
    assert_eq!(
        reacted["message"]["reactions"],
        json!([{ "emoji": "🎉", "count": 1 }]),
        "{reacted}"
    );
    alice.consistency = bob.consistency.clone();
    let seen = alice
        .ok(
            "query($m: ID!) { message(id: $m) { reactions { emoji count reactedByMe \
             firstReactors { username } } } }",
            json!({ "m": last }),
        )
        .await?;
    assert_eq!(
        seen["message"]["reactions"],
        json!([{ "emoji": "🎉", "count": 1, "reactedByMe": false,
                 "firstReactors": [{ "username": "bob" }] }]),
        "{seen}"
    );

    // Bob replies in the thread of alice's last message through api-2: the edge announces it,
    // and alice reads the thread through api-1.
    bob.ok(
        "mutation($c: ID!, $r: ID!) { sendMessage(input: {channelId: $c, body: \"in the thread\", \
         threadRootId: $r}) { id } }",
        json!({ "c": channel, "r": last }),
    )
    .await?;
    let replied = subscriber.next_process_event("2").await?;
    assert_eq!(replied["__typename"], "ThreadReplied", "{replied}");
    assert_eq!(replied["rootId"], json!(last), "{replied}");
    assert_eq!(replied["reply"]["body"], "in the thread", "{replied}");
    assert_eq!(replied["root"]["thread"]["replyCount"], 1, "{replied}");
    alice.consistency = bob.consistency.clone();
    let thread = alice
        .ok(
            "query($r: ID!) { thread(rootId: $r) { edges { cursor node { body author { username } } } } }",
            json!({ "r": last }),
        )
        .await?;
    assert_eq!(
        thread["thread"]["edges"],
        json!([{ "cursor": "1", "node": { "body": "in the thread", "author": { "username": "bob" } } }]),
        "{thread}"
    );

    // alice pins it through api-1: the edge pushes it, bob reads the pins through api-2.
    alice
        .ok(
            "mutation($m: ID!) { pinMessage(messageId: $m) { id } }",
            json!({ "m": last }),
        )
        .await?;
    let pinned = subscriber.next_process_event("2").await?;
    assert_eq!(pinned["__typename"], "MessagePinned", "{pinned}");
    assert_eq!(
        pinned["message"]["pinnedBy"]["username"], "alice",
        "{pinned}"
    );
    bob.consistency = alice.consistency.clone();
    let pins = bob
        .ok(
            "query($c: ID!) { channel(id: $c) { pins { edges { node { id } } } } }",
            json!({ "c": channel }),
        )
        .await?;
    assert_eq!(
        pins["channel"]["pins"]["edges"],
        json!([{ "node": { "id": last } }]),
        "{pins}"
    );

    // bob reports it through api-2; alice finds it in the queue through api-1 and hides it:
    // bob sees it hidden, live and in the history, without its words; then she restores it.
    bob.ok(
        "mutation($m: ID!) { reportMessage(input: {messageId: $m, reason: \"off topic\"}) }",
        json!({ "m": last }),
    )
    .await?;
    alice.consistency = bob.consistency.clone();
    let queue = alice
        .ok(
            "query($s: ID!) { moderationQueue(serverId: $s, first: 5) { edges { node { id \
             moderation { reports { reason reportedBy { username } } } } } } }",
            json!({ "s": server }),
        )
        .await?;
    assert_eq!(
        queue["moderationQueue"]["edges"],
        json!([{ "node": { "id": last, "moderation": { "reports": [
            { "reason": "off topic", "reportedBy": { "username": "bob" } }] } } }]),
        "{queue}"
    );
    let decide = |name: &str| {
        format!(
            "mutation($m: ID!) {{ {name}(input: {{messageId: $m, reason: \"checked\"}}) {{ id }} }}"
        )
    };
    alice
        .ok(&decide("hideMessage"), json!({ "m": last }))
        .await?;
    let hidden = subscriber.next_process_event("2").await?;
    assert_eq!(hidden["__typename"], "MessageHidden", "{hidden}");
    assert_eq!(
        hidden["message"],
        json!({ "id": last, "body": "", "hidden": true }),
        "{hidden}"
    );
    alice
        .ok(&decide("restoreMessage"), json!({ "m": last }))
        .await?;
    let restored = subscriber.next_process_event("2").await?;
    assert_eq!(restored["__typename"], "MessageRestored", "{restored}");
    assert_eq!(restored["message"]["hidden"], false, "{restored}");
    assert_ne!(restored["message"]["body"], "", "{restored}");
    subscriber.disconnect().await?;

    // serverEvents on the edge: from the start, the server's news so far (from the catalog in
    // PostgreSQL), then alice's topic through api-1 live (from the updates topic).
    let mut news = Subscriber::connect_to_process(edge, &bob_token).await?;
    news.subscribe("s", SERVER_EVENTS, json!({ "s": server, "after": "0" }))
        .await?;
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(next_server_event(&mut news, "s").await?["kind"].clone());
    }
    assert_eq!(
        kinds,
        vec![
            json!("CHANNEL_CREATED"),
            json!("MEMBER_JOINED"),
            json!("MESSAGE_PINNED")
        ]
    );
    news.expect_nothing(Duration::from_millis(500)).await?;
    alice
        .ok(
            "mutation($c: ID!) { setChannelTopic(channelId: $c, topic: \"Across processes\") { id } }",
            json!({ "c": channel }),
        )
        .await?;
    let topic = next_server_event(&mut news, "s").await?;
    assert_eq!(topic["kind"], "CHANNEL_TOPIC_CHANGED", "{topic}");
    assert_eq!(topic["topic"], "Across processes", "{topic}");
    // 4 to 6 are the report, the hide and the restore above: moderation news, which bob (a
    // member) is not told.
    assert_eq!(topic["cursor"], "7", "{topic}");
    news.expect_nothing(Duration::from_millis(500)).await?;
    news.disconnect().await?;

    // api-2 sees the whole history too, with alice's newest token (the thread reply stays in
    // its thread).
    alice_on_two.consistency = alice.consistency.clone();
    let history = alice_on_two.ok(HISTORY, json!({ "c": channel })).await?;
    let mut expected = vec![first];
    expected.extend(missed);
    expected.push(last);
    assert_eq!(history_ids(&history), expected);

    // No API or edge instance wrote a file: not while running, not when stopped.
    for (home, name) in homes.iter().zip(["api-1", "api-2", "edge"]) {
        let written = everything_under(home.path())?;
        assert!(
            written.is_empty(),
            "{name} wrote into its working directory: {written:?}"
        );
    }
    for instance in [api_one, api_two, edge_process] {
        let name = instance.name.clone();
        let status = instance.stop().await?;
        eprintln!("{name} stopped: {status}");
    }
    for (home, name) in homes.iter().zip(["api-1", "api-2", "edge"]) {
        let written = everything_under(home.path())?;
        assert!(
            written.is_empty(),
            "{name} wrote into its working directory: {written:?}"
        );
    }
    processes.reverse();
    deployment.finish(processes).await?;
    eprintln!("test took {:?}", started.elapsed());
    Ok(())
}

/// What one server looks like through the API: its name, channel ids in creation order, and
/// its members' usernames in join order.
async fn server_view(
    client: &mut Client,
    server: &str,
) -> anyhow::Result<(Value, Vec<String>, Vec<String>)> {
    let data = client
        .ok(
            "query($s: ID!) { server(id: $s) { name channels { id } \
             members(first: 100) { totalCount edges { node { user { username } } } } } }",
            json!({ "s": server }),
        )
        .await?;
    let server = &data["server"];
    ensure!(!server.is_null(), "the server is not visible: {data}");
    let channels = server["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|channel| channel["id"].as_str().map(str::to_owned))
        .collect();
    let members: Vec<String> = server["members"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["user"]["username"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        server["members"]["totalCount"] == json!(members.len()),
        "totalCount disagrees with the members listed: {data}"
    );
    Ok((server["name"].clone(), channels, members))
}

/// The "Rebuilders" server shows exactly `channels` and `members`, in order.
fn expect_view(
    label: &str,
    view: &(Value, Vec<String>, Vec<String>),
    channels: &[String],
    members: &[String],
) {
    assert_eq!(view.0, json!("Rebuilders"), "{label}");
    assert_eq!(
        view.1, channels,
        "{label}: every channel, in creation order"
    );
    assert_eq!(view.2, members, "{label}: every member, in join order");
}

/// What a writer created while the catalog was rebuilt.
#[derive(Default)]
struct Written {
    /// Channel ids or usernames, in the order created, with when each write returned.
    created: Vec<(String, Instant)>,
    /// Every consistency token handed out, to wait for each.
    tokens: Vec<String>,
}

impl Written {
    fn names(&self) -> Vec<String> {
        self.created.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Writes that returned between `from` and `to`.
    fn between(&self, from: Instant, to: Instant) -> usize {
        self.created
            .iter()
            .filter(|(_, at)| *at >= from && *at <= to)
            .count()
    }
}

/// Alice sends a message and creates a channel, again and again until `stop`; she reads each
/// channel back at once through the API with her consistency token.
async fn keep_creating_channels(
    mut alice: Client,
    server: String,
    general: String,
    stop: CancellationToken,
) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let started = Instant::now();
    let mut n = 0;
    while !stop.is_cancelled() && started.elapsed() < PATIENCE {
        n += 1;
        common::send(&mut alice, &general, &format!("during the rebuild {n}")).await?;
        written.tokens.extend(alice.consistency.clone());
        let channel = alice
            .create_channel(&server, &format!("during-{n}"))
            .await?;
        written.created.push((channel.clone(), Instant::now()));
        written.tokens.extend(alice.consistency.clone());
        let (_, channels, _) = server_view(&mut alice, &server).await?;
        ensure!(
            channels.contains(&channel),
            "alice does not see the channel she just created (during-{n}, {channel})"
        );
    }
    Ok(written)
}

/// Newcomers register and join, one after the other, until `stop`; each reads their own
/// membership back at once through the API with their consistency token.
async fn keep_joining(
    anonymous: Client,
    server: String,
    code: String,
    stop: CancellationToken,
) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let started = Instant::now();
    let mut n = 0;
    while !stop.is_cancelled() && started.elapsed() < PATIENCE {
        n += 1;
        let username = format!("newcomer{n}");
        let (mut newcomer, _) = anonymous.clone().register(&username).await?;
        newcomer.join(&code).await?;
        written.created.push((username.clone(), Instant::now()));
        written.tokens.extend(newcomer.consistency.clone());
        let (_, _, members) = server_view(&mut newcomer, &server).await?;
        ensure!(
            members.contains(&username),
            "{username} does not see their own membership"
        );
    }
    Ok(written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_catalog_serves_queries_after_the_switch_with_nothing_missing(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deployment = Deployment::start("one_read_side", PATIENCE * 2).await?;
    let mut processes = deployment.background().await?;
    let home = tempfile::tempdir()?;
    let (api_process, api) = deployment.instance("api", "api", home.path()).await?;
    processes.push(api_process);
    eprintln!("deployment up after {:?}", started.elapsed());

    // Several users, two servers, channels, members.
    let anonymous = Client::new(api);
    let (mut alice, _) = anonymous.clone().register("alice").await?;
    let (mut bob, _) = anonymous.clone().register("bob").await?;
    let (mut carol, _) = anonymous.clone().register("carol").await?;
    let (mut dave, _) = anonymous.clone().register("dave").await?;
    let server = alice.create_server("Rebuilders").await?;
    let mut channels = Vec::new();
    for name in ["general", "random", "dev"] {
        channels.push(alice.create_channel(&server, name).await?);
    }
    let code = alice.create_invite(&server).await?;
    let mut members = vec!["alice".to_owned()];
    for (client, name) in [
        (&mut bob, "bob"),
        (&mut carol, "carol"),
        (&mut dave, "dave"),
    ] {
        client.join(&code).await?;
        members.push(name.to_owned());
    }
    let bobs = bob.create_server("Bob's place").await?;
    let bobs_channel = bob.create_channel(&bobs, "lounge").await?;
    let bobs_code = bob.create_invite(&bobs).await?;
    alice.join(&bobs_code).await?;
    common::send(&mut alice, &channels[0], "before the rebuild").await?;

    let before = server_view(&mut alice, &server).await?;
    assert_eq!(before.1, channels);
    assert_eq!(before.2, members);
    let live = deployment.listed("catalog").await?;
    assert_eq!(live["version"], json!(1), "{live}");

    // The rebuild runs while alice keeps creating channels and newcomers keep joining.
    let stop = CancellationToken::new();
    let creating = tokio::spawn(keep_creating_channels(
        alice.clone(),
        server.clone(),
        channels[0].clone(),
        stop.clone(),
    ));
    let joining = tokio::spawn(keep_joining(
        anonymous.clone(),
        server.clone(),
        code.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rebuild_started = Instant::now();
    let built = deployment
        .must(&[
            "projections",
            "rebuild",
            "catalog",
            "--no-switch",
            "--batch",
            "20",
        ])
        .await?;
    let rebuild_ended = Instant::now();
    eprintln!("rebuild took {:?}", rebuild_ended - rebuild_started);
    let version: i32 = built
        .split_whitespace()
        .find_map(|word| word.strip_prefix('v')?.strip_suffix(':')?.parse().ok())
        .with_context(|| format!("no version in {built:?}"))?;
    assert_eq!(version, 2, "{built}");
    let building = deployment.listed("catalog").await?;
    assert_eq!(
        building["version"],
        json!(1),
        "still v1 until the switch: {building}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    deployment
        .must(&["projections", "switch", "catalog", &version.to_string()])
        .await?;
    // Writes go on across the switch, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let created = tokio::time::timeout(PATIENCE * 2, creating)
        .await
        .context("the channel writer did not stop")???;
    let joined = tokio::time::timeout(PATIENCE * 2, joining)
        .await
        .context("the newcomers did not stop")???;
    let (created_during, joined_during) = (
        created.between(rebuild_started, rebuild_ended),
        joined.between(rebuild_started, rebuild_ended),
    );
    eprintln!(
        "{} channels ({created_during} during the rebuild), {} newcomers ({joined_during} during \
         the rebuild)",
        created.created.len(),
        joined.created.len()
    );
    assert!(
        created_during + joined_during > 0,
        "writes went on while the rebuild ran"
    );
    channels.extend(created.names());
    members.extend(joined.names());

    // Every write's own token: each read waits for that write on the live version.
    let mut reader = alice.clone();
    for token in created.tokens.iter().chain(&joined.tokens) {
        reader.consistency = Some(token.clone());
        reader.ok("{ me { id } }", json!({})).await?;
    }
    let live = deployment.listed("catalog").await?;
    assert_eq!(live["version"], json!(2), "{live}");
    assert_eq!(live["building"], json!([]), "{live}");

    // The same API, never restarted, answers from v2 with nothing missing.
    let mut alice_fresh = alice.clone();
    alice_fresh.consistency = reader.consistency.clone();
    let after_switch = server_view(&mut alice_fresh, &server).await?;
    expect_view("after the switch", &after_switch, &channels, &members);
    let servers = alice_fresh.ok("{ servers { id name } }", json!({})).await?;
    assert_eq!(
        servers["servers"],
        json!([{ "id": server, "name": "Rebuilders" }, { "id": bobs, "name": "Bob's place" }])
    );
    let (bobs_name, bobs_channels, bobs_members) = server_view(&mut bob, &bobs).await?;
    assert_eq!(bobs_name, json!("Bob's place"));
    assert_eq!(bobs_channels, std::slice::from_ref(&bobs_channel));
    assert_eq!(bobs_members, ["bob", "alice"]);

    // v1 dropped: the API still answers the same, and takes new writes.
    deployment
        .must(&["projections", "drop", "catalog", "1"])
        .await?;
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'catalog_v1'",
    )
    .fetch_one(&deployment.db.pool().await?)
    .await?;
    assert_eq!(schemas, 0, "catalog_v1 is gone");
    let mut plain = alice.clone();
    plain.consistency = None;
    expect_view(
        "after the drop",
        &server_view(&mut plain, &server).await?,
        &channels,
        &members,
    );
    let servers = plain.ok("{ servers { id name } }", json!({})).await?;
    assert_eq!(
        servers["servers"],
        json!([{ "id": server, "name": "Rebuilders" }, { "id": bobs, "name": "Bob's place" }])
    );
    let newest = alice.create_channel(&server, "after-the-drop").await?;
    channels.push(newest);
    expect_view(
        "after a new write",
        &server_view(&mut alice, &server).await?,
        &channels,
        &members,
    );
    let listed_after = deployment.listed("catalog").await?;
    assert_eq!(listed_after["version"], json!(2), "{listed_after}");

    deployment.finish(processes).await?;
    eprintln!("test took {:?}", started.elapsed());
    Ok(())
}
