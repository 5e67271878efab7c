//! The relay against real PostgreSQL and a real Kafka-compatible broker (tansu).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aether_commands::postgres::PgEventStore;
use aether_commands::relay::{run_relay, RelayConfig, RelayStatus};
use aether_commands::{ChatCommands, CommandContext};
use aether_domain::ChannelKind;
use aether_kafka::admin::init_topics;
use aether_kafka::read::{header, read_until_now};
use aether_kafka::KafkaConfig;
use aether_schemas::{topics, EventEnvelope};
use aether_test_support::{kafka_config, TestDatabase};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

/// One event as a consumer of the log sees it.
#[derive(Clone, Debug)]
struct Consumed {
    key: String,
    partition: i32,
    offset: i64,
    ce_id: String,
    envelope: EventEnvelope,
}

async fn consume_all(kafka: &KafkaConfig) -> anyhow::Result<Vec<Consumed>> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        for topic in topics::EVENT_TOPICS {
            read_until_now(
                &kafka,
                &kafka.topic(topic),
                |low, _| low,
                |message| {
                    let envelope: EventEnvelope =
                        match message.payload().map(serde_json::from_slice) {
                            Some(Ok(envelope)) => envelope,
                            _ => return,
                        };
                    all.push(Consumed {
                        key: message
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .unwrap_or_default(),
                        partition: message.partition(),
                        offset: message.offset(),
                        ce_id: header(message, "ce_id").unwrap_or_default().to_owned(),
                        envelope,
                    });
                },
            )?;
        }
        Ok(all)
    })
    .await?
}

async fn outbox_len(store: &PgEventStore) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(store.pool())
        .await?)
}

async fn wait_for_empty_outbox(store: &PgEventStore) -> anyhow::Result<()> {
    for _ in 0..300 {
        if outbox_len(store).await? == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the outbox still holds {} rows", outbox_len(store).await?)
}

struct Fixture {
    db: TestDatabase,
    store: PgEventStore,
    kafka: KafkaConfig,
    shutdown: CancellationToken,
    relay: tokio::task::JoinHandle<()>,
}

async fn fixture() -> anyhow::Result<Fixture> {
    fixture_with(RelayConfig {
        batch_size: 50,
        ..RelayConfig::default()
    })
    .await
}

async fn fixture_with(config: RelayConfig) -> anyhow::Result<Fixture> {
    let db = TestDatabase::create().await?;
    let store = PgEventStore::from_pool(db.pool().await?);
    store.migrate().await?;
    let kafka = kafka_config(3);
    init_topics(&kafka).await?;
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn({
        let (pool, kafka, shutdown) = (store.pool().clone(), kafka.clone(), shutdown.clone());
        async move {
            let (status, _) = tokio::sync::watch::channel(RelayStatus::default());
            if let Err(error) = run_relay(pool, kafka, config, status, shutdown).await {
                panic!("relay failed: {error}");
            }
        }
    });
    Ok(Fixture {
        db,
        store,
        kafka,
        shutdown,
        relay,
    })
}

impl Fixture {
    async fn finish(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.relay.await?;
        self.store.pool().close().await;
        self.db.drop_database().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_kafka_once_in_order_per_key() -> anyhow::Result<()> {
    let fixture = fixture().await?;
    let commands = ChatCommands::new(fixture.store.clone());
    let alice = commands
        .register(&CommandContext::new(None), "alice", "correct horse", None)
        .await?
        .value;
    let ctx = CommandContext::new(Some(alice.id));
    let server = commands.create_server(&ctx, "log").await?.value;
    let mut channels = Vec::new();
    for name in ["general", "random"] {
        channels.push(
            commands
                .create_channel(&ctx, server.id, name, ChannelKind::Text, false)
                .await?
                .value
                .id,
        );
    }
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for n in 0..60 {
        let channel = channels[n % 2];
        let body = format!("message {n}");
        let message = commands.send_message(&ctx, channel, &body).await?.value;
        if n % 10 == 0 {
            commands
                .edit_message(&ctx, message.id, &format!("{body}, edited"))
                .await?;
        }
        sent.entry(channel.to_string()).or_default().push(body);
    }
    wait_for_empty_outbox(&fixture.store).await?;

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(fixture.store.pool())
        .await?;
    let consumed = consume_all(&fixture.kafka).await?;
    assert_eq!(
        consumed.len() as i64,
        stored,
        "one Kafka message per stored event"
    );
    let ids: HashSet<&str> = consumed.iter().map(|c| c.ce_id.as_str()).collect();
    assert_eq!(ids.len(), consumed.len(), "no event id twice");
    for c in &consumed {
        assert_eq!(c.ce_id, c.envelope.id.to_string(), "header and body agree");
    }

    // Every channel's messages are on one partition, keyed by the channel, in the order sent.
    for (channel, bodies) in &sent {
        let mut in_channel: Vec<&Consumed> = consumed
            .iter()
            .filter(|c| &c.key == channel && c.envelope.event_type == "MessageSent")
            .collect();
        in_channel.sort_by_key(|c| c.offset);
        let partitions: HashSet<i32> = in_channel.iter().map(|c| c.partition).collect();
        assert_eq!(partitions.len(), 1, "one partition per channel");
        let got: Vec<&str> = in_channel
            .iter()
            .filter_map(|c| c.envelope.data["body"].as_str())
            .collect();
        assert_eq!(&got, bodies);
    }
    // Each aggregate's events appear in sequence order.
    let mut last: HashMap<&str, (i32, i64, u64)> = HashMap::new();
    let mut ordered = consumed.clone();
    ordered.sort_by_key(|c| (c.partition, c.offset));
    for c in &ordered {
        if let Some((partition, _, sequence)) = last.get(c.envelope.aggregate_id.as_str()) {
            assert_eq!(*partition, c.partition);
            assert_eq!(c.envelope.sequence, sequence + 1, "{:?}", c.envelope);
        }
        last.insert(
            &c.envelope.aggregate_id,
            (c.partition, c.offset, c.envelope.sequence),
        );
    }
    // The public copy never carries the password hash.
    let registered = consumed
        .iter()
        .find(|c| c.envelope.event_type == "UserRegistered");
    assert!(registered.is_some_and(|c| c.envelope.data.get("password_hash").is_none()));
    fixture.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_commits_late_is_published_not_skipped() -> anyhow::Result<()> {
    let fixture = fixture().await?;
    let commands = ChatCommands::new(fixture.store.clone());
    let alice = commands
        .register(&CommandContext::new(None), "alice", "correct horse", None)
        .await?
        .value;
    let ctx = CommandContext::new(Some(alice.id));

    // Hold a transaction open with an event in it: it takes a position now, commits later.
    let mut late = fixture.store.pool().begin().await?;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('User', 'late-user', 1, 'ProfileChanged', '1.0', \
         '{\"ProfileChanged\":{\"display_name\":\"Late\",\"changed_at\":\"2026-01-01T00:00:00Z\"}}', \
         '{\"routing_key\":\"late-user\"}')",
    )
    .execute(&mut *late)
    .await?;
    let late_position: i64 =
        sqlx::query_scalar("SELECT position FROM events WHERE aggregate_id = 'late-user'")
            .fetch_one(&mut *late)
            .await?;

    // Later positions commit and are published meanwhile.
    commands.create_server(&ctx, "after").await?;
    commands.create_server(&ctx, "after, too").await?;
    wait_for_empty_outbox(&fixture.store).await?;
    let before: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(fixture.store.pool())
        .await?;
    assert!(
        before > late_position,
        "the held event has the lower position"
    );

    late.commit().await?;
    wait_for_empty_outbox(&fixture.store).await?;
    let consumed = consume_all(&fixture.kafka).await?;
    assert!(
        consumed
            .iter()
            .any(|c| c.envelope.aggregate_id == "late-user"),
        "the late event was published"
    );
    assert_eq!(consumed.len(), 4);
    fixture.finish().await
}

/// Appends `count` message events spread over `channels` keys (one transaction, positions in
/// `n` order), straight into the store.
async fn append_messages(
    executor: impl sqlx::PgExecutor<'_>,
    count: i64,
    channels: i64,
    tag: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'Message', $3 || '-' || n, 1, 'MessageSent', '1.0', \
                json_build_object('MessageSent', json_build_object('n', n, 'tag', $3)), \
                json_build_object('routing_key', 'channel-' || (n % $2)) \
         FROM generate_series(1, $1) AS n",
    )
    .bind(count)
    .bind(channels)
    .bind(tag)
    .execute(executor)
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_relay_publishes_late_lower_positions_once_and_in_order_per_key(
) -> anyhow::Result<()> {
    // Batches of 4 with up to 3 in flight: the 120 rows after the held transaction go out in
    // 30 pipelined batches.
    let fixture = fixture_with(RelayConfig {
        batch_size: 4,
        max_batches_in_flight: 3,
        ..RelayConfig::default()
    })
    .await?;
    append_messages(fixture.store.pool(), 20, 3, "early").await?;

    // Rows that take their positions now and commit after everything below.
    let mut late = fixture.store.pool().begin().await?;
    append_messages(&mut *late, 10, 3, "late").await?;
    append_messages(fixture.store.pool(), 120, 3, "after").await?;
    wait_for_empty_outbox(&fixture.store).await?;
    late.commit().await?;
    append_messages(fixture.store.pool(), 20, 3, "last").await?;
    wait_for_empty_outbox(&fixture.store).await?;

    let consumed = consume_all(&fixture.kafka).await?;
    assert_eq!(
        consumed.len(),
        170,
        "every row once: none skipped, none doubled"
    );
    let ids: HashSet<&str> = consumed.iter().map(|c| c.ce_id.as_str()).collect();
    assert_eq!(ids.len(), 170);
    let late_ones = consumed
        .iter()
        .filter(|c| c.envelope.data["tag"] == "late")
        .count();
    assert_eq!(late_ones, 10, "the late rows were published");
    // Per key, each tag's rows keep the store's order (n grows along the partition).
    let mut ordered = consumed.clone();
    ordered.sort_by_key(|c| (c.partition, c.offset));
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for c in &ordered {
        let tag = c.envelope.data["tag"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let n = c.envelope.data["n"].as_i64().unwrap_or(-1);
        if let Some(previous) = last.insert((c.key.clone(), tag), n) {
            assert!(n > previous, "{}: {n} after {previous}", c.key);
        }
    }
    fixture.finish().await
}
