//! The distributed mode against real PostgreSQL and a Kafka-compatible broker (tansu): two API
//! instances, commands through PostgreSQL, the relay to Kafka, and each instance's read models
//! and subscriptions fed from the log.

mod common;

use std::path::Path;

use aether_commands::postgres::PgEventStore;
use aether_kafka::admin::init_topics;
use aether_kafka::KafkaConfig;
use aether_realtime_edge::{Running, UpdateFeed};
use aether_test_support::{kafka_config, TestDatabase};
use common::{community, newest, send, Client, Subscriber, CHANNEL_EVENTS};
use serde_json::json;

async fn instance(
    dir: &Path,
    secret: &Path,
    db: &TestDatabase,
    kafka: &KafkaConfig,
    with_relay: bool,
) -> anyhow::Result<Running> {
    let (config, updates) = (common::unlimited(), UpdateFeed::LocalProjectors);
    common::distributed(config, dir, secret, db, kafka, with_relay, updates).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_instances_share_one_log() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    PgEventStore::from_pool(db.pool().await?).migrate().await?;
    let kafka = kafka_config(2);
    init_topics(&kafka).await?;
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
    let secret = dirs.0.path().join("jwt-secret");
    std::fs::write(
        &secret,
        aether_commands::keys::Keyring::generate().to_json(),
    )?;
    let one = instance(dirs.0.path(), &secret, &db, &kafka, true).await?;
    let two = instance(dirs.1.path(), &secret, &db, &kafka, false).await?;

    // Alice works against instance one, bob against instance two.
    let mut anonymous_one = Client::new(one.local_addr);
    let mut anonymous_two = Client::new(two.local_addr);
    let (mut alice, _) = anonymous_one.register("alice").await?;
    let (mut bob, bob_id) = anonymous_two.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    // Bob's instance has caught up with the join before bob subscribes there.
    bob.ok("{ me { id } }", json!({})).await?;

    let mut subscriber =
        Subscriber::connect(two.local_addr, bob.token.as_deref().unwrap_or("")).await?;
    subscriber
        .subscribe(
            "1",
            CHANNEL_EVENTS,
            json!({ "c": place.channel_id, "after": "0" }),
        )
        .await?;
    let message_id = send(&mut alice, &place.channel_id, "across instances").await?;
    let event = subscriber.next_event("1").await?;
    assert_eq!(event["__typename"], "MessageSent");
    assert_eq!(event["message"]["id"], message_id.as_str());
    assert_eq!(event["message"]["author"]["username"], "alice");

    // Bob reads alice's write on his own instance with alice's consistency token.
    bob.consistency = newest(&None, &alice.consistency);
    let history = bob
        .ok(
            "query($c: ID!) { channel(id: $c) { messages { edges { node { body } } } } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    assert_eq!(
        history["channel"]["messages"]["edges"],
        json!([{ "node": { "body": "across instances" } }])
    );

    // A direct conversation opened on instance one reaches bob on instance two through the
    // log: its opening, then a message in it.
    let opened = alice
        .ok(
            "mutation($u: [ID!]!) { openDirectConversation(userIds: $u) { id } }",
            json!({ "u": [bob_id] }),
        )
        .await?;
    let conversation = opened["openDirectConversation"]["id"].clone();
    bob.consistency = newest(&None, &alice.consistency);
    let seen = bob
        .ok(
            "query($c: ID!) { conversation(id: $c) { participants { username } } }",
            json!({ "c": conversation }),
        )
        .await?;
    let mut people: Vec<&str> = seen["conversation"]["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|person| person["username"].as_str())
        .collect();
    people.sort_unstable();
    assert_eq!(people, ["alice", "bob"], "{seen}");
    subscriber
        .subscribe(
            "2",
            "subscription($c: ID!) { conversationEvents(conversationId: $c, after: \"0\") { \
             ... on MessageSent { message { body conversationId } } } }",
            json!({ "c": conversation }),
        )
        .await?;
    alice
        .ok(
            "mutation($c: ID!) { sendMessage(input: {conversationId: $c, body: \"psst\"}) { id } }",
            json!({ "c": conversation }),
        )
        .await?;
    let event = subscriber.next_message().await?;
    assert_eq!(event["id"], "2", "{event}");
    let message = &event["payload"]["data"]["conversationEvents"]["message"];
    assert_eq!(message["body"], "psst", "{event}");
    assert_eq!(message["conversationId"], conversation);

    one.stop().await?;
    two.stop().await?;
    db.drop_database().await?;
    Ok(())
}
