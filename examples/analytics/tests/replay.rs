//! The analytics example after a scripted chat session: real PostgreSQL, the relay in-process,
//! a real Kafka-compatible broker (tansu), and the example binary run as a separate process.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use aether_commands::postgres::PgEventStore;
use aether_commands::relay::{run_relay, RelayConfig, RelayStatus};
use aether_commands::{ChatCommands, CommandContext};
use aether_domain::ChannelKind;
use aether_kafka::admin::init_topics;
use aether_kafka::read::read_until_now;
use aether_kafka::KafkaConfig;
use aether_test_support::{kafka_config, TestDatabase};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

const MESSAGE_EVENTS: &str = "aether.messages.events.v1";

async fn outbox_len(store: &PgEventStore) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(store.pool())
        .await?)
}

async fn wait_for_empty_outbox(store: &PgEventStore) -> anyhow::Result<()> {
    for _ in 0..600 {
        if outbox_len(store).await? == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the outbox still holds {} rows", outbox_len(store).await?)
}

async fn analytics(args: &[&str]) -> anyhow::Result<Output> {
    Ok(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_aether-analytics"))
            .args(args)
            .output()
            .await?,
    )
}

/// Runs the example with `--format json` and returns its counts by (day, channel).
async fn counts(kafka: &KafkaConfig) -> anyhow::Result<BTreeMap<(String, String), u64>> {
    let output = analytics(&[
        "--kafka",
        &kafka.bootstrap,
        "--topic-prefix",
        &kafka.topic_prefix,
        "--format",
        "json",
    ])
    .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(output.status.success(), "aether-analytics failed: {stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
    let mut counts = BTreeMap::new();
    for row in rows {
        let field = |name: &str| {
            row[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("no {name} in {row}"))
        };
        let messages = row["messages"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no messages in {row}"))?;
        counts.insert((field("day")?, field("channel_id")?), messages);
    }
    Ok(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_equal_what_a_scripted_session_sent() -> anyhow::Result<()> {
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
            let config = RelayConfig {
                batch_size: 50,
                ..RelayConfig::default()
            };
            if let Err(error) = run_relay(pool, kafka, config, status, shutdown).await {
                panic!("relay failed: {error}");
            }
        }
    });

    // The session: two users in one server with three channels.
    let commands = ChatCommands::new(store.clone());
    let alice = commands
        .register(&CommandContext::new(None), "alice", "correct horse", None)
        .await?
        .value
        .id;
    let bob = commands
        .register(&CommandContext::new(None), "bob", "battery staple", None)
        .await?
        .value
        .id;
    let server = commands
        .create_server(&CommandContext::new(Some(alice)), "analytics")
        .await?
        .value
        .id;
    let invite = commands
        .create_invite(&CommandContext::new(Some(alice)), server, None, None)
        .await?
        .value
        .code;
    commands
        .join_server(&CommandContext::new(Some(bob)), &invite)
        .await?;
    let mut channels = Vec::new();
    for name in ["general", "random", "dev"] {
        let ctx = CommandContext::new(Some(alice));
        let channel = commands
            .create_channel(&ctx, server, name, ChannelKind::Text, false)
            .await?;
        channels.push(channel.value.id);
    }

    // 7, 5 and 3 messages, from both users; the expected day is the UTC day of each command.
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut sent = Vec::new();
    for (channel, how_many) in channels.iter().zip([7, 5, 3]) {
        for n in 0..how_many {
            let ctx = CommandContext::new(Some(if n % 2 == 0 { alice } else { bob }));
            let message = commands
                .send_message(&ctx, *channel, &format!("message {n}"))
                .await?
                .value;
            *expected
                .entry((ctx.at.date_naive().to_string(), channel.to_string()))
                .or_default() += 1;
            sent.push((message.id, ctx.at));
        }
    }
    // An edit and a deletion are events on the same topic, but not messages sent.
    commands
        .edit_message(&CommandContext::new(Some(alice)), sent[0].0, "edited")
        .await?;
    commands
        .delete_message(&CommandContext::new(Some(bob)), sent[1].0)
        .await?;
    wait_for_empty_outbox(&store).await?;

    assert_eq!(
        expected.values().sum::<u64>(),
        15,
        "the session sent 15 messages"
    );
    assert_eq!(
        counts(&kafka).await?,
        expected,
        "one count per message sent"
    );

    // The table for people: one line per (day, channel), sorted, and the total.
    let table = analytics(&[
        "--kafka",
        &kafka.bootstrap,
        "--topic-prefix",
        &kafka.topic_prefix,
    ])
    .await?;
    let stdout = String::from_utf8_lossy(&table.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&table.stderr));
    assert!(table.status.success());
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(lines.first(), Some(&vec!["day", "channel_id", "messages"]));
    assert_eq!(lines.last(), Some(&vec!["total", "15"]));
    let rows: Vec<((String, String), u64)> = lines[1..lines.len() - 1]
        .iter()
        .map(|line| {
            (
                (line[0].to_owned(), line[1].to_owned()),
                line[2].parse().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(rows, expected.clone().into_iter().collect::<Vec<_>>());

    // A re-delivered event (what a relay crash between the broker's acknowledgement and its
    // outbox delete can cause) is counted once.
    let topic = kafka.topic(MESSAGE_EVENTS);
    let first_sent = tokio::task::spawn_blocking({
        let (kafka, topic) = (kafka.clone(), topic.clone());
        move || {
            let mut found = None;
            read_until_now(
                &kafka,
                &topic,
                |low, _| low,
                |message| {
                    let value = message.payload().unwrap_or_default();
                    let is_sent = serde_json::from_slice::<serde_json::Value>(value)
                        .is_ok_and(|v| v["type"] == "MessageSent");
                    if found.is_none() && is_sent {
                        found = Some((message.key().unwrap_or_default().to_vec(), value.to_vec()));
                    }
                },
            )
            .map(|_| found)
        }
    })
    .await??
    .ok_or_else(|| anyhow::anyhow!("no MessageSent on {topic}"))?;
    let (key, value) = first_sent;
    kafka
        .producer()?
        .send(
            FutureRecord::to(&topic).key(&key).payload(&value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| error)?;
    assert_eq!(
        counts(&kafka).await?,
        expected,
        "a duplicate is not counted"
    );

    shutdown.cancel();
    relay.await?;
    store.pool().close().await;
    db.drop_database().await?;
    Ok(())
}

#[tokio::test]
async fn a_bad_flag_exits_with_2_and_says_why() -> anyhow::Result<()> {
    let output = analytics(&["--format", "xml"]).await?;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid value 'xml'") && stderr.contains("--format"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = analytics(&["--no-such-flag"]).await?;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_topic_is_a_broker_error() -> anyhow::Result<()> {
    let kafka = kafka_config(1);
    let output = analytics(&[
        "--kafka",
        &kafka.bootstrap,
        "--topic-prefix",
        &kafka.topic_prefix,
    ])
    .await?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    Ok(())
}
