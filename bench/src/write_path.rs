//! The write-path benchmark: `sendMessage` through the distributed API role (relay in-process)
//! at increasing load, then, in the same run, raw rdkafka produce of the same envelope bytes and
//! raw PostgreSQL inserts of the same rows.
//!
//! Everything is local and bounded: the servers must be on loopback, every phase runs for a
//! fixed time, and the database (`aether_bench_<random>`) is dropped at the end. The topics (a
//! fresh prefix, `bench<random>.`) are left on the broker, as the tests leave theirs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_cli::roles::{start_distributed, DistributedConfig, EmbeddedConfig};
use aether_commands::postgres::PgEventStore;
use aether_commands::relay::event_headers;
use aether_commands::relay::LatencyRecorder;
use aether_kafka::admin::init_topics;
use aether_kafka::KafkaConfig;
use aether_projections::stream::role::{spawn_projectors, Stores, QUERIED_PROJECTIONS};
use aether_projections::stream::ProjectorOptions;
use aether_query_api::rate::RateLimits;
use aether_query_api::ApiLimits;
use aether_schemas::{topics, EventEnvelope, Metadata};
use anyhow::{anyhow, bail, ensure, Context};
use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rand::RngCore;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::report::{
    publish, InsertResult, LevelResult, Machine, ProduceResult, Results, Settings, TARGET_PER_S,
};
use crate::servers::{redact_password, BenchDatabase, Servers};
use crate::stats::{micros, CpuSample, Summary};

/// Most load levels, clients per level, seconds per phase: keeps a run bounded.
const MAX_LEVELS: usize = 6;
const MAX_CLIENTS: usize = 256;
const MAX_SECONDS: u64 = 60;
/// Most produce requests the raw-produce baseline keeps unacknowledged.
const PRODUCE_IN_FLIGHT: usize = 10_000;
/// How often the drain wait looks at the outbox.
const DRAIN_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Concurrent clients of each load level, comma-separated, run in this order.
    #[arg(long, value_delimiter = ',', default_values_t = [4, 16, 64])]
    levels: Vec<usize>,
    /// Seconds of load per level, and of each raw baseline.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The servers the distributed mode runs on.
    #[command(flatten)]
    servers: Servers,
    /// Where `write-path.json` and `write-path.md` go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// PostgreSQL connections of the API role (`aether serve`'s default).
    #[arg(long, default_value_t = 16)]
    pool: u32,
    /// Partitions of each event topic (`aether serve`'s default).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Channels the clients spread their messages over (client i writes to channel i mod n).
    #[arg(long, default_value_t = 4)]
    channels: usize,
    /// Seconds of load at the first level before measuring (connections, caches), not reported.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Longest wait for the outbox to empty after a level.
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// Commands per PostgreSQL transaction at most in the API role (`--postgres-group-commit`
    /// of `aether serve`); 0: one transaction per command.
    #[arg(long, default_value_t = aether_commands::postgres::DEFAULT_GROUP_COMMIT_MAX)]
    group_commit: usize,
}

impl Args {
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            !self.levels.is_empty() && self.levels.len() <= MAX_LEVELS,
            "--levels: 1 to {MAX_LEVELS} levels"
        );
        ensure!(
            self.levels.iter().all(|&c| (1..=MAX_CLIENTS).contains(&c)),
            "--levels: 1 to {MAX_CLIENTS} clients each"
        );
        ensure!(
            (1..=MAX_SECONDS).contains(&self.seconds),
            "--seconds: 1 to {MAX_SECONDS}"
        );
        ensure!(self.warmup <= 10, "--warmup: at most 10 seconds");
        ensure!(
            (1..=120).contains(&self.drain_timeout),
            "--drain-timeout: 1 to 120 seconds"
        );
        ensure!((1..=64).contains(&self.channels), "--channels: 1 to 64");
        ensure!((1..=64).contains(&self.partitions), "--partitions: 1 to 64");
        ensure!((2..=256).contains(&self.pool), "--pool: 2 to 256");
        self.servers.ensure_local()
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    args.validate()?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; its figures are not results \
             (cargo run --release -p aether-bench -- write-path)"
        );
    }
    let started_at = Utc::now();
    let wall = Instant::now();
    let db = BenchDatabase::create(&args.servers.postgres).await?;
    let kafka = KafkaConfig {
        bootstrap: args.servers.kafka.clone(),
        topic_prefix: format!("bench{}.", Uuid::new_v4().simple()),
        partitions: args.partitions,
        ..KafkaConfig::default()
    };
    let raw_kafka = KafkaConfig {
        topic_prefix: format!("{}raw.", kafka.topic_prefix),
        ..kafka.clone()
    };
    eprintln!(
        "database {}, topics {}*, levels {:?} × {} s",
        db.name, kafka.topic_prefix, args.levels, args.seconds
    );
    let outcome = tokio::select! {
        outcome = measure(&args, &db, &kafka, &raw_kafka) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    // Clean up whatever happened. The topics stay, as the tests' do: deleting them makes a
    // tansu broker (SQLite storage) busy for minutes, which would disturb the next run.
    let dropped = db.drop_database().await;
    let (mut results, machine) = outcome?;
    dropped.context("dropping the benchmark database")?;
    results.started_at = started_at;
    results.wall_s = wall.elapsed().as_secs_f64();
    results.load_at_end = crate::report::load_average();
    results.machine = machine;
    results.settings = Settings {
        levels: args.levels.clone(),
        seconds: args.seconds,
        warmup_s: args.warmup,
        pool: args.pool,
        group_commit: args.group_commit,
        partitions: args.partitions,
        channels: args.channels,
        postgres: redact_password(&args.servers.postgres),
        kafka: args.servers.kafka.clone(),
    };
    publish(&results, &args.out)?;
    Ok(())
}

/// Everything that needs the servers. The caller drops the database and topics afterwards.
async fn measure(
    args: &Args,
    db: &BenchDatabase,
    kafka: &KafkaConfig,
    raw_kafka: &KafkaConfig,
) -> anyhow::Result<(Results, Machine)> {
    let seconds = Duration::from_secs(args.seconds);
    let drain_timeout = Duration::from_secs(args.drain_timeout);
    let store = PgEventStore::connect(&db.url, args.pool, Duration::from_secs(5))
        .await
        .context("connecting to PostgreSQL")?
        .with_group_commit(args.group_commit);
    store.migrate().await?;
    // The benchmark's own connection: outbox polling, the sample row, setup of baselines.
    let watch = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await?;
    let machine = Machine::probe(&watch, &args.servers.kafka).await;
    init_topics(kafka).await.context("creating the topics")?;

    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("jwt-secret");
    let mut bytes = [0_u8; 64];
    rand::thread_rng().fill_bytes(&mut bytes);
    std::fs::write(&secret, bytes)?;
    let recorder = LatencyRecorder::new();
    let config = EmbeddedConfig {
        data_dir: dir.path().join("api"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        jwt_secret_file: Some(secret),
        // The load comes from one user on one address, far above what a person sends: the
        // benchmark measures the write path, not the rate limits.
        api: ApiLimits {
            rates: RateLimits::unlimited(),
            ..ApiLimits::default()
        },
        ..EmbeddedConfig::default()
    };
    // The projectors the API's queries read, in this process (a deployment runs each in its
    // own): the setup's mutations wait for them.
    let mongo = mongodb::Client::with_uri_str(&args.servers.mongo)
        .await
        .context("connecting to the MongoDB-compatible server")?
        .database(&format!("bench_{}", Uuid::new_v4().simple()));
    let projectors = tokio_util::sync::CancellationToken::new();
    let _stop_projectors = projectors.clone().drop_guard();
    let stores = Stores {
        postgres: store.pool().clone(),
        mongo: Some(mongo.clone()),
        timeline: Default::default(),
    };
    let _projectors = spawn_projectors(
        &stores,
        kafka,
        &QUERIED_PROJECTIONS,
        &ProjectorOptions::default(),
        &projectors,
    )?;
    let running = start_distributed(
        config,
        DistributedConfig {
            postgres: store.clone(),
            kafka: kafka.clone(),
            mongo: Some(mongo.clone()),
            with_relay: true,
            relay_latency: Some(recorder.clone()),
        },
    )
    .await?;
    let api = Api::new(running.local_addr)?;

    let setup = setup(&api, args.channels).await?;
    drain(&watch, Instant::now(), drain_timeout).await?;
    if args.warmup > 0 {
        eprintln!("warm-up: {} clients × {} s", args.levels[0], args.warmup);
        run_level(
            &api,
            &setup,
            args.levels[0],
            Duration::from_secs(args.warmup),
        )
        .await;
        drain(&watch, Instant::now(), drain_timeout).await?;
    }
    recorder.take();

    let mut notes = Vec::new();
    let mut levels = Vec::with_capacity(args.levels.len());
    for &clients in &args.levels {
        let cpu = CpuSample::take();
        let started = Instant::now();
        let load = run_level(&api, &setup, clients, seconds).await;
        let load_s = started.elapsed().as_secs_f64();
        let drained = drain(&watch, started, drain_timeout).await?;
        let cpu = cpu.until(&CpuSample::take());
        let mut to_kafka = recorder.take();
        let mut request = load.latencies;
        let level = LevelResult {
            clients,
            load_s,
            accepted: load.accepted,
            failed: load.failed,
            first_error: load.first_error,
            request: Summary::of_micros(&mut request),
            drained_at_s: drained.drained_at.map(|d| d.as_secs_f64()),
            left_in_outbox: drained.left,
            command_to_kafka: Summary::of_micros(&mut to_kafka),
            cpu,
        };
        eprintln!(
            "{clients:>4} clients: {} accepted ({:.0}/s), {} failed, drained at {:?} s, \
             end to end {:.0}/s, command→Kafka p50 {:.1} ms p99 {:.1} ms",
            level.accepted,
            level.accepted_per_s(),
            level.failed,
            level.drained_at_s,
            level.end_to_end_per_s().unwrap_or(0.0),
            level.command_to_kafka.p50_ms,
            level.command_to_kafka.p99_ms
        );
        let drained = level.drained_at_s.is_some();
        levels.push(level);
        if !drained {
            // More load on a path that cannot keep up measures nothing new.
            notes.push(format!(
                "The outbox did not empty within {} s after the {clients}-client level; the \
                 remaining levels were not run.",
                args.drain_timeout
            ));
            break;
        }
    }

    let sample = Sample::capture(&watch).await?;
    if let Err(error) = running.stop().await {
        // A failed role (the relay losing the broker) does not void the figures.
        notes.push(format!(
            "The API role reported an error when stopped: {error}"
        ));
    }
    projectors.cancel();
    let _ = mongo.drop().await;
    store.pool().close().await;

    let best_clients = levels
        .iter()
        .max_by(|a, b| {
            let rate = |l: &LevelResult| l.end_to_end_per_s().unwrap_or(0.0);
            rate(a).total_cmp(&rate(b))
        })
        .map_or(args.levels[0], |l| l.clients);

    eprintln!("raw produce: {} s", args.seconds);
    let produce = raw_produce(raw_kafka, &sample, &setup.channels, seconds)
        .await
        .unwrap_or_else(|error| {
            notes.push(format!("Raw produce failed: {error:#}"));
            ProduceResult::default()
        });
    if produce.failed > 0 {
        notes.push(format!(
            "Raw produce: {} messages were not acknowledged.",
            produce.failed
        ));
    }
    eprintln!("  {:.0} messages/s", produce.per_s());

    eprintln!(
        "raw insert into events: {best_clients} tasks × {} s",
        args.seconds
    );
    let insert = raw_insert(&db.url, &sample, "events", true, best_clients, seconds).await?;
    eprintln!("  {:.0} rows/s", insert.per_s());

    sqlx::query(
        "CREATE TABLE bench_plain \
         (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)",
    )
    .execute(&watch)
    .await?;
    eprintln!(
        "raw insert into a table without triggers: {best_clients} tasks × {} s",
        args.seconds
    );
    let insert_plain = raw_insert(
        &db.url,
        &sample,
        "bench_plain",
        false,
        best_clients,
        seconds,
    )
    .await?;
    eprintln!("  {:.0} rows/s", insert_plain.per_s());
    watch.close().await;

    let results = Results {
        levels,
        produce,
        insert,
        insert_plain,
        notes,
        ..Results::default()
    };
    if let Some(best) = results.best().and_then(LevelResult::end_to_end_per_s) {
        eprintln!(
            "best end to end: {best:.0} messages/s ({:.0} % of the {TARGET_PER_S:.0}/s target)",
            100.0 * best / TARGET_PER_S
        );
    }
    Ok((results, machine))
}

// --- the API, over HTTP ----------------------------------------------------------------------

const REGISTER: &str = "mutation($u: String!) { register(input: {username: $u, password: \
                        \"correct horse battery\"}) { accessToken user { id } } }";
const CREATE_SERVER: &str = "mutation { createServer(input: {name: \"Benchmark\"}) { id } }";
const CREATE_CHANNEL: &str =
    "mutation($s: ID!, $n: String!) { createChannel(input: {serverId: $s, name: $n}) { id } }";
const SEND_MESSAGE: &str =
    "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";

#[derive(Clone, Debug)]
struct Api {
    http: reqwest::Client,
    url: Arc<str>,
}

impl Api {
    fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            // Keep-alive: every client task reuses its connection.
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(30))
                .build()?,
            url: format!("http://{addr}/graphql").into(),
        })
    }

    /// One GraphQL request that must succeed; returns `data`.
    async fn call(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(&*self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let mut body: Value = response.json().await?;
        if let Some(errors) = body.get("errors").filter(|errors| !errors.is_null()) {
            bail!("HTTP {status}: {errors}");
        }
        ensure!(status.is_success(), "HTTP {status}: {body}");
        Ok(body["data"].take())
    }
}

#[derive(Clone, Debug)]
struct Setup {
    token: Arc<str>,
    channels: Vec<String>,
}

/// Registers a user who creates a server with `channels` channels.
async fn setup(api: &Api, channels: usize) -> anyhow::Result<Setup> {
    let data = api
        .call(None, REGISTER, json!({ "u": "benchmark" }))
        .await
        .context("register")?;
    let token = data["register"]["accessToken"]
        .as_str()
        .context("no access token")?
        .to_owned();
    let data = api
        .call(Some(&token), CREATE_SERVER, json!({}))
        .await
        .context("createServer")?;
    let server = data["createServer"]["id"]
        .as_str()
        .context("no server id")?
        .to_owned();
    let mut ids = Vec::with_capacity(channels);
    for n in 0..channels {
        let data = api
            .call(
                Some(&token),
                CREATE_CHANNEL,
                json!({ "s": server, "n": format!("bench-{n}") }),
            )
            .await
            .context("createChannel")?;
        ids.push(
            data["createChannel"]["id"]
                .as_str()
                .context("no channel id")?
                .to_owned(),
        );
    }
    Ok(Setup {
        token: token.into(),
        channels: ids,
    })
}

#[derive(Debug, Default)]
struct LevelLoad {
    accepted: u64,
    failed: u64,
    first_error: Option<String>,
    /// Request round trips of accepted messages, µs.
    latencies: Vec<u32>,
}

/// `clients` tasks, each sending `sendMessage` in a loop (one request at a time on its
/// keep-alive connection) until `duration` has passed.
async fn run_level(api: &Api, setup: &Setup, clients: usize, duration: Duration) -> LevelLoad {
    let deadline = Instant::now() + duration;
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let api = api.clone();
        let token = setup.token.clone();
        let channel = setup.channels[client % setup.channels.len()].clone();
        tasks.spawn(async move {
            let mut load = LevelLoad::default();
            let mut n = 0_u64;
            while Instant::now() < deadline {
                n += 1;
                let body = format!("benchmark message {n} from client {client}");
                let sent = Instant::now();
                let outcome = api
                    .call(
                        Some(&token),
                        SEND_MESSAGE,
                        json!({ "c": channel, "b": body }),
                    )
                    .await
                    .and_then(|data| {
                        data["sendMessage"]["id"]
                            .as_str()
                            .map(drop)
                            .ok_or_else(|| anyhow!("no message id in {data}"))
                    });
                match outcome {
                    Ok(()) => {
                        load.accepted += 1;
                        load.latencies.push(micros(sent.elapsed()));
                    }
                    Err(error) => {
                        load.failed += 1;
                        load.first_error.get_or_insert_with(|| error.to_string());
                        // A failing API is not hammered in a tight loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            load
        });
    }
    let mut total = LevelLoad::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(load) => {
                total.accepted += load.accepted;
                total.failed += load.failed;
                if total.first_error.is_none() {
                    total.first_error = load.first_error;
                }
                total.latencies.extend(load.latencies);
            }
            Err(error) => {
                total.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    total
}

struct Drained {
    /// Since `started`, when the outbox was seen empty; `None` if it never was in time.
    drained_at: Option<Duration>,
    left: i64,
}

/// Waits until the relay has published every outbox row (it deletes a row once Kafka
/// acknowledged it).
async fn drain(watch: &PgPool, started: Instant, timeout: Duration) -> anyhow::Result<Drained> {
    let give_up = Instant::now() + timeout;
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(watch)
            .await?;
        if left == 0 {
            return Ok(Drained {
                drained_at: Some(started.elapsed()),
                left,
            });
        }
        if Instant::now() >= give_up {
            return Ok(Drained {
                drained_at: None,
                left,
            });
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

// --- baselines -------------------------------------------------------------------------------

/// A real `MessageSent` row of the run and the envelope the relay published for it.
struct Sample {
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    envelope: EventEnvelope,
    body: Vec<u8>,
    hash: String,
    prev_hash: String,
}

impl Sample {
    async fn capture(watch: &PgPool) -> anyhow::Result<Self> {
        let row = sqlx::query(
            "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata, hash, \
             prev_hash FROM events WHERE aggregate_type = 'Message' \
             AND event_type = 'MessageSent' ORDER BY position DESC LIMIT 1",
        )
        .fetch_optional(watch)
        .await?
        .context("no message was sent: nothing to compare with")?;
        let aggregate_id: String = row.try_get("aggregate_id")?;
        let sequence: i64 = row.try_get("sequence")?;
        let event_type: String = row.try_get("event_type")?;
        let event_version: String = row.try_get("event_version")?;
        let payload: Value = row.try_get("payload")?;
        let metadata: Value = row.try_get("metadata")?;
        // Exactly what the relay builds and sends (commands/src/relay.rs, `outbox_row`).
        let envelope = EventEnvelope::from_stored(
            "Message",
            &aggregate_id,
            u64::try_from(sequence)?,
            &event_type,
            &event_version,
            payload.clone(),
            &Metadata::from_value(&metadata),
        );
        let body = serde_json::to_vec(&envelope)?;
        Ok(Self {
            event_type,
            event_version,
            payload,
            metadata,
            envelope,
            body,
            hash: row.try_get("hash")?,
            prev_hash: row.try_get("prev_hash")?,
        })
    }

    /// The relay's header set ([`event_headers`]), with a fresh event id.
    fn headers(&self, event_id: &str) -> OwnedHeaders {
        event_headers(
            &self.envelope,
            event_id,
            &self.hash,
            &self.prev_hash,
            self.body.len(),
        )
    }
}

/// Baseline 1: the sample envelope produced to the message topic of a fresh prefix with the
/// same layout, keyed by the same channel ids, by the producer the relay uses
/// (`KafkaConfig::producer`: idempotent, acks=all), as fast as the broker acknowledges with at
/// most `PRODUCE_IN_FLIGHT` unacknowledged.
async fn raw_produce(
    kafka: &KafkaConfig,
    sample: &Sample,
    keys: &[String],
    duration: Duration,
) -> anyhow::Result<ProduceResult> {
    init_topics(kafka)
        .await
        .context("creating the raw topics")?;
    let producer = kafka.producer()?;
    let topic = kafka.topic(topics::topic_for("Message").context("no message topic")?);
    let permits = Arc::new(Semaphore::new(PRODUCE_IN_FLIGHT));
    let (deliveries, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    // Acknowledgements are collected by their own task, so each is timed when it arrives.
    let collector = tokio::spawn(async move {
        let mut pending = FuturesUnordered::new();
        let mut open = true;
        let mut acks = Vec::new();
        let mut failed = 0_u64;
        let mut last_ack = None;
        loop {
            tokio::select! {
                next = delivered.recv(), if open => match next {
                    Some((sent, delivery, permit)) => pending.push(async move {
                        let outcome: Result<_, _> = delivery.await;
                        drop(permit);
                        (sent, Instant::now(), matches!(outcome, Ok(Ok(_))))
                    }),
                    None => open = false,
                },
                Some((sent, acked, ok)) = pending.next(), if !pending.is_empty() => {
                    if ok {
                        acks.push(micros(acked - sent));
                        last_ack = Some(acked);
                    } else {
                        failed += 1;
                    }
                }
                else => break,
            }
        }
        (acks, failed, last_ack)
    });
    let cpu = CpuSample::take();
    let started = Instant::now();
    let deadline = started + duration;
    let mut n = 0_usize;
    while Instant::now() < deadline {
        let permit = permits.clone().acquire_owned().await?;
        let id = Uuid::new_v4().to_string();
        let record = FutureRecord::to(&topic)
            .key(keys[n % keys.len()].as_bytes())
            .headers(sample.headers(&id))
            .payload(&sample.body);
        match producer.send_result(record) {
            Ok(delivery) => {
                n += 1;
                deliveries
                    .send((Instant::now(), delivery, permit))
                    .map_err(|_| anyhow!("the acknowledgement collector stopped"))?;
            }
            // The local queue is full: let acknowledgements catch up.
            Err((_, _)) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    drop(deliveries);
    let (mut acks, failed, last_ack) = collector.await?;
    let cpu = cpu.until(&CpuSample::take());
    let seconds = last_ack.map_or(0.0, |at| (at - started).as_secs_f64());
    Ok(ProduceResult {
        acked: acks.len() as u64,
        failed,
        seconds,
        max_in_flight: PRODUCE_IN_FLIGHT,
        body_bytes: sample.body.len(),
        ack: Summary::of_micros(&mut acks),
        cpu,
    })
}

/// Baseline 2: the sample row inserted as postgres-es inserts it (the same statement and
/// binds), one row per transaction (autocommit), each into a new message aggregate, from
/// `tasks` connections opened beforehand.
async fn raw_insert(
    url: &str,
    sample: &Sample,
    table: &str,
    triggers: bool,
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<InsertResult> {
    let mut connections = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        connections.push(PgConnection::connect(url).await?);
    }
    let sql: Arc<str> = format!(
        "INSERT INTO {table} (aggregate_type, aggregate_id, sequence, event_type, \
         event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    .into();
    let row = Arc::new((
        sample.event_type.clone(),
        sample.event_version.clone(),
        sample.payload.clone(),
        sample.metadata.clone(),
    ));
    let cpu = CpuSample::take();
    let started = Instant::now();
    let deadline = started + duration;
    let mut set = JoinSet::new();
    for mut connection in connections {
        let (sql, row) = (sql.clone(), row.clone());
        set.spawn(async move {
            let (mut rows, mut failed, mut latencies) = (0_u64, 0_u64, Vec::new());
            while Instant::now() < deadline {
                let aggregate_id = Uuid::new_v4().to_string();
                let sent = Instant::now();
                let outcome = sqlx::query(&sql)
                    .bind("Message")
                    .bind(&aggregate_id)
                    .bind(1_i32)
                    .bind(&row.0)
                    .bind(&row.1)
                    .bind(&row.2)
                    .bind(&row.3)
                    .execute(&mut connection)
                    .await;
                match outcome {
                    Ok(_) => {
                        rows += 1;
                        latencies.push(micros(sent.elapsed()));
                    }
                    Err(error) => {
                        failed += 1;
                        if failed == 1 {
                            tracing::warn!(%error, "raw insert failed");
                        }
                    }
                }
            }
            let _ = connection.close().await;
            (rows, failed, latencies)
        });
    }
    let (mut rows, mut failed, mut latencies) = (0, 0, Vec::new());
    while let Some(joined) = set.join_next().await {
        let (r, f, l) = joined?;
        rows += r;
        failed += f;
        latencies.extend(l);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu.until(&CpuSample::take());
    Ok(InsertResult {
        table: table.to_owned(),
        triggers,
        tasks,
        rows,
        failed,
        seconds,
        latency: Summary::of_micros(&mut latencies),
        cpu,
    })
}
