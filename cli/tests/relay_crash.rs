//! The relay process killed with SIGKILL in the middle of publishing, then restarted: every
//! event reaches Kafka exactly once, in order per key. And with the broker down, commands keep
//! committing into the outbox and the relay catches up when the broker returns.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aether_commands::postgres::PgEventStore;
use aether_kafka::admin::init_topics;
use aether_kafka::read::{header, read_until_now};
use aether_kafka::KafkaConfig;
use aether_schemas::topics;
use aether_test_support::{kafka_config, TestDatabase};
use rdkafka::Message;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn relay(db: &TestDatabase, kafka: &KafkaConfig, batch: u32) -> anyhow::Result<Process> {
    let child = Command::new(env!("CARGO_BIN_EXE_aether"))
        .args([
            "--log",
            "warn",
            "serve",
            "--role",
            "relay",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--postgres", &db.url, "--kafka", &kafka.bootstrap])
        .args(["--topic-prefix", &kafka.topic_prefix])
        .args(["--relay-batch", &batch.to_string()])
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Process(child))
}

async fn outbox_len(store: &PgEventStore) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(store.pool())
        .await?)
}

async fn wait_until(
    store: &PgEventStore,
    what: &str,
    limit: Duration,
    done: impl Fn(i64) -> bool,
) -> anyhow::Result<i64> {
    let started = Instant::now();
    loop {
        let len = outbox_len(store).await?;
        if done(len) {
            return Ok(len);
        }
        anyhow::ensure!(started.elapsed() < limit, "{what}: outbox still at {len}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends `count` message events spread over `channels` channel keys, straight into the store.
async fn append_messages(
    store: &PgEventStore,
    count: i64,
    channels: i64,
    tag: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'Message', $3 || '-' || n, 1, 'MessageSent', '1.0', \
                json_build_object('MessageSent', json_build_object('n', n)), \
                json_build_object('routing_key', 'channel-' || (n % $2)) \
         FROM generate_series(1, $1) AS n",
    )
    .bind(count)
    .bind(channels)
    .bind(tag)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// (key, n) of every message on the messages topic, in partition order.
async fn consume(
    kafka: &KafkaConfig,
) -> anyhow::Result<(Vec<(String, i64)>, HashSet<String>, usize)> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut ids = HashSet::new();
        let mut total = 0;
        read_until_now(
            &kafka,
            &kafka.topic(topics::MESSAGE_EVENTS),
            |low, _| low,
            |message| {
                total += 1;
                ids.insert(header(message, "ce_id").unwrap_or_default().to_owned());
                let key = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let envelope: serde_json::Value = message
                    .payload()
                    .and_then(|p| serde_json::from_slice(p).ok())
                    .unwrap_or_default();
                seen.push((key, envelope["data"]["n"].as_i64().unwrap_or(-1)));
            },
        )?;
        Ok((seen, ids, total))
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_publishes_every_event_exactly_once_in_order() -> anyhow::Result<()>
{
    let db = TestDatabase::create().await?;
    let store = PgEventStore::from_pool(db.pool().await?);
    store.migrate().await?;
    let kafka = kafka_config(3);
    init_topics(&kafka).await?;
    // Kept small: the test broker (tansu 0.6, debug build) serves about 75 fetched messages/s.
    let total = 600;
    append_messages(&store, total, 16, "m").await?;

    let mut kills = 0;
    for _ in 0..2 {
        let before = outbox_len(&store).await?;
        if before < 150 {
            break;
        }
        // Small batches, so that the kill lands while batches are in flight.
        let mut process = relay(&db, &kafka, 5)?;
        wait_until(
            &store,
            "relay made progress",
            Duration::from_secs(60),
            |len| len < before - 50,
        )
        .await?;
        process.0.kill()?; // SIGKILL
        process.0.wait()?;
        if outbox_len(&store).await? > 0 {
            kills += 1;
        }
    }
    assert!(kills >= 1, "the relay was never killed before it finished");
    let _relay = relay(&db, &kafka, 20)?;
    wait_until(
        &store,
        "relay drained the outbox",
        Duration::from_secs(120),
        |len| len == 0,
    )
    .await?;

    let (seen, ids, consumed) = consume(&kafka).await?;
    assert_eq!(
        consumed as i64, total,
        "every event once: none lost, none doubled"
    );
    assert_eq!(ids.len() as i64, total);
    // Per key, the order is the order of the store (n grows within each channel key).
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (key, n) in &seen {
        if let Some(previous) = last.insert(key, *n) {
            assert!(*n > previous, "{key}: {n} after {previous}");
        }
    }
    store.pool().close().await;
    db.drop_database().await?;
    Ok(())
}

/// A private broker this test can stop and start.
struct Broker {
    process: Option<Process>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Broker {
    fn start(dir: tempfile::TempDir, port: u16) -> anyhow::Result<Self> {
        let child = Command::new("tansu")
            .current_dir(dir.path())
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
            ])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{port}"),
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            process: Some(Process(child)),
            dir,
            port,
        })
    }

    fn stop(mut self) -> (tempfile::TempDir, u16) {
        drop(self.process.take());
        (self.dir, self.port)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_events_wait_in_the_outbox_and_are_published_when_it_returns(
) -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let store = PgEventStore::from_pool(db.pool().await?);
    store.migrate().await?;
    let broker = Broker::start(tempfile::tempdir()?, free_port()?)?;
    let kafka = KafkaConfig {
        bootstrap: format!("127.0.0.1:{}", broker.port),
        ..kafka_config(1)
    };
    init_topics(&kafka).await?;
    let _relay = relay(&db, &kafka, 100)?;
    append_messages(&store, 10, 2, "a").await?;
    wait_until(
        &store,
        "published while up",
        Duration::from_secs(60),
        |len| len == 0,
    )
    .await?;

    let (dir, port) = broker.stop();
    append_messages(&store, 25, 2, "b").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        outbox_len(&store).await?,
        25,
        "events wait in the outbox while the broker is down"
    );

    let _broker = Broker::start(dir, port)?;
    wait_until(
        &store,
        "caught up after the broker returned",
        Duration::from_secs(90),
        |len| len == 0,
    )
    .await?;
    let (_, ids, consumed) = consume(&kafka).await?;
    assert_eq!(consumed, 35);
    assert_eq!(ids.len(), 35);
    store.pool().close().await;
    db.drop_database().await?;
    Ok(())
}
