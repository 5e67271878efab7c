//! A timeline rebuilt and switched while messages flow, with real processes (`aether serve` as
//! relay, the catalog, receipts and timeline projectors, an API and an edge) against real
//! PostgreSQL, tansu and a MongoDB-compatible server: a subscription open on the edge across
//! the switch gets every message exactly once, in order, and the history reads whole after it.
//! (The deployment is `common::processes`, shared with `one_read_side.rs`.)

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use common::processes::{Deployment, EVENT_WAIT, PATIENCE};
use common::{Client, Subscriber, REQUEST_TIMEOUT};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages the writer sends at least (it goes on until told to stop).
const AT_LEAST: usize = 60;

/// Messages sent once the switch is done and the writer stopped.
const AFTER_THE_SWITCH: usize = 5;

impl Client {
    /// `data.<field>.<key>` of a mutation, as a string.
    async fn mutate(
        &mut self,
        query: &str,
        variables: Value,
        field: &str,
        key: &str,
    ) -> anyhow::Result<String> {
        let data = self.ok(query, variables).await?;
        Ok(data[field][key]
            .as_str()
            .with_context(|| format!("no {field}.{key} in {data}"))?
            .to_owned())
    }
}

const CHANNEL_EVENTS: &str =
    "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, after: $after) { \
     __typename cursor ... on MessageSent { message { id body } } } }";

const HISTORY: &str = "query($c: ID!, $after: String) { channel(id: $c) { messages(first: 100, \
                       after: $after) { edges { cursor node { id body } } pageInfo { hasNextPage } } } }";

/// One message sent: its body, id, and when the send returned.
struct Sent {
    body: String,
    id: String,
    at: Instant,
}

/// Alice sends "message N", a few every 100 ms, at least [`AT_LEAST`] and on until `stop`
/// (never past [`PATIENCE`]). Returns what she sent and her client (with the newest token).
async fn keep_sending(
    mut alice: Client,
    channel: String,
    stop: CancellationToken,
) -> anyhow::Result<(Vec<Sent>, Client)> {
    let mut sent = Vec::new();
    let started = Instant::now();
    while (sent.len() < AT_LEAST || !stop.is_cancelled()) && started.elapsed() < PATIENCE {
        let body = format!("message {}", sent.len() + 1);
        // Sends only write: no waiting for the read models to reach the previous one.
        let newest = alice.consistency.take();
        let id = common::send(&mut alice, &channel, &body).await?;
        alice.consistency = alice.consistency.take().or(newest);
        sent.push(Sent {
            body,
            id,
            at: Instant::now(),
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok((sent, alice))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_switch_during_traffic_loses_no_update_for_an_open_subscription(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deployment = Deployment::start("switch_under_sub", PATIENCE).await?;
    let mut processes = deployment.background().await?;
    let homes = [tempfile::tempdir()?, tempfile::tempdir()?];
    let (api_process, api) = deployment.instance("api", "api", homes[0].path()).await?;
    let (edge_process, edge) = deployment.instance("edge", "edge", homes[1].path()).await?;
    processes.extend([api_process, edge_process]);
    eprintln!("deployment up after {:?}", started.elapsed());

    // Alice's server and channel; bob joins, and his membership is visible on the edge.
    let anonymous = Client::new(api);
    let (mut alice, _) = anonymous.clone().register("alice").await?;
    let (mut bob, _) = anonymous.clone().register("bob").await?;
    let server = alice
        .mutate(
            "mutation { createServer(input: {name: \"Switchers\"}) { id } }",
            json!({}),
            "createServer",
            "id",
        )
        .await?;
    let channel = alice
        .mutate(
            "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"general\"}) { id } }",
            json!({ "s": server }),
            "createChannel",
            "id",
        )
        .await?;
    let code = alice
        .mutate(
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": server }),
            "createInvite",
            "code",
        )
        .await?;
    bob.ok(
        "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
        json!({ "c": code }),
    )
    .await?;
    let mut bob_on_edge = Client {
        addr: edge,
        ..bob.clone()
    };
    let seen = bob_on_edge
        .ok(
            "query($c: ID!) { channel(id: $c) { id } }",
            json!({ "c": channel }),
        )
        .await?;
    assert_eq!(seen["channel"]["id"], json!(channel), "{seen}");
    let live = deployment.listed("timeline").await?;
    assert_eq!(live["version"], json!(1), "{live}");

    // Bob subscribes on the edge from the start of the (empty) channel.
    let mut subscriber =
        Subscriber::connect_to_process(edge, bob.token.as_deref().context("bob's token")?).await?;
    subscriber
        .send(json!({ "id": "1", "type": "subscribe", "payload": {
            "query": CHANNEL_EVENTS, "variables": { "c": channel, "after": "0" } } }))
        .await?;
    let early = subscriber
        .next_message_or_none(Duration::from_secs(1))
        .await?;
    ensure!(early.is_none(), "an empty channel, yet: {early:?}");
    let (to_test, mut heard) = mpsc::unbounded_channel();
    let stop_reading = CancellationToken::new();
    let reader = tokio::spawn(subscriber.forward(to_test, stop_reading.clone()));

    // Alice keeps sending while the timeline is rebuilt and switched.
    let stop_sending = CancellationToken::new();
    let writer = tokio::spawn(keep_sending(
        alice.clone(),
        channel.clone(),
        stop_sending.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let rebuild_started = Instant::now();
    let rebuilt = deployment
        .must(&["projections", "rebuild", "timeline", "--batch", "200"])
        .await;
    let rebuild_ended = Instant::now();
    eprintln!("rebuild took {:?}", rebuild_ended - rebuild_started);
    // Messages keep flowing across the switch for a while, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_sending.cancel();
    let (mut sent, writer_alice) = tokio::time::timeout(PATIENCE, writer)
        .await
        .context("the writer did not stop")???;
    let rebuilt = rebuilt?;
    ensure!(rebuilt.contains("v2 is live"), "rebuild output: {rebuilt}");
    let during = sent
        .iter()
        .filter(|s| s.at >= rebuild_started && s.at <= rebuild_ended)
        .count();
    let after_switch = sent.iter().filter(|s| s.at > rebuild_ended).count();
    eprintln!(
        "{} messages sent by the writer: {during} while the rebuild ran, {after_switch} after the \
         switch",
        sent.len()
    );
    assert!(
        sent.len() >= AT_LEAST,
        "the writer sent only {}",
        sent.len()
    );
    assert!(during > 0, "messages flowed while the rebuild ran");
    assert!(after_switch > 0, "messages flowed after the switch");
    let live = deployment.listed("timeline").await?;
    assert_eq!(live["version"], json!(2), "{live}");
    assert_eq!(live["building"], json!([]), "{live}");

    // A few more, well after the switch.
    alice.consistency = writer_alice.consistency;
    for n in 1..=AFTER_THE_SWITCH {
        let body = format!("after the switch {n}");
        let id = common::send(&mut alice, &channel, &body).await?;
        sent.push(Sent {
            body,
            id,
            at: Instant::now(),
        });
    }
    let expected: Vec<String> = sent.iter().map(|s| s.body.clone()).collect();
    let expected_ids: Vec<String> = sent.iter().map(|s| s.id.clone()).collect();

    // Bob gets every message once, in order, and then nothing more for 2 s.
    let mut bodies = Vec::new();
    let mut ids = Vec::new();
    let mut cursors: Vec<i64> = Vec::new();
    let mut other = Vec::new();
    let receiving = tokio::time::Instant::now();
    let mut quiet_for = EVENT_WAIT;
    loop {
        if bodies.len() >= expected.len() {
            quiet_for = Duration::from_secs(2);
        }
        let Ok(message) = tokio::time::timeout(quiet_for, heard.recv()).await else {
            break;
        };
        let message = message.context("the subscriber's reader ended")??;
        ensure!(
            message["id"] == "1" && message["type"] == "next",
            "expected an event, got {message}"
        );
        ensure!(
            message["payload"].get("errors").is_none(),
            "subscription error: {message}"
        );
        let event = &message["payload"]["data"]["channelEvents"];
        cursors.push(
            event["cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("no numeric cursor: {event}"))?,
        );
        if event["__typename"] == "MessageSent" {
            bodies.push(event["message"]["body"].as_str().unwrap_or("").to_owned());
            ids.push(event["message"]["id"].as_str().unwrap_or("").to_owned());
        } else {
            other.push(event.clone());
        }
        ensure!(
            receiving.elapsed() < PATIENCE,
            "still receiving after {PATIENCE:?}"
        );
    }
    stop_reading.cancel();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, reader).await;
    let missing: Vec<&String> = expected.iter().filter(|b| !bodies.contains(b)).collect();
    let repeated: Vec<&String> = expected
        .iter()
        .filter(|b| bodies.iter().filter(|got| got == b).count() > 1)
        .collect();
    eprintln!(
        "bob got {} message events for {} sent in {:?}",
        bodies.len(),
        expected.len(),
        receiving.elapsed()
    );
    assert!(
        missing.is_empty() && repeated.is_empty(),
        "bob missed {missing:?} and got twice {repeated:?}; received in order: {bodies:?}"
    );
    assert_eq!(bodies, expected, "every message, in send order");
    assert_eq!(ids, expected_ids);
    assert!(other.is_empty(), "only message events: {other:?}");
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "cursors increase: {cursors:?}"
    );

    // The history through the API (reading v2) has them all, in order.
    let (mut history_bodies, mut history_ids) = (Vec::new(), Vec::new());
    let mut after = Value::Null;
    loop {
        let page = alice
            .ok(HISTORY, json!({ "c": channel, "after": after }))
            .await?;
        let messages = &page["channel"]["messages"];
        let edges = messages["edges"]
            .as_array()
            .with_context(|| format!("no history: {page}"))?;
        for edge in edges {
            history_bodies.push(edge["node"]["body"].as_str().unwrap_or("").to_owned());
            history_ids.push(edge["node"]["id"].as_str().unwrap_or("").to_owned());
        }
        if messages["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = edges.last().context("an empty page with more")?["cursor"].clone();
        ensure!(
            history_ids.len() <= 10 * expected.len(),
            "the history does not end"
        );
    }
    assert_eq!(history_bodies, expected, "the history after the switch");
    assert_eq!(history_ids, expected_ids);
    let live = deployment.listed("timeline").await?;
    assert_eq!(live["version"], json!(2), "{live}");

    deployment.finish(processes).await?;
    eprintln!("test took {:?}", started.elapsed());
    Ok(())
}
