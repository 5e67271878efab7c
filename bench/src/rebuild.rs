//! The rebuild benchmark: how fast a projection version builds from offset 0 of the event
//! topics into each store, beside the raw consume rate of the same topics in the same run.
//!
//! 1. Fills the event topics of a fresh prefix with a realistic chat history (`chat_log`),
//!    produced with the relay's idempotent producer, many in flight. That is setup: timed and
//!    reported apart.
//! 2. Raw consume: a `KafkaSource` from offset 0, polling until it has read every event, no
//!    store. Run first and again last, so a broker that warms up (or slows down) shows.
//! 3. Rebuilds: a `StreamProjector` with `stop_when_caught_up`, exactly as
//!    `aether projections rebuild` drives one, into a fresh database per run: the audit
//!    projection (every event is a row) and the catalog projection (ignores messages, still moves
//!    the checkpoint and the sequence guard), at each batch size; then any other store given
//!    (MongoDB's timeline with `--mongo`). Any `ReadStore` is one more row: [`rebuild_into`].
//!
//! Bounded: at most a million events, a time limit per phase, loopback servers only. The
//! databases are dropped; the topics stay on the broker, as the tests leave theirs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_kafka::admin::init_topics;
use aether_kafka::KafkaConfig;
use aether_projections::stream::engine::{NoUpdates, ProjectorOptions, StreamProjector};
use aether_projections::stream::mongo::{MongoStore, MongoTimelineProjection};
use aether_projections::stream::postgres::{AuditProjection, CatalogProjection, PgStore};
use aether_projections::stream::source::{lag_of, Checkpoint, KafkaSource, StreamEvent};
use aether_projections::stream::store::{Applied, DeadLetter, Retried};
use aether_projections::stream::{ProjectorMetrics, ReadStore, StoreError};
use aether_projections::updates::Update;
use aether_schemas::topics::EVENT_TOPICS;
use anyhow::{anyhow, ensure, Context};
use async_trait::async_trait;
use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::chat_log::{ChatLog, Shape};
use crate::rebuild_report::{ConsumeResult, FillResult, RebuildResults, RebuildRow, Settings};
use crate::report::{publish, Machine};
use crate::servers::{ensure_local, ensure_local_mongo, redact_password, BenchDatabase};
use crate::stats::CpuSample;

const MAX_EVENTS: usize = 1_000_000;
const MAX_BATCH: usize = 50_000;
const MAX_BATCH_SIZES: usize = 4;
const MAX_PHASE_S: u64 = 1_800;
/// How long a poll waits for the first event of a batch (the projector's wait).
const POLL_WAIT: Duration = Duration::from_millis(250);
/// The projector's default linger (`ProjectorOptions::default`), used by raw consume too.
const LINGER: Duration = Duration::from_millis(20);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events to put on the topics (and to rebuild from).
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Batch sizes (events per store transaction) to rebuild with, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 5_000])]
    batches: Vec<usize>,
    /// Users registered before any server exists.
    #[arg(long, default_value_t = 200)]
    users: usize,
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Channels per server.
    #[arg(long, default_value_t = 5)]
    channels: usize,
    /// Members per server besides its owner (they join through the server's invite).
    #[arg(long, default_value_t = 40)]
    members: usize,
    /// Seed of the history's shape (ids are fresh UUIDs every run).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// PostgreSQL server (an admin URL: the benchmark creates and drops its own databases).
    #[arg(
        long,
        env = "AETHER_TEST_POSTGRES",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Kafka-compatible broker, `host:port`.
    #[arg(long, env = "AETHER_TEST_KAFKA", default_value = "127.0.0.1:9092")]
    kafka: String,
    /// MongoDB(-compatible) server: adds the timeline projection's rebuild, at each batch size.
    #[arg(long, env = "AETHER_TEST_MONGO")]
    mongo: Option<String>,
    /// Where `rebuild.json` and `rebuild.md` go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Partitions of each event topic (`aether serve`'s default).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Most produce requests unacknowledged while filling the topics.
    #[arg(long, default_value_t = 5_000)]
    in_flight: usize,
    /// Longest any one phase (fill, consume, one rebuild) may take, in seconds.
    #[arg(long, default_value_t = 600)]
    phase_timeout: u64,
    /// A remark for the results about the set-up (e.g. how the broker was prepared); repeatable.
    #[arg(long = "note", value_name = "TEXT")]
    notes: Vec<String>,
}

impl Args {
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1_000..=MAX_EVENTS).contains(&self.events),
            "--events: 1,000 to {MAX_EVENTS}"
        );
        ensure!(
            !self.batches.is_empty() && self.batches.len() <= MAX_BATCH_SIZES,
            "--batches: 1 to {MAX_BATCH_SIZES} sizes"
        );
        ensure!(
            self.batches.iter().all(|b| (1..=MAX_BATCH).contains(b)),
            "--batches: 1 to {MAX_BATCH} events each"
        );
        ensure!((1..=10_000).contains(&self.users), "--users: 1 to 10,000");
        ensure!((1..=1_000).contains(&self.servers), "--servers: 1 to 1,000");
        ensure!((1..=100).contains(&self.channels), "--channels: 1 to 100");
        ensure!(self.members <= 1_000, "--members: at most 1,000");
        ensure!((1..=64).contains(&self.partitions), "--partitions: 1 to 64");
        ensure!(
            (1..=100_000).contains(&self.in_flight),
            "--in-flight: 1 to 100,000"
        );
        ensure!(
            (10..=MAX_PHASE_S).contains(&self.phase_timeout),
            "--phase-timeout: 10 to {MAX_PHASE_S} seconds"
        );
        ensure!(
            self.notes.len() <= 8 && self.notes.iter().all(|n| n.len() <= 1_000),
            "--note: at most 8, of at most 1,000 characters"
        );
        ensure_local(&self.postgres, &self.kafka)?;
        if let Some(mongo) = &self.mongo {
            ensure_local_mongo(mongo)?;
        }
        Ok(())
    }

    fn shape(&self) -> Shape {
        Shape {
            events: self.events,
            users: self.users,
            servers: self.servers,
            channels: self.channels,
            members: self.members,
            seed: self.seed,
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    args.validate()?;
    // Refuse a shape that cannot be generated before touching any server.
    ChatLog::new(args.shape())?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; its figures are not results \
             (cargo run --release -p aether-bench -- rebuild)"
        );
    }
    let started_at = Utc::now();
    let wall = Instant::now();
    let kafka = KafkaConfig {
        bootstrap: args.kafka.clone(),
        topic_prefix: format!("bench{}.", Uuid::new_v4().simple()),
        partitions: args.partitions,
        // Filling keeps thousands of messages in flight on a slow broker: give them time
        // rather than let librdkafka time a batch out and re-initialise the idempotent
        // producer (which tansu 0.6 does not survive; see bench/README.md).
        delivery_timeout: Duration::from_secs(args.phase_timeout.min(300)),
        ..KafkaConfig::default()
    };
    eprintln!(
        "topics {}*, {} events, batch sizes {:?}",
        kafka.topic_prefix, args.events, args.batches
    );
    let load_before = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let outcome = tokio::select! {
        outcome = measure(&args, &kafka) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let mut results = outcome?;
    results.started_at = started_at;
    results.wall_s = wall.elapsed().as_secs_f64();
    results.load_before = load_before;
    results.load_after = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned();
    results.settings = Settings {
        events: args.events,
        batches: args.batches.clone(),
        users: args.users,
        servers: args.servers,
        channels: args.channels,
        members: args.members,
        seed: args.seed,
        partitions: args.partitions,
        in_flight: args.in_flight,
        postgres: redact_password(&args.postgres),
        kafka: args.kafka.clone(),
        mongo: args.mongo.as_deref().map(redact_password),
        topic_prefix: kafka.topic_prefix.clone(),
    };
    publish(&results, &args.out)?;
    Ok(())
}

async fn measure(args: &Args, kafka: &KafkaConfig) -> anyhow::Result<RebuildResults> {
    let phase = Duration::from_secs(args.phase_timeout);
    let mut notes = args.notes.clone();
    let machine = {
        let probe = BenchDatabase::create(&args.postgres).await?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&probe.url)
            .await?;
        let machine = Machine::probe(&pool, &args.kafka).await;
        pool.close().await;
        probe.drop_database().await?;
        machine
    };

    eprintln!("filling the topics: {} events", args.events);
    let fill = tokio::time::timeout(phase, fill(kafka, args.shape(), args.in_flight))
        .await
        .map_err(|_| anyhow!("filling the topics took over {} s", args.phase_timeout))??;
    eprintln!(
        "  {} acknowledged in {:.1} s ({:.0}/s)",
        fill.acked,
        fill.seconds,
        fill.per_s()
    );
    ensure!(
        fill.failed == 0,
        "{} events were not acknowledged: nothing to rebuild from",
        fill.failed
    );
    let log_end = {
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || lag_of(&kafka, &EVENT_TOPICS, &Checkpoint::default()))
            .await??
            .log_end
    };
    if log_end != i64::try_from(fill.acked)? {
        notes.push(format!(
            "The broker's log end ({log_end}) is not the number of acknowledged events ({}).",
            fill.acked
        ));
    }

    let largest = args.batches.iter().copied().max().unwrap_or(1_000);
    let mut consume = Vec::new();
    eprintln!("raw consume (first)");
    let (first, events) = raw_consume(kafka, log_end, largest, phase, true).await?;
    eprintln!("  {:.0} events/s", first.per_s());
    consume.push(first);

    let mut rows = Vec::new();
    let projections = [AuditProjection::NAME, CatalogProjection::NAME];
    // The stores alone first (short), then the real rebuilds from the broker.
    for source in [Source::Memory(&events), Source::Kafka] {
        for &batch in &args.batches {
            for projection in projections {
                let db = BenchDatabase::create(&args.postgres).await?;
                let outcome =
                    rebuild_postgres(&db, projection, source, kafka, batch, log_end, phase).await;
                let dropped = db.drop_database().await;
                match outcome {
                    Ok(row) => rows.push(row),
                    Err(error) => notes.push(format!(
                        "{projection} (PostgreSQL) at batch {batch}, {}: {error:#}",
                        source.describe()
                    )),
                }
                dropped.context("dropping a benchmark database")?;
            }
            if let Some(uri) = &args.mongo {
                match rebuild_mongo(uri, source, kafka, batch, log_end, phase).await {
                    Ok(row) => rows.push(row),
                    Err(error) => notes.push(format!(
                        "timeline (MongoDB) at batch {batch}, {}: {error:#}",
                        source.describe()
                    )),
                }
            }
        }
    }
    drop(events);

    eprintln!("raw consume (last)");
    let (last, _) = raw_consume(kafka, log_end, largest, phase, false).await?;
    eprintln!("  {:.0} events/s", last.per_s());
    consume.push(last);

    Ok(RebuildResults {
        machine,
        fill,
        log_end,
        consume,
        rows,
        notes,
        ..RebuildResults::default()
    })
}

/// Produces the chat history with the relay's producer (`KafkaConfig::producer`: idempotent,
/// `acks=all`), at most `in_flight` unacknowledged.
async fn fill(kafka: &KafkaConfig, shape: Shape, in_flight: usize) -> anyhow::Result<FillResult> {
    init_topics(kafka).await.context("creating the topics")?;
    let producer = kafka.producer()?;
    let mut log = ChatLog::new(shape)?;
    let mut pending = FuturesUnordered::new();
    let (mut acked, mut failed, mut first_error) = (0_u64, 0_u64, None::<String>);
    let mut settle =
        |outcome: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>| match outcome
        {
            Ok(Ok(_)) => acked += 1,
            Ok(Err((error, _))) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{error}"));
            }
            Err(canceled) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{canceled}"));
            }
        };
    let cpu = CpuSample::take();
    let started = Instant::now();
    for out in log.by_ref() {
        let out = out?;
        let topic = kafka.topic(out.topic);
        loop {
            while pending.len() >= in_flight {
                if let Some(outcome) = pending.next().await {
                    settle(outcome);
                }
            }
            let record = FutureRecord::to(&topic)
                .key(out.key.as_bytes())
                .headers(out.headers())
                .payload(&out.body);
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // librdkafka's own queue is full: let acknowledgements catch up.
                    match pending.next().await {
                        Some(outcome) => settle(outcome),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((error, _)) => return Err(anyhow!("producing: {error}")),
            }
        }
    }
    while let Some(outcome) = pending.next().await {
        settle(outcome);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(FillResult {
        acked,
        failed,
        first_error,
        seconds,
        in_flight,
        mix: log.mix.clone(),
        cpu: cpu.until(&CpuSample::take()),
    })
}

/// A `KafkaSource` from offset 0 polling (batches of `batch`, the projector's wait and
/// linger) until it has read `total` events; nothing is stored. With `keep`, the events read
/// are returned, in the order read, for the replays from memory.
async fn raw_consume(
    kafka: &KafkaConfig,
    total: i64,
    batch: usize,
    limit: Duration,
    keep: bool,
) -> anyhow::Result<(ConsumeResult, Vec<StreamEvent>)> {
    let kafka = kafka.clone();
    let cpu = CpuSample::take();
    let (read, malformed, seconds, polls, kept) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let source = KafkaSource::new(&kafka, &EVENT_TOPICS)?;
        source.seek(&Checkpoint::default())?;
        let (mut read, mut malformed, mut polls) = (0_i64, 0_u64, 0_u64);
        let mut kept = Vec::new();
        while read < total && started.elapsed() < limit {
            let events = source.poll_batch(batch, POLL_WAIT, LINGER)?;
            polls += 1;
            read += i64::try_from(events.len())?;
            malformed += events.iter().filter(|e| e.envelope().is_none()).count() as u64;
            if keep {
                kept.extend(events);
            }
        }
        anyhow::Ok((
            read,
            malformed,
            started.elapsed().as_secs_f64(),
            polls,
            kept,
        ))
    })
    .await??;
    let result = ConsumeResult {
        read,
        expected: total,
        malformed,
        polls,
        seconds,
        cpu: cpu.until(&CpuSample::take()),
    };
    Ok((result, kept))
}

/// The store alone: `events` (read from the broker once, before) applied in batches of
/// `batch` exactly as the projector applies them (`ReadStore::apply` from the checkpoint to
/// the checkpoint after the batch, one transaction each), with no broker in the loop. What a
/// rebuild into this store would reach if reading the log were free.
pub async fn replay_into(
    store: Arc<dyn ReadStore>,
    events: &[StreamEvent],
    batch: usize,
    limit: Duration,
) -> anyhow::Result<RebuildRow> {
    let name = store.describe();
    eprintln!("replay from memory: {name}, batch {batch}");
    store.prepare().await?;
    let cpu = CpuSample::take();
    let started = Instant::now();
    let mut checkpoint = store.checkpoint().await?;
    let (mut applied, mut parked, mut batches) = (0_u64, 0_u64, 0_u64);
    let mut error = None;
    for chunk in events.chunks(batch.max(1)) {
        if started.elapsed() >= limit {
            error = Some(format!("not done within {} s", limit.as_secs()));
            break;
        }
        let to = checkpoint.after(chunk);
        match store.apply(&checkpoint, chunk, &to).await {
            Ok(done) => {
                applied += done.applied as u64;
                parked += done.parked as u64;
                batches += 1;
                checkpoint = to;
            }
            Err(failure) => {
                error = Some(failure.to_string());
                break;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu.until(&CpuSample::take());
    let expected = i64::try_from(events.len())?;
    let row = RebuildRow {
        store: name,
        from_memory: true,
        batch,
        events: checkpoint.total(),
        expected,
        applied,
        parked,
        seconds,
        batches,
        store_seconds: seconds,
        caught_up: error.is_none() && checkpoint.total() >= expected,
        error,
        check: None,
        cpu,
    };
    eprintln!(
        "  {} events in {:.1} s: {:.0}/s",
        row.events,
        row.seconds,
        row.per_s()
    );
    Ok(row)
}

/// Where a rebuild reads its events.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    /// The broker, through a `StreamProjector`: a real rebuild.
    Kafka,
    /// Events read from the broker earlier, applied straight to the store.
    Memory(&'a [StreamEvent]),
}

impl Source<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Source::Kafka => "from the broker",
            Source::Memory(_) => "replayed from memory",
        }
    }

    async fn rebuild(
        &self,
        store: Arc<dyn ReadStore>,
        kafka: &KafkaConfig,
        batch: usize,
        expected: i64,
        limit: Duration,
    ) -> anyhow::Result<RebuildRow> {
        match self {
            Source::Kafka => rebuild_into(store, kafka, batch, expected, limit).await,
            Source::Memory(events) => replay_into(store, events, batch, limit).await,
        }
    }
}

async fn rebuild_postgres(
    db: &BenchDatabase,
    projection: &str,
    source: Source<'_>,
    kafka: &KafkaConfig,
    batch: usize,
    expected: i64,
    limit: Duration,
) -> anyhow::Result<RebuildRow> {
    // The pool `aether serve --role projector` would use is more than one projector needs:
    // a projector holds one connection at a time.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await?;
    let store: Arc<dyn ReadStore> = match projection {
        AuditProjection::NAME => Arc::new(PgStore::new(pool.clone(), Arc::new(AuditProjection), 1)),
        _ => Arc::new(PgStore::new(pool.clone(), Arc::new(CatalogProjection), 1)),
    };
    let mut row = source.rebuild(store, kafka, batch, expected, limit).await?;
    row.check = Some(check_postgres(&pool, projection).await?);
    pool.close().await;
    Ok(row)
}

/// What the rebuilt read model holds, to show it is the whole history.
async fn check_postgres(pool: &PgPool, projection: &str) -> anyhow::Result<String> {
    Ok(if projection == AuditProjection::NAME {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_v1.audit_events")
            .fetch_one(pool)
            .await?;
        format!("{rows} audit rows")
    } else {
        let (users, servers, channels, members): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM catalog_v1.users), \
             (SELECT count(*) FROM catalog_v1.servers), \
             (SELECT count(*) FROM catalog_v1.channels), \
             (SELECT count(*) FROM catalog_v1.members)",
        )
        .fetch_one(pool)
        .await?;
        format!("{users} users, {servers} servers, {channels} channels, {members} members")
    })
}

async fn rebuild_mongo(
    uri: &str,
    source: Source<'_>,
    kafka: &KafkaConfig,
    batch: usize,
    expected: i64,
    limit: Duration,
) -> anyhow::Result<RebuildRow> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    let database = client.database(&format!("aether_bench_{}", Uuid::new_v4().simple()));
    let store = Arc::new(MongoStore::new(
        database.clone(),
        Arc::new(MongoTimelineProjection),
        1,
    ));
    let outcome = source.rebuild(store, kafka, batch, expected, limit).await;
    let dropped = database.drop().await;
    let row = outcome?;
    dropped.context("dropping the benchmark database")?;
    Ok(row)
}

/// Rebuilds one projection version into `store` from offset 0, as `aether projections rebuild`
/// does: `prepare`, then a `StreamProjector` with `stop_when_caught_up` until the checkpoint
/// reaches the log end seen at its start (`expected` events), or `limit` passes.
///
/// Any `ReadStore` can be measured this way: it is the hook for stores added later.
pub async fn rebuild_into(
    store: Arc<dyn ReadStore>,
    kafka: &KafkaConfig,
    batch: usize,
    expected: i64,
    limit: Duration,
) -> anyhow::Result<RebuildRow> {
    let name = store.describe();
    eprintln!("rebuild: {name}, batch {batch}");
    store.prepare().await?;
    let timed = Arc::new(TimedStore::new(store));
    let metrics = Arc::new(ProjectorMetrics::new(&name, 1));
    let (_paused_tx, paused) = watch::channel(false);
    let shutdown = CancellationToken::new();
    let cpu = CpuSample::take();
    let started = Instant::now();
    let source = KafkaSource::new(kafka, &EVENT_TOPICS)?;
    let projector = StreamProjector::new(
        timed.clone(),
        source,
        Arc::new(NoUpdates),
        ProjectorOptions {
            batch_size: batch,
            stop_when_caught_up: true,
            ..ProjectorOptions::default()
        },
        metrics.clone(),
    );
    let outcome = tokio::select! {
        outcome = projector.run(paused, shutdown.clone()) => Some(outcome),
        _ = tokio::time::sleep(limit) => None,
    };
    shutdown.cancel();
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu.until(&CpuSample::take());
    let mut error = None;
    match outcome {
        Some(Ok(())) => {}
        Some(Err(failure)) => error = Some(failure.to_string()),
        None => error = Some(format!("not caught up within {} s", limit.as_secs())),
    }
    let events = timed.checkpoint().await?.total();
    let row = RebuildRow {
        store: name,
        from_memory: false,
        batch,
        events,
        expected,
        applied: metrics.applied_total(),
        parked: metrics.parked_total(),
        seconds,
        batches: timed.batches.load(Ordering::Relaxed),
        store_seconds: timed.apply_micros.load(Ordering::Relaxed) as f64 / 1e6,
        caught_up: error.is_none() && events >= expected,
        error,
        check: None,
        cpu,
    };
    eprintln!(
        "  {} events in {:.1} s: {:.0}/s ({:.0} % of the time in the store)",
        row.events,
        row.seconds,
        row.per_s(),
        100.0 * row.store_share()
    );
    Ok(row)
}

/// A store that times its `apply` calls: the rest of a rebuild's time is the source's.
struct TimedStore {
    inner: Arc<dyn ReadStore>,
    batches: AtomicU64,
    apply_micros: AtomicU64,
}

impl TimedStore {
    fn new(inner: Arc<dyn ReadStore>) -> Self {
        Self {
            inner,
            batches: AtomicU64::new(0),
            apply_micros: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl ReadStore for TimedStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.prepare().await
    }

    async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        self.inner.checkpoint().await
    }

    async fn last_progress(&self) -> Result<Option<chrono::DateTime<Utc>>, StoreError> {
        self.inner.last_progress().await
    }

    async fn apply(
        &self,
        from: &Checkpoint,
        batch: &[StreamEvent],
        to: &Checkpoint,
    ) -> Result<Applied, StoreError> {
        let started = Instant::now();
        let outcome = self.inner.apply(from, batch, to).await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.apply_micros.fetch_add(micros, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    async fn park(
        &self,
        from: &Checkpoint,
        event: &StreamEvent,
        error: &str,
        attempts: i32,
        to: &Checkpoint,
    ) -> Result<(), StoreError> {
        self.inner.park(from, event, error, attempts, to).await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.dead_letters().await
    }

    async fn retry_dead_letters(&self) -> Result<(Retried, Vec<Update>), StoreError> {
        self.inner.retry_dead_letters().await
    }

    async fn dump(&self) -> Result<serde_json::Value, StoreError> {
        self.inner.dump().await
    }

    async fn drop_version(&self) -> Result<(), StoreError> {
        self.inner.drop_version().await
    }
}
