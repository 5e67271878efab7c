//! `aether-bench read-path`: the read side of both modes in one run, on the same machine.
//!
//! In this order (the queries first, so that they do not run while the read models catch up
//! with a latency phase's backlog):
//!
//! 1. **History queries**: once a channel holds at least `--history-messages` messages (and the
//!    read models have applied them all), `--queries` sequential `channel(id) { messages(last:
//!    50) }` queries over HTTP, from the embedded SQLite read models and from the distributed
//!    ones (PostgreSQL catalog, MongoDB timeline), to the subscribers' instance. Two shapes: the
//!    page alone, and the page with each message's author.
//! 2. **Read-your-own-write**: `--ryow` times, a `sendMessage` answered by the API instance,
//!    then at once a query carrying its consistency token to the *other* instance (the same one
//!    in the embedded mode): the time from the mutation's answer to that query's answer, and
//!    whether the answer held the message.
//! 3. **Subscription latency**: the `realtime` benchmark's latency phase (its subscriber and
//!    sender code, [`Product::phase`]) at each of `--rates`, through the embedded application
//!    (the baseline: one process, SQLite, in-process projectors and updates) and through the
//!    whole distributed path: `sendMessage` to an API instance with the relay in-process →
//!    PostgreSQL event store and outbox → relay → Kafka broker → the catalog, receipts and
//!    timeline projectors (in this process, as their own processes would run them) → their
//!    stores and `aether.updates.v1` → a *second* instance, without relay, holding every
//!    WebSocket subscriber.
//!
//! Local and bounded: the servers must be on loopback, every phase is timed, the PostgreSQL
//! database (`aether_bench_<random>`) and the MongoDB database (`bench_<random>`) are dropped at
//! the end; the topics (a fresh prefix) stay on the broker, as the write-path benchmark's do.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aether_cli::roles::{start_distributed, DistributedConfig, EmbeddedConfig};
use aether_commands::postgres::PgEventStore;
use aether_commands::relay::LatencyRecorder;
use aether_kafka::admin::init_topics;
use aether_kafka::KafkaConfig;
use aether_projections::stream::role::{
    spawn_projectors, Stores, TimelineStore, QUERIED_PROJECTIONS,
};
use aether_projections::stream::ProjectorOptions;
use anyhow::{anyhow, ensure, Context};
use futures::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::realtime::{graphql_body, nproc, phase_json, product_config, Phase, Product, Shape};
use crate::report::{cpu_cell, load_average, publish, Machine, Report};
use crate::servers::{redact_password, BenchDatabase, Servers};
use crate::stats::{micros, CpuSample, CpuUse, Summary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Messages per second of each latency phase, comma-separated, run in this order.
    #[arg(long, value_delimiter = ',', default_values_t = [200, 500])]
    rates: Vec<u32>,
    /// WebSocket subscribers of each latency phase.
    #[arg(long, default_value_t = 1_000)]
    subscribers: usize,
    /// Channels the subscribers (and the messages, round-robin) are spread over.
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Members of the server; subscriber `n` is member `n mod members` (one member, several
    /// devices). Each join waits for the catalog projector in the distributed mode, so the setup
    /// takes about this many round trips through the whole path.
    #[arg(long, default_value_t = 200)]
    members: usize,
    /// Seconds of sending per latency phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// After sending, seconds without a delivery before the rest count as not received (at
    /// most 60 s of waiting in all). Longer than `realtime`'s 3 s: the distributed path
    /// delivers in bursts when it falls behind.
    #[arg(long, default_value_t = 10)]
    settle_quiet_s: u64,
    /// Messages the queried channel holds at least before the history queries.
    #[arg(long, default_value_t = 250)]
    history_messages: usize,
    /// Sequential history queries per shape and mode (after 100 not counted).
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
    /// Read-your-own-write round trips per mode; 0 skips them.
    #[arg(long, default_value_t = 200)]
    ryow: usize,
    /// Where the distributed mode keeps its timeline, comma-separated: the distributed mode
    /// runs once per store, in this order.
    #[arg(long, value_delimiter = ',', default_values_t = [TimelineStore::MongoDb, TimelineStore::Postgres])]
    timeline_stores: Vec<TimelineStore>,
    /// The servers the distributed mode runs on.
    #[command(flatten)]
    servers: Servers,
    /// Partitions of each topic (`aether serve`'s default).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// PostgreSQL connections of each instance (`aether serve`'s default).
    #[arg(long, default_value_t = 16)]
    pool: u32,
    /// Events per projector transaction (`ProjectorOptions::default()`).
    #[arg(long, default_value_t = 1_000)]
    projector_batch: usize,
    /// How long a projector waits for more events once a batch's first arrived, ms
    /// (`ProjectorOptions::default()`).
    #[arg(long, default_value_t = 20)]
    projector_linger_ms: u64,
    /// How long the relay's and the projectors' Kafka producers wait to fill a batch, ms
    /// (librdkafka's `linger.ms`; `aether serve --kafka-linger-ms`).
    #[arg(long, default_value_t = aether_kafka::DEFAULT_LINGER.as_millis() as u64)]
    kafka_linger_ms: u64,
    /// Skip the embedded mode (the baseline).
    #[arg(long)]
    no_embedded: bool,
    /// Skip the distributed mode.
    #[arg(long)]
    no_distributed: bool,
    /// Skip the latency phases (history and read-your-own-write only).
    #[arg(long)]
    no_latency: bool,
    /// Where `read-path.json` and `read-path.md` go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

/// How a report names where the timeline was kept.
fn timeline_label(timeline: TimelineStore) -> &'static str {
    match timeline {
        TimelineStore::MongoDb => "MongoDB",
        TimelineStore::Postgres => "PostgreSQL",
    }
}

/// Warm-up queries before the timed ones, per shape.
const WARMUP_QUERIES: usize = 100;

/// The newest page of a channel, as a client opening it asks for it.
const HISTORY: &str = "query($c: ID!) { channel(id: $c) { messages(last: 50) { edges { cursor \
    node { id body createdAt editedAt deleted sequence } } pageInfo { hasPreviousPage \
    startCursor } } } }";
/// The same page with each message's author (one user look-up per message).
const HISTORY_WITH_AUTHORS: &str = "query($c: ID!) { channel(id: $c) { messages(last: 50) { \
    edges { cursor node { id body createdAt editedAt deleted sequence author { id username \
    displayName } } } pageInfo { hasPreviousPage startCursor } } } }";
/// The newest message of a channel.
const NEWEST: &str =
    "query($c: ID!) { channel(id: $c) { messages(last: 1) { edges { node { id } } } } }";
const SEND: &str =
    "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
/// A query that reads nothing the write changed: waits for the consistency token only.
const ME: &str = "{ me { id } }";

impl Args {
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            !self.rates.is_empty() && self.rates.len() <= 6,
            "--rates: 1 to 6 rates"
        );
        ensure!(
            self.rates.iter().all(|&r| (1..=5_000).contains(&r)),
            "--rates: 1 to 5000 messages/s each"
        );
        ensure!(
            (1..=5_000).contains(&self.subscribers),
            "--subscribers: 1 to 5000"
        );
        ensure!(
            (1..=self.subscribers).contains(&self.channels),
            "--channels: 1 to --subscribers"
        );
        ensure!(
            (1..=self.subscribers).contains(&self.members),
            "--members: 1 to --subscribers"
        );
        ensure!((1..=60).contains(&self.seconds), "--seconds: 1 to 60");
        ensure!(
            (1..=60).contains(&self.settle_quiet_s),
            "--settle-quiet-s: 1 to 60"
        );
        ensure!(
            (50..=5_000).contains(&self.history_messages),
            "--history-messages: 50 to 5000"
        );
        ensure!(
            (1..=20_000).contains(&self.queries),
            "--queries: 1 to 20000"
        );
        ensure!(self.ryow <= 5_000, "--ryow: at most 5000");
        ensure!((1..=64).contains(&self.partitions), "--partitions: 1 to 64");
        ensure!((2..=256).contains(&self.pool), "--pool: 2 to 256");
        ensure!(
            (1..=10_000).contains(&self.projector_batch)
                && self.projector_linger_ms <= 1_000
                && self.kafka_linger_ms <= 1_000,
            "--projector-batch: 1 to 10000, --projector-linger-ms and --kafka-linger-ms: at most \
             1000"
        );
        ensure!(
            !(self.no_embedded && self.no_distributed),
            "nothing to run: both modes skipped"
        );
        self.servers.ensure_local()
    }

    fn shape(&self, rate: u32) -> Shape {
        Shape {
            subscribers: self.subscribers,
            channels: self.channels,
            rate,
            seconds: self.seconds,
            settle_quiet: Duration::from_secs(self.settle_quiet_s),
        }
    }
}

/// One mode's figures.
#[derive(Clone, Debug, Default)]
struct Mode {
    /// `(rate, phase)` per latency phase.
    phases: Vec<(u32, Phase)>,
    /// Distributed: per latency phase, command → acknowledged by the broker, from the relay
    /// (`DistributedConfig::relay_latency`): the first half of the path.
    to_kafka: Vec<Summary>,
    /// Per latency phase, where the CPU went from the first subscription to the end of the
    /// wait for the deliveries.
    cpu: Vec<CpuUse>,
    /// Messages the queried channel held when the history queries ran.
    history_channel_messages: usize,
    history: Summary,
    history_with_authors: Summary,
    ryow: Ryow,
    notes: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct Ryow {
    /// From the mutation's answer to the answer of the query with its token.
    wait: Summary,
    /// Answers that did not hold the message yet.
    stale: usize,
    failed: usize,
}

#[derive(Clone, Debug, Default)]
struct Results {
    started: String,
    load_before: String,
    load_after: String,
    machine: Machine,
    settings: Value,
    embedded: Option<Mode>,
    /// One run of the distributed mode per timeline store.
    distributed: Vec<(TimelineStore, Mode)>,
    notes: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    args.validate()?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; its figures are not results \
             (cargo run --release -p aether-bench -- read-path)"
        );
    }
    let mut results = Results {
        started: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        load_before: load_average(),
        settings: json!({
            "rates_per_s": args.rates,
            "subscribers": args.subscribers,
            "channels": args.channels,
            "members": args.members,
            "seconds": args.seconds,
            "settle_quiet_s": args.settle_quiet_s,
            "history_messages": args.history_messages,
            "queries": args.queries,
            "warmup_queries": WARMUP_QUERIES,
            "ryow": args.ryow,
            "latency_phases": !args.no_latency,
            "partitions": args.partitions,
            "pool": args.pool,
            "projector_batch": args.projector_batch,
            "projector_linger_ms": args.projector_linger_ms,
            "kafka_linger_ms": args.kafka_linger_ms,
            "postgres": redact_password(&args.servers.postgres),
            "kafka": args.servers.kafka,
            "mongo": args.servers.mongo,
            "timeline_stores": args.timeline_stores.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        }),
        ..Results::default()
    };
    if args.subscribers % args.channels != 0 {
        results.notes.push(
            "subscribers do not divide evenly over channels; expected deliveries are approximate"
                .to_owned(),
        );
    }

    if !args.no_embedded {
        eprintln!("embedded: one process, SQLite");
        let product = Product::start(args.channels, args.members).await?;
        let mode = exercise(&args, &product, None).await;
        let stopped = product.stop().await;
        let mut mode = mode?;
        if let Err(error) = stopped {
            mode.notes.push(format!(
                "The application reported an error when stopped: {error}"
            ));
        }
        results.embedded = Some(mode);
    }

    if !args.no_distributed {
        for &timeline in &args.timeline_stores {
            eprintln!(
                "distributed: API + relay, broker, projectors, edge instance; timeline in {}",
                timeline_label(timeline)
            );
            let db = BenchDatabase::create(&args.servers.postgres).await?;
            let outcome = tokio::select! {
                outcome = distributed(&args, &db, timeline) => outcome,
                _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            };
            let dropped = db.drop_database().await;
            let (mode, machine) = outcome?;
            dropped.context("dropping the benchmark database")?;
            results.distributed.push((timeline, mode));
            results.machine = machine;
        }
    } else {
        results.machine.nproc = nproc();
    }
    results.load_after = load_average();
    publish(&results, &args.out)
}

/// The distributed mode, start to stop; the caller drops the PostgreSQL database.
async fn distributed(
    args: &Args,
    db: &BenchDatabase,
    timeline: TimelineStore,
) -> anyhow::Result<(Mode, Machine)> {
    let connect = || async {
        PgEventStore::connect(&db.url, args.pool, Duration::from_secs(5))
            .await
            .context("connecting to PostgreSQL")
    };
    let projector_store = connect().await?;
    projector_store.migrate().await?;
    let machine = Machine::probe(projector_store.pool(), &args.servers.kafka).await;
    let kafka = KafkaConfig {
        bootstrap: args.servers.kafka.clone(),
        topic_prefix: format!("bench{}.", Uuid::new_v4().simple()),
        partitions: args.partitions,
        linger: Duration::from_millis(args.kafka_linger_ms),
        ..KafkaConfig::default()
    };
    init_topics(&kafka).await.context("creating the topics")?;
    eprintln!("  database {}, topics {}*", db.name, kafka.topic_prefix);
    let mongo = mongodb::Client::with_uri_str(&args.servers.mongo)
        .await
        .context("connecting to the MongoDB-compatible server")?
        .database(&format!("bench_{}", Uuid::new_v4().simple()));
    let outcome = distributed_on(args, db, &kafka, &mongo, timeline, projector_store).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), mongo.drop()).await;
    Ok((outcome?, machine))
}

async fn distributed_on(
    args: &Args,
    db: &BenchDatabase,
    kafka: &KafkaConfig,
    mongo: &mongodb::Database,
    timeline: TimelineStore,
    projector_store: PgEventStore,
) -> anyhow::Result<Mode> {
    // The catalog, receipts and timeline projectors, in this process as their own processes
    // would run them (`aether serve --role projector`).
    let projectors = tokio_util::sync::CancellationToken::new();
    let _stop_projectors = projectors.clone().drop_guard();
    let options = ProjectorOptions {
        batch_size: args.projector_batch,
        linger: Duration::from_millis(args.projector_linger_ms),
        ..ProjectorOptions::default()
    };
    let mut running_projectors = spawn_projectors(
        &Stores {
            postgres: projector_store.pool().clone(),
            mongo: Some(mongo.clone()),
            timeline,
        },
        kafka,
        &QUERIED_PROJECTIONS,
        &options,
        &projectors,
    )?;

    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("jwt-secret");
    std::fs::write(
        &secret,
        aether_commands::keys::Keyring::generate().to_json(),
    )?;
    let recorder = LatencyRecorder::new();
    let instance = |name: &str, with_relay: bool| {
        let config = EmbeddedConfig {
            jwt_secret_file: Some(secret.clone()),
            ..product_config(&dir.path().join(name))
        };
        let kafka = kafka.clone();
        let mongo = (timeline == TimelineStore::MongoDb).then(|| mongo.clone());
        let relay_latency = with_relay.then(|| recorder.clone());
        async move {
            let distributed = DistributedConfig {
                postgres: PgEventStore::connect(&db.url, args.pool, Duration::from_secs(5))
                    .await
                    .context("connecting to PostgreSQL")?,
                kafka,
                mongo,
                with_relay,
                relay_latency,
            };
            anyhow::Ok(start_distributed(config, distributed).await?)
        }
    };
    let api = instance("api", true).await?;
    let edge = match instance("edge", false).await {
        Ok(edge) => edge,
        Err(error) => {
            let _ = api.stop().await;
            return Err(error);
        }
    };
    let (api_addr, edge_addr) = (api.local_addr, edge.local_addr);
    let product = Product::populate(
        vec![api, edge],
        api_addr,
        edge_addr,
        None,
        args.channels,
        args.members,
    )
    .await?;
    let mode = tokio::select! {
        mode = exercise(args, &product, Some(&recorder)) => mode,
        Some(Ok(Err(error))) = running_projectors.join_next() => Err(anyhow!("a projector failed: {error}")),
    };
    let stopped = product.stop().await;
    projectors.cancel();
    while running_projectors.join_next().await.is_some() {}
    projector_store.pool().close().await;
    let mut mode = mode?;
    if let Err(error) = stopped {
        mode.notes.push(format!(
            "An instance reported an error when stopped: {error}"
        ));
    }
    Ok(mode)
}

/// Every measurement of one mode, on a populated product; `relay` records the distributed
/// API instance's command → broker latencies.
async fn exercise(
    args: &Args,
    product: &Product,
    relay: Option<&LatencyRecorder>,
) -> anyhow::Result<Mode> {
    let mut mode = Mode::default();
    // The queries first, on read models that are not catching up with a latency phase's
    // backlog.
    let channel = product.channels[0].clone();
    mode.history_channel_messages = fill(product, &channel, args.history_messages).await?;
    eprintln!(
        "  history: {} queries of the newest 50 of {} messages",
        args.queries, mode.history_channel_messages
    );
    mode.history = history(product, &channel, HISTORY, args.queries).await?;
    mode.history_with_authors =
        history(product, &channel, HISTORY_WITH_AUTHORS, args.queries).await?;
    eprintln!(
        "    p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms (with authors: p50 {:.2} ms, p99 {:.2} ms)",
        mode.history.p50_ms,
        mode.history.p95_ms,
        mode.history.p99_ms,
        mode.history_with_authors.p50_ms,
        mode.history_with_authors.p99_ms
    );

    if args.ryow > 0 {
        let channel = product.channels[1 % product.channels.len()].clone();
        eprintln!("  read-your-own-write: {} round trips", args.ryow);
        mode.ryow = ryow(product, &channel, args.ryow).await;
        eprintln!(
            "    p50 {:.2} ms, p99 {:.2} ms, {} stale, {} failed",
            mode.ryow.wait.p50_ms, mode.ryow.wait.p99_ms, mode.ryow.stale, mode.ryow.failed
        );
    }

    for &rate in args.rates.iter().filter(|_| !args.no_latency) {
        eprintln!(
            "  latency: {rate} messages/s to {} subscribers",
            args.subscribers
        );
        if let Some(relay) = relay {
            relay.take();
        }
        let cpu = CpuSample::take();
        let phase = product.phase(args.shape(rate)).await?;
        mode.cpu.push(cpu.until(&CpuSample::take()));
        if let Some(relay) = relay {
            let to_kafka = Summary::of_micros(&mut relay.take());
            eprintln!(
                "    command → broker: p50 {:.1} ms, p99 {:.1} ms",
                to_kafka.p50_ms, to_kafka.p99_ms
            );
            mode.to_kafka.push(to_kafka);
        }
        eprintln!(
            "    {} / {} delivered, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            phase.delivered,
            phase.expected,
            phase.latency.p50_ms,
            phase.latency.p95_ms,
            phase.latency.p99_ms,
            phase.latency.max_ms
        );
        mode.phases.push((rate, phase));
    }
    Ok(mode)
}

/// The consistency token of a mutation's answer.
fn consistency_token(body: &Value) -> anyhow::Result<String> {
    body["extensions"]["consistencyToken"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no consistency token in {body}"))
}

/// Sends `count` more messages to `channel` (which then holds at least that many) and waits
/// until the edge instance's read models have applied every one.
async fn fill(product: &Product, channel: &str, count: usize) -> anyhow::Result<usize> {
    let missing = count;
    let tokens: Vec<anyhow::Result<String>> = futures::stream::iter(0..missing)
        .map(|n| async move {
            let body = graphql_body(
                &product.http,
                product.api,
                Some(&product.owner),
                None,
                SEND,
                json!({ "c": channel, "b": format!("history message {n}: a line of chat of about the length people write") }),
            )
            .await?;
            consistency_token(&body)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    // Every token answered on the edge instance: each message is in its read models.
    for token in tokens {
        let token = token?;
        graphql_body(
            &product.http,
            product.edge,
            Some(&product.owner),
            Some(&token),
            ME,
            json!({}),
        )
        .await?;
    }
    let full = graphql_body(
        &product.http,
        product.edge,
        Some(&product.owner),
        None,
        HISTORY,
        json!({ "c": channel }),
    )
    .await?;
    let held = full["data"]["channel"]["messages"]["edges"]
        .as_array()
        .map_or(0, Vec::len);
    ensure!(
        held == 50,
        "the history page holds {held} messages, not 50: {full}"
    );
    Ok(count)
}

/// `queries` sequential history queries to the edge instance, after [`WARMUP_QUERIES`].
async fn history(
    product: &Product,
    channel: &str,
    query: &str,
    queries: usize,
) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(queries);
    for n in 0..WARMUP_QUERIES + queries {
        let started = Instant::now();
        let body = graphql_body(
            &product.http,
            product.edge,
            Some(&product.owner),
            None,
            query,
            json!({ "c": channel }),
        )
        .await?;
        let elapsed = started.elapsed();
        ensure!(
            body["data"]["channel"]["messages"]["edges"]
                .as_array()
                .map_or(0, Vec::len)
                == 50,
            "a history query answered {body}"
        );
        if n >= WARMUP_QUERIES {
            samples.push(micros(elapsed));
        }
    }
    Ok(Summary::of_micros(&mut samples))
}

/// `rounds` times: `sendMessage` to the API instance, then at once the channel's newest message
/// from the edge instance with the mutation's consistency token.
async fn ryow(product: &Product, channel: &str, rounds: usize) -> Ryow {
    let mut outcome = Ryow::default();
    let mut samples = Vec::with_capacity(rounds);
    for n in 0..rounds {
        let round = async {
            let body = graphql_body(
                &product.http,
                product.api,
                Some(&product.owner),
                None,
                SEND,
                json!({ "c": channel, "b": format!("read your own write {n}") }),
            )
            .await?;
            let answered = Instant::now();
            let token = consistency_token(&body)?;
            let sent = body["data"]["sendMessage"]["id"].clone();
            let read = graphql_body(
                &product.http,
                product.edge,
                Some(&product.owner),
                Some(&token),
                NEWEST,
                json!({ "c": channel }),
            )
            .await?;
            let waited = answered.elapsed();
            let newest = &read["data"]["channel"]["messages"]["edges"][0]["node"]["id"];
            anyhow::Ok((waited, *newest == sent))
        };
        match round.await {
            Ok((waited, fresh)) => {
                samples.push(micros(waited));
                if !fresh {
                    outcome.stale += 1;
                }
            }
            Err(error) => {
                if outcome.failed == 0 {
                    eprintln!("    a read-your-own-write round failed: {error}");
                }
                outcome.failed += 1;
            }
        }
    }
    outcome.wait = Summary::of_micros(&mut samples);
    outcome
}

// --- the report ---------------------------------------------------------------------------------

fn mode_json(mode: &Mode) -> Value {
    json!({
        "latency_phases": mode.phases.iter().enumerate().map(|(n, (rate, phase))| {
            let mut value = phase_json(phase);
            value["rate_per_s"] = json!(rate);
            if let Some(to_kafka) = mode.to_kafka.get(n) {
                value["command_to_broker_ack"] = to_kafka.to_json();
            }
            if let Some(cpu) = mode.cpu.get(n) {
                value["cpu"] = cpu.to_json();
            }
            value
        }).collect::<Vec<_>>(),
        "history": {
            "channel_messages": mode.history_channel_messages,
            "page_of_50": mode.history.to_json(),
            "page_of_50_with_authors": mode.history_with_authors.to_json(),
        },
        "read_your_own_write": {
            "wait": mode.ryow.wait.to_json(),
            "stale": mode.ryow.stale,
            "failed": mode.ryow.failed,
        },
        "notes": mode.notes,
    })
}

impl Report for Results {
    const NAME: &'static str = "read-path";

    fn to_json(&self) -> Value {
        let m = &self.machine;
        json!({
            "benchmark": "read-path",
            "date": self.started,
            "build_profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "git_revision": m.git_revision,
            "load_average": { "before": self.load_before, "after": self.load_after },
            "machine": {
                "nproc": m.nproc,
                "cpu_model": m.cpu_model,
                "memory": m.memory,
                "kernel": m.kernel,
                "shared": "PostgreSQL, the broker, the MongoDB-compatible server, both instances, \
                           the projectors and the load generator (subscribers and sender) all \
                           run on these cores",
            },
            "postgres_version": m.postgres_version,
            "broker": m.broker,
            "settings": self.settings,
            "embedded": self.embedded.as_ref().map(mode_json),
            "distributed": self
                .distributed
                .iter()
                .map(|(timeline, mode)| (timeline.as_str().to_owned(), mode_json(mode)))
                .collect::<serde_json::Map<_, _>>(),
            "targets": {
                "distributed_p99_ms_at_500_per_s": 100,
                "history_p99_ms_postgresql": 10,
            },
            "notes": self.notes,
        })
    }

    fn to_markdown(&self) -> String {
        let m = &self.machine;
        let mut modes: Vec<(String, &Mode)> = Vec::new();
        if let Some(embedded) = &self.embedded {
            modes.push(("embedded (SQLite, one process)".to_owned(), embedded));
        }
        for (timeline, mode) in &self.distributed {
            modes.push((
                format!(
                    "distributed (PostgreSQL + broker + projectors, timeline in {}, two instances)",
                    timeline_label(*timeline)
                ),
                mode,
            ));
        }
        let s = &self.settings;
        let mut out = String::new();
        out.push_str("# Read-path benchmark\n\n");
        out.push_str(&format!(
            "{} · {} cores ({}) · {} · {} build · git {} · load average before `{}`, after `{}` \
             · PostgreSQL {} · broker {}\n\n",
            self.started,
            m.nproc,
            m.cpu_model,
            m.memory,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            m.git_revision,
            self.load_before,
            self.load_after,
            m.postgres_version.split(" on ").next().unwrap_or_default(),
            m.broker,
        ));
        out.push_str(&format!(
            "Settings: {} subscribers over {} channels ({} members), {} s of sending per rate \
             (then up to 60 s for the rest, {} s without a delivery ends the wait), \
             {} partitions, projectors batch {} / linger {} ms, producers linger {} ms; history: {} sequential queries \
             per shape after {} warm-up; read-your-own-write: {} round trips. Everything in one \
             process except the servers; all on the same cores.\n\n",
            s["subscribers"],
            s["channels"],
            s["members"],
            s["seconds"],
            s["settle_quiet_s"],
            s["partitions"],
            s["projector_batch"],
            s["projector_linger_ms"],
            s["kafka_linger_ms"],
            s["queries"],
            WARMUP_QUERIES,
            s["ryow"],
        ));
        out.push_str("## Mutation → subscriber latency\n\n");
        out.push_str(
            "`sendMessage` sent (open loop, at most 64 in flight) → `channelEvents` frame \
             received by a WebSocket subscriber; embedded: one instance; distributed: sent to \
             the API instance (relay in-process), received from the edge instance. Each phase \
             tags its messages; a late one of an earlier phase is not counted. CPU: from the
             first subscription to the end of the wait; *broker* counts every `tansu` process \
             on the machine, *other* everything else (the MongoDB-compatible server, other \
             work).\n\n",
        );
        out.push_str("| mode | offered /s | achieved /s | deliveries received / expected | p50 ms | p95 ms | p99 ms | max ms | of which command → broker ack p50 / p99 ms | CPU cores: this process / PostgreSQL / broker / other (busy of cores) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (name, mode) in &modes {
            for (n, (rate, p)) in mode.phases.iter().enumerate() {
                let to_kafka = mode.to_kafka.get(n).map_or_else(
                    || "–".to_owned(),
                    |k| format!("{:.1} / {:.1}", k.p50_ms, k.p99_ms),
                );
                let cpu = mode.cpu.get(n).map_or_else(|| "–".to_owned(), cpu_cell);
                out.push_str(&format!(
                    "| {name} | {rate} | {:.0} | {} / {} | {:.1} | {:.1} | {:.1} | {:.1} | {to_kafka} | {cpu} |\n",
                    p.achieved_rate(),
                    p.delivered,
                    p.expected,
                    p.latency.p50_ms,
                    p.latency.p95_ms,
                    p.latency.p99_ms,
                    p.latency.max_ms
                ));
            }
        }
        out.push_str("\n## Channel history query\n\n");
        out.push_str(
            "`channel(id) { messages(last: 50) { ... } }` over HTTP to the subscribers' \
             instance, one at a time; the whole round trip (HTTP, GraphQL, the read models, \
             JSON).\n\n",
        );
        out.push_str("| mode | query | channel holds | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|---:|---:|\n");
        for (name, mode) in &modes {
            for (shape, h) in [
                ("page of 50", &mode.history),
                ("page of 50 + authors", &mode.history_with_authors),
            ] {
                out.push_str(&format!(
                    "| {name} | {shape} | ≥ {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                    mode.history_channel_messages, h.p50_ms, h.p95_ms, h.p99_ms, h.max_ms
                ));
            }
        }
        if modes.iter().any(|(_, mode)| mode.ryow.wait.count > 0) {
            out.push_str("\n## Read-your-own-write\n\n");
            out.push_str(
                "From `sendMessage`'s answer (API instance) to the answer of the channel's \
                 newest message queried with its consistency token (edge instance; embedded: \
                 the same instance); stale = the answer did not hold the message.\n\n",
            );
            out.push_str("| mode | rounds | p50 ms | p95 ms | p99 ms | max ms | stale | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
            for (name, mode) in &modes {
                let r = &mode.ryow;
                out.push_str(&format!(
                    "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                    r.wait.count,
                    r.wait.p50_ms,
                    r.wait.p95_ms,
                    r.wait.p99_ms,
                    r.wait.max_ms,
                    r.stale,
                    r.failed
                ));
            }
        }
        out.push_str(
            "\nTargets (2 cores): distributed p99 ≤ 100 ms at 500 msg/s; history query p99 ≤ \
             10 ms from PostgreSQL.\n",
        );
        for (name, mode) in &modes {
            for note in &mode.notes {
                out.push_str(&format!("\n**Note ({name}):** {note}\n"));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("\n**Note:** {note}\n"));
        }
        out
    }
}
