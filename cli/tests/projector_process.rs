//! Projectors as their own processes, against real PostgreSQL and tansu: killed mid-batch they
//! end identical to a fresh rebuild; a redelivered batch changes nothing; a rebuild while
//! messages keep arriving switches with none lost or doubled; a poison event is parked and the
//! rest flows.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_commands::postgres::PgEventStore;
use aether_commands::relay::{run_relay, RelayConfig, RelayStatus};
use aether_commands::{ChatCommands, CommandContext};
use aether_domain::{ChannelId, ChannelKind, UserId};
use aether_kafka::admin::init_topics;
use aether_kafka::read::read_until_now;
use aether_kafka::KafkaConfig;
use aether_projections::receipts::{READ_POINTER_QUERY, UNREAD_QUERY};
use aether_projections::stream::mongo::{MongoStore, MongoTimelineProjection};
use aether_projections::stream::postgres::{
    AuditProjection, CatalogProjection, PgStore, ReceiptsProjection, SearchProjection,
};
use aether_projections::stream::source::{lag_of, Checkpoint, KafkaSource, StreamEvent};
use aether_projections::stream::{ReadStore, StoreError};
use aether_schemas::topics::{self, EVENT_TOPICS};
use aether_test_support::{kafka_config, TestDatabase};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn mongo_url() -> String {
    std::env::var("AETHER_TEST_MONGO")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".to_owned())
}

struct Process(Child);

impl Process {
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An event store, its relay to Kafka, and a chat session to fill it.
struct Fixture {
    db: TestDatabase,
    store: PgEventStore,
    kafka: KafkaConfig,
    commands: Arc<ChatCommands<PgEventStore>>,
    shutdown: CancellationToken,
    alice: UserId,
    bob: UserId,
    channel: ChannelId,
}

impl Fixture {
    async fn start() -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let store = PgEventStore::from_pool(db.pool().await?);
        store.migrate().await?;
        let kafka = kafka_config(3);
        init_topics(&kafka).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (pool, kafka, shutdown) = (store.pool().clone(), kafka.clone(), shutdown.clone());
            async move {
                let (status, _) = tokio::sync::watch::channel(RelayStatus::default());
                let _ = run_relay(pool, kafka, RelayConfig::default(), status, shutdown).await;
            }
        });
        let commands = Arc::new(ChatCommands::new(store.clone()));
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
            .create_server(&CommandContext::new(Some(alice)), "projectors")
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
        let channel = commands
            .create_channel(
                &CommandContext::new(Some(alice)),
                server,
                "general",
                ChannelKind::Text,
                false,
            )
            .await?
            .value
            .id;
        Ok(Self {
            db,
            store,
            kafka,
            commands,
            shutdown,
            alice,
            bob,
            channel,
        })
    }

    /// Alice sends `count` messages, mentioning bob in every seventh and editing every tenth
    /// (the edit drops the mention); bob marks the channel read after every 25th.
    async fn send(&self, count: usize) -> anyhow::Result<()> {
        for n in 0..count {
            let ctx = CommandContext::new(Some(self.alice));
            let body = if n % 7 == 0 {
                format!("message {n} for <@{}>", self.bob)
            } else {
                format!("message {n}")
            };
            let sent = self
                .commands
                .send_message(&ctx, self.channel, &body)
                .await?
                .value;
            if n % 10 == 3 {
                self.commands
                    .edit_message(&ctx, sent.id, &format!("message {n}, edited"))
                    .await?;
            }
            if n % 25 == 24 {
                self.commands
                    .mark_read(&CommandContext::new(Some(self.bob)), self.channel, sent.id)
                    .await?;
            }
        }
        Ok(())
    }

    /// Waits until the relay has published everything committed so far.
    async fn published(&self) -> anyhow::Result<i64> {
        let started = Instant::now();
        loop {
            let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(self.store.pool())
                .await?;
            if pending == 0 {
                return Ok(sqlx::query_scalar("SELECT count(*) FROM events")
                    .fetch_one(self.store.pool())
                    .await?);
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "outbox still holds {pending} rows"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn aether(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_aether"));
        command
            .args(["--log", "warn"])
            .env("AETHER_POSTGRES_URL", &self.db.url)
            .env("AETHER_KAFKA_BOOTSTRAP", &self.kafka.bootstrap)
            .env("AETHER_TOPIC_PREFIX", &self.kafka.topic_prefix)
            .env("AETHER_MONGO_URL", mongo_url())
            .env("AETHER_MONGO_DATABASE", &self.db.name);
        command
    }

    fn projector(&self, name: &str, batch: usize) -> anyhow::Result<Process> {
        let child = self
            .aether()
            .args(["serve", "--role", "projector", "--projection", name])
            .args(["--listen", "127.0.0.1:0"])
            .args(["--projector-batch", &batch.to_string()])
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Process(child))
    }

    /// A projector and the URL of its /metrics, from the line it prints at start.
    async fn projector_with_metrics(&self, name: &str) -> anyhow::Result<(Process, String)> {
        let mut child = self
            .aether()
            .args(["serve", "--role", "projector", "--projection", name])
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take();
        let process = Process(child);
        // Read the first line, then keep draining: the process logs to standard output too.
        let (first, line) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            let mut lines = BufReader::new(stdout).lines();
            let _ = first.send(lines.next().and_then(Result::ok).unwrap_or_default());
            for _ in lines {}
        });
        let line = tokio::time::timeout(Duration::from_secs(30), line).await??;
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .map(str::to_owned);
        let Some(url) = url else {
            anyhow::bail!("no metrics address in {line:?}");
        };
        Ok((process, url))
    }

    async fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = self.aether();
        command.args(args);
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        eprintln!(
            "aether {}: {}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(output)
    }

    async fn dump(&self, name: &str, version: i32) -> anyhow::Result<Value> {
        let output = self
            .cli(&["projections", "dump", name, &version.to_string()])
            .await?;
        anyhow::ensure!(output.status.success(), "dump failed");
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Events consumed by a version, from its stored checkpoint.
    async fn consumed(&self, name: &str, version: i32) -> anyhow::Result<i64> {
        if name == MongoTimelineProjection::NAME {
            let client = mongodb::Client::with_uri_str(mongo_url()).await?;
            let store = MongoStore::new(
                client.database(&self.db.name),
                Arc::new(MongoTimelineProjection),
                version,
            );
            return Ok(store.checkpoint().await.map(|c| c.total()).unwrap_or(0));
        }
        let sql = format!(
            "SELECT COALESCE(SUM(next_offset), 0)::bigint FROM {name}_v{version}.projector_checkpoint \
             WHERE topic <> 'event-store'"
        );
        Ok(sqlx::query_scalar(&sql)
            .fetch_one(self.store.pool())
            .await
            .unwrap_or(0))
    }

    /// (key, value) of every message on `aether.updates.v1`.
    async fn updates(&self) -> anyhow::Result<Vec<(String, Value)>> {
        let kafka = self.kafka.clone();
        tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            read_until_now(
                &kafka,
                &kafka.topic(topics::UPDATES),
                |low, _| low,
                |message| {
                    let key = message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default();
                    let value = message
                        .payload()
                        .and_then(|p| serde_json::from_slice(p).ok())
                        .unwrap_or_default();
                    seen.push((key, value));
                },
            )?;
            Ok(seen)
        })
        .await?
    }

    async fn log_end(&self) -> anyhow::Result<i64> {
        let kafka = self.kafka.clone();
        Ok(tokio::task::spawn_blocking(move || {
            lag_of(&kafka, &EVENT_TOPICS, &Checkpoint::default())
        })
        .await??
        .log_end)
    }

    async fn wait_consumed(&self, name: &str, version: i32, at_least: i64) -> anyhow::Result<i64> {
        let started = Instant::now();
        loop {
            let consumed = self.consumed(name, version).await?;
            if consumed >= at_least {
                return Ok(consumed);
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "{name} v{version} consumed {consumed} of {at_least} events"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Ok(client) = mongodb::Client::with_uri_str(mongo_url()).await {
            let _ = client.database(&self.db.name).drop().await;
        }
        self.store.pool().close().await;
        self.db.drop_database().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projectors_killed_mid_batch_end_identical_to_a_fresh_rebuild() -> anyhow::Result<()> {
    let fixture = Fixture::start().await?;
    fixture.send(120).await?;
    let events = fixture.published().await?;
    let end = fixture.log_end().await?;
    assert_eq!(end, events, "every stored event is on Kafka once");

    for name in [
        CatalogProjection::NAME,
        AuditProjection::NAME,
        SearchProjection::NAME,
        ReceiptsProjection::NAME,
        MongoTimelineProjection::NAME,
    ] {
        // Small batches, so the kill lands between (or inside) transactions.
        let projector = fixture.projector(name, 7)?;
        let before_kill = fixture.wait_consumed(name, 1, 40).await?;
        projector.kill();
        let at_kill = fixture.consumed(name, 1).await?;
        assert!(at_kill >= before_kill);
        eprintln!("{name}: killed at {at_kill} of {end} events consumed");
        let _projector = fixture.projector(name, 7)?;
        fixture.wait_consumed(name, 1, end).await?;
        if name == MongoTimelineProjection::NAME {
            // Updates are sent after each commit without waiting for the broker; give the
            // running projector the moment it needs before it is stopped with SIGKILL.
            let started = Instant::now();
            while !fixture
                .updates()
                .await?
                .iter()
                .any(|(_, u)| u.get("Channel").is_some())
                && started.elapsed() < Duration::from_secs(15)
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        drop(_projector);

        let rebuilt = fixture.cli(&["projections", "rebuild", name]).await?;
        assert!(rebuilt.status.success(), "rebuild of {name} failed");
        let killed = fixture.dump(name, 1).await?;
        let fresh = fixture.dump(name, 2).await?;
        assert_eq!(
            killed, fresh,
            "{name}: killed-and-restarted equals a fresh rebuild"
        );
        if name == AuditProjection::NAME {
            let rows = fresh["audit_events"].as_array().map_or(0, Vec::len) as i64;
            assert_eq!(rows, events, "one audit row per stored event");
        } else if name == MongoTimelineProjection::NAME {
            let messages = fresh["messages"].as_array().cloned().unwrap_or_default();
            assert_eq!(messages.len(), 120, "one timeline document per message");
            // The live projector told the realtime edge: channel updates keyed by channel id.
            // (The catalog's membership and server news share the topic, keyed by server id.)
            let updates = fixture.updates().await?;
            let channel = fixture.channel.to_string();
            let mut channel_updates = 0;
            for (key, update) in &updates {
                if let Some(row) = update.get("Channel") {
                    assert_eq!(key, &channel);
                    assert_eq!(row["channel_id"], json!(channel));
                    channel_updates += 1;
                } else if let Some(news) = update.get("Server") {
                    assert_eq!(json!(key), news["server_id"], "{update}");
                } else {
                    assert_eq!(json!(key), update["Membership"]["server_id"], "{update}");
                }
            }
            assert!(channel_updates > 0, "the timeline published no updates");
        } else if name == SearchProjection::NAME {
            assert_eq!(fresh["search_messages"].as_array().map_or(0, Vec::len), 120);
            // Every tenth message was edited: the new words are found, in the live version.
            let found: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM search_v2.search_messages \
                 WHERE words @@ plainto_tsquery('simple', 'edited')",
            )
            .fetch_one(fixture.store.pool())
            .await?;
            assert_eq!(found, 12);
        } else if name == ReceiptsProjection::NAME {
            assert_eq!(
                fresh["receipt_messages"].as_array().map_or(0, Vec::len),
                120
            );
            // Bob last marked message 99 read (the 100th): 20 are unread, of which messages
            // 105, 112 and 119 mention him. Read through the live version's queries.
            let bob = fixture.bob.to_string();
            let channel = fixture.channel.to_string();
            let mut read = fixture.store.pool().begin().await?;
            sqlx::query("SET LOCAL search_path TO receipts_v2")
                .execute(&mut *read)
                .await?;
            let (seq,): (i64,) = sqlx::query_as(&READ_POINTER_QUERY.replace("{r}", ""))
                .bind(&bob)
                .bind(&channel)
                .fetch_one(&mut *read)
                .await?;
            assert_eq!(seq, 100);
            let (unread, mentions): (i64, i64) = sqlx::query_as(&UNREAD_QUERY.replace("{r}", ""))
                .bind(&channel)
                .bind(seq)
                .bind(&bob)
                .bind(&channel)
                .bind(seq)
                .bind(&bob)
                .bind(&bob)
                .fetch_one(&mut *read)
                .await?;
            assert_eq!((unread, mentions), (20, 3));
            read.rollback().await?;
        } else {
            assert_eq!(fresh["users"].as_array().map_or(0, Vec::len), 2);
            assert_eq!(fresh["members"].as_array().map_or(0, Vec::len), 2);
        }
    }
    fixture.finish().await
}

/// Every event of the topics, read back as a projector reads them.
async fn read_all(kafka: &KafkaConfig, expected: i64) -> anyhow::Result<Vec<StreamEvent>> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let source = KafkaSource::new(&kafka, &EVENT_TOPICS)?;
        source.seek(&Checkpoint::default())?;
        let mut all = Vec::new();
        let started = Instant::now();
        while (all.len() as i64) < expected && started.elapsed() < Duration::from_secs(60) {
            all.extend(source.poll_batch(
                1_000,
                Duration::from_millis(500),
                Duration::from_millis(50),
            )?);
        }
        anyhow::ensure!(
            all.len() as i64 == expected,
            "read {} of {expected}",
            all.len()
        );
        Ok(all)
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_changes_nothing_and_a_stale_writer_is_fenced() -> anyhow::Result<()> {
    let fixture = Fixture::start().await?;
    fixture.send(12).await?;
    let events = fixture.published().await?;
    let batch = read_all(&fixture.kafka, events).await?;
    let store = PgStore::new(fixture.store.pool().clone(), Arc::new(CatalogProjection), 1);
    store.prepare().await?;

    let start = Checkpoint::default();
    let end = start.after(&batch);
    let first = store.apply(&start, &batch, &end).await?;
    assert_eq!(first.applied as i64, events);
    let once = store.dump().await?;

    // The same batch again, as after a crash between commit and whatever came next.
    let again = store.apply(&end, &batch, &end).await?;
    assert_eq!((again.applied, again.ignored), (0, batch.len()));
    assert_eq!(
        store.dump().await?,
        once,
        "a redelivered batch changes nothing"
    );

    // A writer still holding the old checkpoint is refused and writes nothing.
    let stale = store.apply(&start, &batch, &end).await;
    assert!(matches!(stale, Err(StoreError::Fenced)), "{stale:?}");
    assert_eq!(store.dump().await?, once);
    assert_eq!(store.checkpoint().await?, end);
    fixture.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_messages_arrive_switches_with_none_lost_or_doubled() -> anyhow::Result<()>
{
    let fixture = Arc::new(Fixture::start().await?);
    fixture.send(40).await?;
    let _live = fixture.projector(AuditProjection::NAME, 50)?;
    fixture
        .wait_consumed(AuditProjection::NAME, 1, fixture.published().await?)
        .await?;

    let stop = CancellationToken::new();
    let sender = tokio::spawn({
        let (fixture, stop) = (fixture.clone(), stop.clone());
        async move {
            let mut sent = 0;
            while !stop.is_cancelled() && sent < 400 {
                fixture.send(1).await?;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(sent)
        }
    });
    let rebuilt = fixture
        .cli(&["projections", "rebuild", AuditProjection::NAME])
        .await?;
    assert!(rebuilt.status.success());
    // The switch waited for v2 to pass where the paused v1 stopped, then resumed the projection.
    let said = String::from_utf8_lossy(&rebuilt.stderr);
    assert!(said.contains("live version paused"), "{said}");
    let registry =
        aether_projections::stream::registry::Registry::open(fixture.store.pool().clone()).await?;
    let entry = registry.entry(AuditProjection::NAME).await?;
    assert_eq!((entry.live_version, entry.paused), (2, false), "{entry:?}");
    // Keep sending across the switch, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let sent = sender.await??;
    assert!(sent > 0);
    let events = fixture.published().await?;
    // The live process moved to v2 and carries on from v2's checkpoint.
    fixture
        .wait_consumed(AuditProjection::NAME, 2, events)
        .await?;
    let dump = fixture.dump(AuditProjection::NAME, 2).await?;
    let rows = dump["audit_events"].as_array().cloned().unwrap_or_default();
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, sequence FROM events ORDER BY aggregate_id, sequence")
            .fetch_all(fixture.store.pool())
            .await?;
    let projected: Vec<(String, i64)> = rows
        .iter()
        .map(|row| {
            (
                row["aggregate_id"].as_str().unwrap_or_default().to_owned(),
                row["sequence"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(projected.len() as i64, events);
    assert_eq!(projected, stored, "every stored event exactly once in v2");
    drop(_live);
    match Arc::try_unwrap(fixture) {
        Ok(fixture) => fixture.finish().await,
        Err(_) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_and_the_rest_flows() -> anyhow::Result<()> {
    let fixture = Fixture::start().await?;
    fixture.published().await?;
    // Two events of one server aggregate that the catalog cannot decode, and a value that is
    // not an envelope at all.
    let producer = fixture.kafka.producer()?;
    let topic = fixture.kafka.topic(topics::SERVER_EVENTS);
    let broken = uuid::Uuid::now_v7().to_string();
    for sequence in 1..=2 {
        let envelope = json!({
            "id": uuid::Uuid::new_v4(), "type": "ServerCreated", "version": "1.0",
            "aggregate_type": "Server", "aggregate_id": broken, "sequence": sequence,
            "occurred_at": "2026-11-23T12:00:00Z", "actor": null,
            "correlation_id": "c", "causation_id": "c", "data": {"not": "a server"}
        });
        let payload = envelope.to_string();
        producer
            .send(
                FutureRecord::to(&topic).key(&broken).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    producer
        .send(
            FutureRecord::to(&topic).key("junk").payload("{not json"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    // Then a healthy server.
    fixture
        .commands
        .create_server(
            &CommandContext::new(Some(fixture.alice)),
            "after the poison",
        )
        .await?;
    fixture.published().await?;
    let end = fixture.log_end().await?;

    let (_projector, metrics) = fixture
        .projector_with_metrics(CatalogProjection::NAME)
        .await?;
    fixture
        .wait_consumed(CatalogProjection::NAME, 1, end)
        .await?;
    // Prometheus sees the dead letters and the applied events.
    let text = reqwest::get(&metrics).await?.text().await?;
    let labels = "{projection=\"catalog\",version=\"1\"}";
    assert!(
        text.contains(&format!("aether_projector_dead_letters_total{labels} 3")),
        "{text}"
    );
    let applied: i64 = text
        .lines()
        .find_map(|line| {
            line.strip_prefix(&format!("aether_projector_events_applied_total{labels} "))
        })
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    assert_eq!(applied, end - 3, "every healthy event applied");
    let dump = fixture.dump(CatalogProjection::NAME, 1).await?;
    let names: Vec<&str> = dump["servers"]
        .as_array()
        .map(|servers| servers.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"after the poison"));

    let listed = fixture
        .cli(&[
            "projections",
            "dead-letters",
            CatalogProjection::NAME,
            "--json",
        ])
        .await?;
    assert!(listed.status.success());
    let letters: Vec<Value> = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(letters.len(), 3, "{letters:#?}");
    // Partitions interleave; within the broken aggregate's partition the order is kept.
    let of_broken: Vec<&Value> = letters
        .iter()
        .filter(|letter| letter["aggregate_id"] == json!(broken))
        .collect();
    assert_eq!(of_broken.len(), 2, "{letters:#?}");
    assert_eq!(of_broken[0]["sequence"], json!(1));
    assert_eq!(of_broken[0]["attempts"], json!(3), "retried before parking");
    assert_eq!(of_broken[1]["sequence"], json!(2));
    assert!(of_broken[1]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("behind an earlier dead letter"));
    let unreadable: Vec<&Value> = letters
        .iter()
        .filter(|letter| letter["aggregate_id"].is_null())
        .collect();
    assert_eq!(unreadable.len(), 1, "{letters:#?}");
    assert!(unreadable[0]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("not an event envelope"));

    // Retrying cannot fix a broken event: it stays parked and the command says so (exit 2).
    let retried = fixture
        .cli(&["projections", "retry", CatalogProjection::NAME])
        .await?;
    assert_eq!(retried.status.code(), Some(2));
    let listed = fixture
        .cli(&[
            "projections",
            "dead-letters",
            CatalogProjection::NAME,
            "--json",
        ])
        .await?;
    let letters: Vec<Value> = serde_json::from_slice(&listed.stdout)?;
    let attempts: Vec<&Value> = letters.iter().map(|letter| &letter["attempts"]).collect();
    assert!(
        attempts.contains(&&json!(4)),
        "the retry counted an attempt at the first broken event: {attempts:?}"
    );
    let list = fixture.cli(&["projections", "list", "--json"]).await?;
    assert!(list.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&list.stdout)?;
    let catalog = rows
        .iter()
        .find(|row| row["name"] == json!("catalog"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(catalog["dead_letters"], json!(3));
    assert_eq!(catalog["lag_events"], json!(0));
    drop(_projector);
    fixture.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_the_event_store_equals_the_version_built_from_kafka() -> anyhow::Result<()>
{
    let fixture = Fixture::start().await?;
    fixture.send(30).await?;
    fixture.published().await?;
    let end = fixture.log_end().await?;
    for name in [AuditProjection::NAME, CatalogProjection::NAME] {
        let projector = fixture.projector(name, 100)?;
        fixture.wait_consumed(name, 1, end).await?;
        projector.kill();
        let rebuilt = fixture
            .cli(&["projections", "rebuild", name, "--from", "store"])
            .await?;
        assert!(rebuilt.status.success(), "rebuild of {name} from the store");
        assert_eq!(
            fixture.dump(name, 2).await?,
            fixture.dump(name, 1).await?,
            "{name}: from the store or from Kafka, the same read model"
        );
        // The new version continues on Kafka: its checkpoint is at the log end.
        assert_eq!(fixture.consumed(name, 2).await?, end);
    }
    fixture.finish().await
}
