//! The edge role against real PostgreSQL, tansu and SecantusDB: the API role takes commands,
//! the relay publishes them, the catalog, receipts and timeline projectors (in PostgreSQL and
//! MongoDB) publish updates to `aether.updates.v1`, and two edge instances fan those out to
//! their own WebSocket clients, catching up from the same read models.

mod common;

use std::time::Duration;

use aether_cli::roles::Running;
use common::{community, newest, send, Client, Cluster, Subscriber, CHANNEL_EVENTS};
use serde_json::json;

/// The API role (with the relay), two edges, and the projector processes' work, in-process.
struct Deployment {
    cluster: Cluster,
    api: Running,
    edges: [Running; 2],
}

impl Deployment {
    async fn start() -> anyhow::Result<Self> {
        let cluster = Cluster::start(3).await?;
        // Edges start before any update exists: they read from the topic's end at start-up.
        let edges = [
            cluster.instance(common::unlimited(), false).await?,
            cluster.instance(common::unlimited(), false).await?,
        ];
        let api = cluster.instance(common::unlimited(), true).await?;
        Ok(Self {
            cluster,
            api,
            edges,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let [one, two] = self.edges;
        self.cluster.stop(vec![one, two, self.api]).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_edges_get_a_message_sent_through_the_api_and_resume_without_gaps(
) -> anyhow::Result<()> {
    let deployment = Deployment::start().await?;
    let mut anonymous = Client::new(deployment.api.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let (mut carol, _) = anonymous.register("carol").await?;
    let place = community(&mut alice, &mut bob).await?;
    let token = |client: &Client| client.token.clone().unwrap_or_default();

    // A query on an edge with the token of bob's join, the most recent write, reads it: the
    // edges query the projectors' read models, as the API instance does.
    for edge in &deployment.edges {
        let mut bob_here = Client::new(edge.local_addr).with_token(&token(&bob));
        bob_here.consistency = newest(&alice.consistency, &bob.consistency);
        bob_here.ok("{ me { id } }", json!({})).await?;
    }
    let mut on_one = Subscriber::connect(deployment.edges[0].local_addr, &token(&bob)).await?;
    let mut on_two = Subscriber::connect(deployment.edges[1].local_addr, &token(&alice)).await?;
    // From the channel's beginning: the first message arrives however long the edges take to
    // register the subscriptions (no client can tell when that is done).
    let from_the_start = json!({ "c": place.channel_id, "after": "0" });
    on_one
        .subscribe("1", CHANNEL_EVENTS, from_the_start.clone())
        .await?;
    on_two
        .subscribe("1", CHANNEL_EVENTS, from_the_start)
        .await?;

    let first = send(&mut alice, &place.channel_id, "to every edge").await?;
    for subscriber in [&mut on_one, &mut on_two] {
        let event = subscriber.next_event("1").await?;
        assert_eq!(event["__typename"], "MessageSent");
        assert_eq!(event["message"]["id"], first.as_str());
        assert_eq!(event["message"]["body"], "to every edge");
    }
    // Both subscriptions are live now: the next message reaches both edges through the
    // updates topic.
    let second = send(&mut alice, &place.channel_id, "live on every edge").await?;
    let one = on_one.next_event("1").await?;
    let two = on_two.next_event("1").await?;
    for event in [&one, &two] {
        assert_eq!(event["message"]["id"], second.as_str());
        assert_eq!(event["message"]["body"], "live on every edge");
    }
    let cursor = one["cursor"].as_str().unwrap_or_default().to_owned();

    // Bob drops his connection; 30 messages are sent meanwhile (each one through the whole
    // path: the test client sends its newest consistency token along, so a send waits until
    // the read models hold the one before).
    drop(on_one);
    let mut sent = Vec::new();
    for n in 0..30 {
        sent.push(send(&mut alice, &place.channel_id, &format!("while away {n}")).await?);
    }
    // He comes back to the other edge with his cursor: exactly those 30, in order, then live.
    let mut back = Subscriber::connect(deployment.edges[1].local_addr, &token(&bob)).await?;
    back.subscribe(
        "2",
        CHANNEL_EVENTS,
        json!({ "c": place.channel_id, "after": cursor }),
    )
    .await?;
    for (n, id) in sent.iter().enumerate() {
        let event = back.next_event("2").await?;
        assert_eq!(event["message"]["id"], id.as_str(), "message {n} of 30");
        assert_eq!(event["message"]["body"], format!("while away {n}"));
    }
    let live = send(&mut alice, &place.channel_id, "and live again").await?;
    let event = back.next_event("2").await?;
    assert_eq!(event["message"]["id"], live.as_str());
    back.assert_quiet(Duration::from_millis(500)).await?;

    // Carol is not a member: no subscription on an edge either.
    let mut outsider = Subscriber::connect(deployment.edges[0].local_addr, &token(&carol)).await?;
    outsider
        .subscribe("3", CHANNEL_EVENTS, json!({ "c": place.channel_id }))
        .await?;
    let refused = outsider.next_message().await?;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let _ = &mut carol;
    deployment.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_has_the_edge_subscription_ended_with_forbidden() -> anyhow::Result<()> {
    let deployment = Deployment::start().await?;
    let mut anonymous = Client::new(deployment.api.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let bob_token = bob.token.clone().unwrap_or_default();
    let mut bob_on_edge = Client::new(deployment.edges[0].local_addr).with_token(&bob_token);
    bob_on_edge.consistency = bob.consistency.clone();
    bob_on_edge.ok("{ me { id } }", json!({})).await?;

    let mut subscriber = Subscriber::connect(deployment.edges[0].local_addr, &bob_token).await?;
    subscriber
        .subscribe(
            "1",
            CHANNEL_EVENTS,
            json!({ "c": place.channel_id, "after": "0" }),
        )
        .await?;
    send(&mut alice, &place.channel_id, "before").await?;
    assert_eq!(
        subscriber.next_event("1").await?["message"]["body"],
        "before"
    );

    alice.consistency = bob.consistency.clone();
    alice
        .ok(
            "mutation($s: ID!, $u: ID!) { removeMember(input: {serverId: $s, userId: $u, reason: \"off topic\"}) }",
            json!({ "s": place.server_id, "u": bob_id }),
        )
        .await?;
    let ended = subscriber.next_message().await?;
    assert_eq!(ended["type"], "next", "{ended}");
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{ended}"
    );
    deployment.stop().await
}
