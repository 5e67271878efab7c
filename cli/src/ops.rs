//! Operator subcommands: schema migrations, the topic catalogue, the audit walk, log replay.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use aether_commands::audit::verify_chain;
use aether_commands::postgres::PgEventStore;
use aether_commands::SqliteEventStore;
use aether_kafka::admin::{init_topics, TopicOutcome};
use aether_kafka::read::{header, offsets_for_time, read_from};
use aether_kafka::KafkaConfig;
use aether_projections::stream::role::TimelineStore;
use anyhow::Context;
use rdkafka::Message;

/// Where PostgreSQL is.
#[derive(Debug, Clone, clap::Args)]
pub struct PostgresArgs {
    /// PostgreSQL URL of the event store, e.g. postgres://aether:secret@127.0.0.1/aether
    #[arg(long = "postgres", env = "AETHER_POSTGRES_URL")]
    pub url: String,

    /// Most connections this process opens.
    #[arg(long, default_value_t = 16, env = "AETHER_POSTGRES_MAX_CONNECTIONS")]
    pub postgres_max_connections: u32,

    /// Seconds to wait for a connection before a command fails.
    #[arg(long, default_value_t = 5, env = "AETHER_POSTGRES_CONNECT_TIMEOUT")]
    pub postgres_connect_timeout: u64,
}

impl PostgresArgs {
    pub async fn connect(&self) -> anyhow::Result<PgEventStore> {
        PgEventStore::connect(
            &self.url,
            self.postgres_max_connections,
            Duration::from_secs(self.postgres_connect_timeout),
        )
        .await
        .context("cannot reach PostgreSQL")
    }
}

/// How the processes that take commands write them; only `aether serve` takes these flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WriterArgs {
    /// Commands written in one PostgreSQL transaction at most (group commit); 0 writes each
    /// command in its own transaction.
    #[arg(long, default_value_t = aether_commands::postgres::DEFAULT_GROUP_COMMIT_MAX, env = "AETHER_POSTGRES_GROUP_COMMIT")]
    pub postgres_group_commit: usize,
}

/// Where MongoDB is, for the document read models (timeline).
#[derive(Debug, Clone, clap::Args)]
pub struct MongoArgs {
    /// MongoDB URL of the document read models, e.g. mongodb://mongo:27017/?replicaSet=rs0
    /// (transactions need a replica set).
    #[arg(long = "mongo", env = "AETHER_MONGO_URL")]
    pub mongo_url: Option<String>,

    /// The database within it.
    #[arg(long, default_value = "aether", env = "AETHER_MONGO_DATABASE")]
    pub mongo_database: String,

    /// Where the timeline read model (messages, each channel's numbered changes) is kept:
    /// `mongodb` (needs --mongo) or `postgres` (schema timeline_vN, beside the other read
    /// models). Every role of a deployment must be given the same.
    #[arg(long, default_value_t = TimelineStore::MongoDb, env = "AETHER_TIMELINE_STORE")]
    pub timeline_store: TimelineStore,
}

/// How long a MongoDB operation waits for a server to answer before it fails, unless the URL
/// says otherwise (`serverSelectionTimeoutMS`).
const MONGO_SELECTION_TIMEOUT_S: u64 = 3;

impl MongoArgs {
    /// The MongoDB database that keeps the timeline, or `None` where PostgreSQL keeps it;
    /// refused when the timeline is to be in MongoDB and no URL was given.
    pub async fn timeline(&self) -> anyhow::Result<Option<mongodb::Database>> {
        match self.timeline_store {
            TimelineStore::Postgres => Ok(None),
            TimelineStore::MongoDb => match self.connect().await? {
                Some(database) => Ok(Some(database)),
                None => anyhow::bail!(
                    "--mongo URL (AETHER_MONGO_URL) is required: queries read the timeline from \
                     MongoDB (or keep it in PostgreSQL with --timeline-store postgres on every \
                     role)"
                ),
            },
        }
    }

    pub async fn connect(&self) -> anyhow::Result<Option<mongodb::Database>> {
        let Some(url) = &self.mongo_url else {
            return Ok(None);
        };
        let mut options = mongodb::options::ClientOptions::parse(url)
            .await
            .context("cannot read the MongoDB URL")?;
        // A read model that cannot be reached fails a query in seconds, not the driver's 30 s.
        options.server_selection_timeout =
            options
                .server_selection_timeout
                .or(Some(std::time::Duration::from_secs(
                    MONGO_SELECTION_TIMEOUT_S,
                )));
        options.connect_timeout = options
            .connect_timeout
            .or(Some(std::time::Duration::from_secs(
                MONGO_SELECTION_TIMEOUT_S,
            )));
        let client = mongodb::Client::with_options(options).context("cannot reach MongoDB")?;
        Ok(Some(client.database(&self.mongo_database)))
    }
}

/// Where Kafka is and how topics are laid out.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port…]
    #[arg(
        long = "kafka",
        default_value = "127.0.0.1:9092",
        env = "AETHER_KAFKA_BOOTSTRAP"
    )]
    pub bootstrap: String,

    /// Prefix of every topic name (to run several installations on one cluster).
    #[arg(long, default_value = "", env = "AETHER_TOPIC_PREFIX")]
    pub topic_prefix: String,
}

impl KafkaArgs {
    pub fn config(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap: self.bootstrap.clone(),
            topic_prefix: self.topic_prefix.clone(),
            ..KafkaConfig::default()
        }
    }
}

/// How the processes that publish (the relay, the projectors' updates) produce to Kafka; only
/// the commands that run them take these flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ProducerArgs {
    /// Produce requests in flight per broker connection (1 to 5, the idempotent producer's
    /// window); more can pay off against a cluster that answers faster than the relay sends.
    #[arg(
        long,
        default_value_t = aether_kafka::DEFAULT_MAX_IN_FLIGHT,
        env = "AETHER_KAFKA_MAX_IN_FLIGHT",
        value_parser = clap::value_parser!(u32).range(1..=aether_kafka::MAX_IN_FLIGHT_LIMIT as i64)
    )]
    pub kafka_max_in_flight: u32,

    /// Milliseconds the producer waits to fill a batch (librdkafka's linger.ms), 0 to 1000.
    #[arg(
        long,
        default_value_t = aether_kafka::DEFAULT_LINGER.as_millis() as u64,
        env = "AETHER_KAFKA_LINGER_MS",
        value_parser = clap::value_parser!(u64).range(0..=1000)
    )]
    pub kafka_linger_ms: u64,
}

impl ProducerArgs {
    /// `config` with these producer settings.
    pub fn configure(&self, config: KafkaConfig) -> KafkaConfig {
        KafkaConfig {
            max_in_flight: self.kafka_max_in_flight,
            linger: std::time::Duration::from_millis(self.kafka_linger_ms),
            ..config
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    postgres: PostgresArgs,
}

/// Creates or upgrades the PostgreSQL event store.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let store = args.postgres.connect().await?;
    store.migrate().await?;
    println!("event store is up to date");
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum KafkaCommand {
    /// Create the topic catalogue (idempotent): event topics keep messages forever.
    Init(KafkaInitArgs),
}

#[derive(Debug, clap::Args)]
pub struct KafkaInitArgs {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Partitions of each topic.
    #[arg(long, default_value_t = 6, env = "AETHER_KAFKA_PARTITIONS")]
    partitions: i32,

    /// Replicas of each partition.
    #[arg(long, default_value_t = 1, env = "AETHER_KAFKA_REPLICATION")]
    replication: i32,

    /// Hours the ephemeral updates topic keeps messages.
    #[arg(long, default_value_t = 24)]
    updates_retention_hours: u64,

    /// Seconds the typing-and-presence topic keeps signals.
    #[arg(long, default_value_t = 60)]
    ephemeral_retention_seconds: u64,
}

pub async fn kafka(command: KafkaCommand) -> anyhow::Result<()> {
    match command {
        KafkaCommand::Init(args) => {
            anyhow::ensure!(args.partitions >= 1, "--partitions must be at least 1");
            anyhow::ensure!(args.replication >= 1, "--replication must be at least 1");
            let config = KafkaConfig {
                partitions: args.partitions,
                replication: args.replication,
                updates_retention: Duration::from_secs(args.updates_retention_hours * 3600),
                ephemeral_retention: Duration::from_secs(args.ephemeral_retention_seconds.max(1)),
                ..args.kafka.config()
            };
            for (topic, outcome) in init_topics(&config).await? {
                let outcome = match outcome {
                    TopicOutcome::Created => "created",
                    TopicOutcome::AlreadyExisted => "exists",
                };
                println!("{outcome:>8}  {topic}");
            }
            Ok(())
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute every aggregate's hash chain and report any event changed, removed or
    /// reordered after it was written. Exits 1 when history was rewritten.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct AuditVerifyArgs {
    /// The PostgreSQL event store to check.
    #[arg(
        long = "postgres",
        env = "AETHER_POSTGRES_URL",
        conflicts_with = "data_dir"
    )]
    postgres: Option<String>,

    /// The embedded event store to check (the data directory of `aether dev`).
    #[arg(long, env = "AETHER_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

pub async fn audit(command: AuditCommand) -> anyhow::Result<bool> {
    let AuditCommand::Verify(args) = command;
    let progress = |checked: u64| eprint!("\rchecked {checked} events");
    let report = match (args.postgres, args.data_dir) {
        (Some(url), None) => {
            let store = PgEventStore::connect(&url, 2, Duration::from_secs(5)).await?;
            verify_chain(&store, progress).await?
        }
        (None, Some(dir)) => {
            let path = dir.join("events.db");
            anyhow::ensure!(path.exists(), "no event store at {}", path.display());
            let store = SqliteEventStore::open(&path).await?;
            verify_chain(&store, progress).await?
        }
        _ => anyhow::bail!("pass --postgres URL or --data-dir DIR"),
    };
    eprintln!();
    println!(
        "{} events in {} aggregates checked",
        report.events_checked, report.aggregates_checked
    );
    for chain_break in &report.breaks {
        println!("BROKEN  {chain_break}");
    }
    if report.is_intact() {
        println!("history is intact");
    }
    Ok(report.is_intact())
}

#[derive(Debug, clap::Subcommand)]
pub enum LogCommand {
    /// Print a topic's events, oldest first, as JSON lines (one envelope per line).
    Replay(LogReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct LogReplayArgs {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// The topic, e.g. aether.messages.events.v1 (the prefix is added).
    #[arg(long)]
    topic: String,

    /// Start at each partition's first offset: the default, kept for scripts that pass it.
    #[arg(long, conflicts_with_all = ["from_offset", "from_time"])]
    from_beginning: bool,

    /// Start at this offset in every partition (one before the partition's first offset, or
    /// past its end, reads from the first, or nothing).
    #[arg(long, conflicts_with = "from_time", value_parser = clap::value_parser!(i64).range(0..))]
    from_offset: Option<i64>,

    /// Start at the first event each partition received at or after this time (RFC 3339, such
    /// as 2026-12-01T00:00:00Z).
    #[arg(long)]
    from_time: Option<chrono::DateTime<chrono::Utc>>,

    /// After the events already in the log, keep printing new ones as they arrive, until
    /// Ctrl+C or SIGTERM.
    #[arg(long)]
    follow: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ReplayFormat::Jsonl)]
    format: ReplayFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReplayFormat {
    /// One event envelope per line, with its Kafka coordinates under `_kafka`.
    Jsonl,
}

pub async fn log(command: LogCommand) -> anyhow::Result<()> {
    let LogCommand::Replay(args) = command;
    let config = args.kafka.config();
    let topic = config.topic(&args.topic);
    let starts = match args.from_time {
        Some(time) => {
            let (config, topic) = (config.clone(), topic.clone());
            let millis = time.timestamp_millis();
            Some(
                tokio::task::spawn_blocking(move || offsets_for_time(&config, &topic, millis))
                    .await??,
            )
        }
        None => None,
    };
    let from_offset = args.from_offset;
    let start = move |partition: i32, low: i64, _high: i64| match (&starts, from_offset) {
        (Some(starts), _) => starts.get(&partition).copied().unwrap_or(i64::MAX),
        (None, Some(offset)) => offset,
        (None, None) => low,
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if args.follow {
        let stop = stop.clone();
        let interrupted = tokio_util::sync::CancellationToken::new();
        crate::cancel_on_signal(interrupted.clone());
        tokio::spawn(async move {
            interrupted.cancelled().await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    let follow = args.follow;
    let count = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut failure = None;
        let count = read_from(
            &config,
            &topic,
            start,
            follow.then_some(&*stop),
            |message| {
                if failure.is_some() {
                    return;
                }
                let mut line: serde_json::Value = message
                    .payload()
                    .and_then(|payload| serde_json::from_slice(payload).ok())
                    .unwrap_or(serde_json::Value::Null);
                if let serde_json::Value::Object(fields) = &mut line {
                    fields.insert(
                        "_kafka".to_owned(),
                        serde_json::json!({
                            "partition": message.partition(),
                            "offset": message.offset(),
                            "key": message.key().map(String::from_utf8_lossy),
                            "ce_id": header(message, "ce_id"),
                        }),
                    );
                }
                if let Err(error) = writeln!(out, "{line}") {
                    failure = Some(error);
                }
                // Following, each event is shown as it comes.
                if follow {
                    if let Err(error) = out.flush() {
                        failure = Some(error);
                    }
                }
            },
        )?;
        if let Some(error) = failure {
            return Err(error.into());
        }
        out.flush()?;
        Ok(count)
    })
    .await??;
    eprintln!("{count} events replayed");
    Ok(())
}
