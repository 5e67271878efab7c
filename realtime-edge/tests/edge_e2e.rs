//! The edge role against real PostgreSQL, tansu and SecantusDB: the API role takes commands,
//! the relay publishes them, the catalog and timeline projectors (in PostgreSQL and MongoDB)
//! publish updates to `aether.updates.v1`, and two edge instances fan those out to their own
//! WebSocket clients.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_commands::postgres::PgEventStore;
use aether_kafka::admin::init_topics;
use aether_kafka::KafkaConfig;
use aether_projections::stream::metrics::ProjectorMetrics;
use aether_projections::stream::role::{run_projector, KafkaUpdates, Stores};
use aether_projections::stream::ProjectorOptions;
use aether_realtime_edge::{Running, UpdateFeed};
use aether_test_support::{kafka_config, TestDatabase};
use anyhow::Context;
use common::{community, newest, send, Client, Subscriber, CHANNEL_EVENTS};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Longest an instance, or a test database, may take to stop.
const STOP_WAIT: Duration = Duration::from_secs(30);

fn mongo_url() -> String {
    std::env::var("AETHER_TEST_MONGO")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".to_owned())
}

async fn instance(
    dir: &Path,
    secret: &Path,
    db: &TestDatabase,
    kafka: &KafkaConfig,
    updates: UpdateFeed,
) -> anyhow::Result<Running> {
    // The API instance runs the relay; edges never do.
    let with_relay = updates == UpdateFeed::LocalProjectors;
    let config = common::unlimited();
    common::distributed(config, dir, secret, db, kafka, with_relay, updates).await
}

/// The API role, two edges, and the catalog and timeline projector processes' work, in-process.
struct Deployment {
    db: TestDatabase,
    mongo: mongodb::Database,
    api: Running,
    edges: [Running; 2],
    projectors: CancellationToken,
    /// Stop everything if a test fails half-way: the edges' feeds run on blocking threads that
    /// would otherwise keep the test's runtime from shutting down.
    _stop: Vec<tokio_util::sync::DropGuard>,
    _dirs: [tempfile::TempDir; 3],
}

impl Deployment {
    async fn start() -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        PgEventStore::from_pool(db.pool().await?).migrate().await?;
        let kafka = kafka_config(3);
        init_topics(&kafka).await?;
        let dirs = [
            tempfile::tempdir()?,
            tempfile::tempdir()?,
            tempfile::tempdir()?,
        ];
        let secret = dirs[0].path().join("jwt-secret");
        std::fs::write(
            &secret,
            aether_commands::keys::Keyring::generate().to_json(),
        )?;

        let mongo = mongodb::Client::with_uri_str(mongo_url())
            .await?
            .database(&format!("edge_{}", uuid::Uuid::new_v4().simple()));
        let stores = Stores {
            postgres: db.pool().await?,
            mongo: Some(mongo.clone()),
        };
        let projectors = CancellationToken::new();
        for name in ["catalog", "timeline"] {
            let (stores, kafka, token) = (stores.clone(), kafka.clone(), projectors.clone());
            let updates = Arc::new(KafkaUpdates::new(&kafka)?);
            let metrics = Arc::new(Mutex::new(Arc::new(ProjectorMetrics::new(name, 1))));
            tokio::spawn(async move {
                let options = ProjectorOptions {
                    batch_size: 100,
                    ..ProjectorOptions::default()
                };
                if let Err(error) = run_projector(
                    stores,
                    kafka,
                    name.to_owned(),
                    options,
                    updates,
                    metrics,
                    token,
                )
                .await
                {
                    eprintln!("projector {name} failed: {error}");
                }
            });
        }
        // Edges start before any update exists: they read from the topic's end at start-up.
        let edges = [
            instance(
                dirs[1].path(),
                &secret,
                &db,
                &kafka,
                UpdateFeed::UpdatesTopic,
            )
            .await?,
            instance(
                dirs[2].path(),
                &secret,
                &db,
                &kafka,
                UpdateFeed::UpdatesTopic,
            )
            .await?,
        ];
        let api = instance(
            dirs[0].path(),
            &secret,
            &db,
            &kafka,
            UpdateFeed::LocalProjectors,
        )
        .await?;
        let stop = [&api, &edges[0], &edges[1]]
            .iter()
            .map(|running| running.shutdown.clone().drop_guard())
            .chain(std::iter::once(projectors.clone().drop_guard()))
            .collect();
        Ok(Self {
            db,
            mongo,
            api,
            edges,
            projectors,
            _stop: stop,
            _dirs: dirs,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.projectors.cancel();
        let [one, two] = self.edges;
        // Every instance stops cleanly, and soon: a role that failed while the test ran, or
        // that does not stop, says so here.
        for (name, running) in [
            ("the first edge", one),
            ("the second edge", two),
            ("the API instance", self.api),
        ] {
            tokio::time::timeout(STOP_WAIT, running.stop())
                .await
                .with_context(|| format!("{name} did not stop within {STOP_WAIT:?}"))?
                .with_context(|| format!("{name} failed"))?;
        }
        let _ = tokio::time::timeout(STOP_WAIT, self.mongo.drop()).await;
        tokio::time::timeout(STOP_WAIT, self.db.drop_database())
            .await
            .context("dropping the test database took too long")?
            .context("dropping the test database")?;
        Ok(())
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

    // The edges' read models catch up with the join (they mirror the log) before bob subscribes:
    // a query with the token of bob's join, the most recent write, waits for it.
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

    // Bob drops his connection; 100 messages are sent meanwhile.
    drop(on_one);
    let mut sent = Vec::new();
    for n in 0..100 {
        sent.push(send(&mut alice, &place.channel_id, &format!("while away {n}")).await?);
    }
    // He comes back to the other edge with his cursor: exactly those 100, in order, then live.
    let mut back = Subscriber::connect(deployment.edges[1].local_addr, &token(&bob)).await?;
    back.subscribe(
        "2",
        CHANNEL_EVENTS,
        json!({ "c": place.channel_id, "after": cursor }),
    )
    .await?;
    for (n, id) in sent.iter().enumerate() {
        let event = back.next_event("2").await?;
        assert_eq!(event["message"]["id"], id.as_str(), "message {n} of 100");
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
