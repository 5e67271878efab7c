//! `aether projections …`: the operator's view of the distributed projectors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_kafka::KafkaConfig;
use aether_projections::stream::engine::{NoUpdates, ProjectorOptions, StreamProjector};
use aether_projections::stream::event_store::build_from_event_store;
use aether_projections::stream::reactor::{is_reactor, REACTORS};
use aether_projections::stream::registry::{Registry, VersionState};
use aether_projections::stream::role::{open_store, RoleError, Stores, STREAM_PROJECTIONS};
use aether_projections::stream::source::{lag_of, Checkpoint, KafkaSource, Lag};
use aether_projections::stream::{ProjectorMetrics, ReadStore};
use aether_schemas::topics::EVENT_TOPICS;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ops::{KafkaArgs, MongoArgs, PostgresArgs};

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The embedded mode's data directory (`aether dev --data-dir`): look at its SQLite read
    /// models instead of the distributed mode's stores. `list`, `dead-letters`, `retry` and
    /// `dump` work on it, while `aether dev` runs or not. (A flag only: the AETHER_DATA_DIR
    /// of a shell set up for `aether dev` does not redirect these commands.)
    #[arg(long, conflicts_with = "postgres_url")]
    pub data_dir: Option<std::path::PathBuf>,

    /// PostgreSQL URL of the read models and the projection registry (the distributed mode).
    #[arg(long = "postgres", env = "AETHER_POSTGRES_URL")]
    pub postgres_url: Option<String>,

    #[command(flatten)]
    pub mongo: MongoArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

impl StoreArgs {
    pub async fn stores(&self) -> anyhow::Result<Stores> {
        let Some(url) = self.postgres_url.clone() else {
            return Err(Refused(
                "give --postgres URL (AETHER_POSTGRES_URL) for the distributed mode's read \
                 models, or --data-dir DIR for the embedded mode's"
                    .to_owned(),
            )
            .into());
        };
        let postgres = PostgresArgs {
            url,
            postgres_max_connections: 4,
            postgres_connect_timeout: 5,
        };
        // Reads and registry writes only: no command is written here.
        let store = postgres.connect().await?.with_group_commit(0);
        Ok(Stores {
            postgres: store.pool().clone(),
            mongo: self.mongo.connect().await?,
            timeline: self.mongo.timeline_store,
        })
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ProjectionsCommand {
    /// Every projection: live version, state, checkpoint, lag, dead letters.
    List {
        #[command(flatten)]
        stores: StoreArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop applying events (every projector process of NAME, within a second).
    Pause {
        name: String,
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// Apply events again.
    Resume {
        name: String,
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// Empty the live version and its checkpoint, so it rebuilds in place from offset 0 when
    /// resumed. NAME must be paused. Prefer `rebuild`, which keeps serving meanwhile.
    Reset {
        name: String,
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// Build the next version from offset 0 beside the live one, then switch to it atomically.
    /// The old version is kept until `drop`.
    Rebuild {
        name: String,
        #[command(flatten)]
        stores: StoreArgs,
        /// Events per transaction.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Build, but do not switch (inspect it first; switch with `switch`).
        #[arg(long)]
        no_switch: bool,
        /// Where to read history from: `kafka` (offset 0 of every partition), or `store` (the
        /// PostgreSQL event store at --postgres, in one consistent snapshot, then Kafka for
        /// what came after).
        #[arg(long, value_enum, default_value_t = RebuildFrom::Kafka)]
        from: RebuildFrom,
    },
    /// Make VERSION of NAME live (a built or a retired one: rolls back too).
    Switch {
        name: String,
        #[arg(id = "projection_version", value_name = "VERSION")]
        version: i32,
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// Drop a version that is not live: its tables and checkpoint.
    Drop {
        name: String,
        #[arg(id = "projection_version", value_name = "VERSION")]
        version: i32,
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// The events NAME's live version set aside.
    DeadLetters {
        name: String,
        #[command(flatten)]
        stores: StoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Re-apply NAME's dead letters (after fixing their cause); those that apply are removed.
    Retry {
        name: String,
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// Print a version's whole read model as JSON (the live version by default).
    Dump {
        name: String,
        #[arg(id = "projection_version", value_name = "VERSION")]
        version: Option<i32>,
        #[command(flatten)]
        stores: StoreArgs,
    },
}

impl ProjectionsCommand {
    fn stores(&self) -> &StoreArgs {
        match self {
            ProjectionsCommand::List { stores, .. }
            | ProjectionsCommand::Pause { stores, .. }
            | ProjectionsCommand::Resume { stores, .. }
            | ProjectionsCommand::Reset { stores, .. }
            | ProjectionsCommand::Rebuild { stores, .. }
            | ProjectionsCommand::Switch { stores, .. }
            | ProjectionsCommand::Drop { stores, .. }
            | ProjectionsCommand::DeadLetters { stores, .. }
            | ProjectionsCommand::Retry { stores, .. }
            | ProjectionsCommand::Dump { stores, .. } => stores,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RebuildFrom {
    Kafka,
    Store,
}

/// A command was refused (exit 2), as opposed to failing (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl ProjectionsCommand {
    /// Refuses what a reactor cannot do: it keeps no read model to rebuild, reset, switch,
    /// drop or dump.
    fn check_reactor(&self) -> Result<(), Refused> {
        let (name, what) = match self {
            ProjectionsCommand::Reset { name, .. } => (name, "reset"),
            ProjectionsCommand::Rebuild { name, .. } => (name, "rebuild"),
            ProjectionsCommand::Switch { name, .. } => (name, "switch"),
            ProjectionsCommand::Drop { name, .. } => (name, "drop"),
            ProjectionsCommand::Dump { name, .. } => (name, "dump"),
            ProjectionsCommand::List { .. }
            | ProjectionsCommand::Pause { .. }
            | ProjectionsCommand::Resume { .. }
            | ProjectionsCommand::DeadLetters { .. }
            | ProjectionsCommand::Retry { .. } => return Ok(()),
        };
        if !is_reactor(name) {
            return Ok(());
        }
        Err(Refused(format!(
            "{name} is a reactor: its decisions are events in the log and it keeps no read model \
             to {what}; `list`, `pause`, `resume` and `dead-letters` work on it, and `retry` \
             clears its dead letters"
        )))
    }
}

pub async fn run(command: ProjectionsCommand) -> anyhow::Result<()> {
    command.check_reactor()?;
    if let Some(dir) = command.stores().data_dir.clone() {
        return crate::projections_embedded::run(command, &dir).await;
    }
    match command {
        ProjectionsCommand::List { stores, json } => list(&stores, json).await,
        ProjectionsCommand::Pause { name, stores } => {
            let (_, registry) = open(&stores, &name).await?;
            registry.set_paused(&name, true).await?;
            println!("{name}: paused");
            Ok(())
        }
        ProjectionsCommand::Resume { name, stores } => {
            let (_, registry) = open(&stores, &name).await?;
            registry.set_paused(&name, false).await?;
            println!("{name}: resumed");
            Ok(())
        }
        ProjectionsCommand::Reset { name, stores } => {
            let (opened, registry) = open(&stores, &name).await?;
            let entry = registry.entry(&name).await?;
            if !entry.paused {
                return Err(Refused(format!(
                    "{name} is running: `aether projections pause {name}` first (or use \
                     `rebuild`, which keeps serving)"
                ))
                .into());
            }
            let store = open_store(&opened, &name, entry.live_version)?;
            store.drop_version().await?;
            store.prepare().await?;
            println!(
                "{name} v{}: emptied; it rebuilds from offset 0 on `aether projections resume {name}`",
                entry.live_version
            );
            Ok(())
        }
        ProjectionsCommand::Rebuild {
            name,
            stores,
            batch,
            no_switch,
            from,
        } => rebuild(&stores, &name, batch, no_switch, from).await,
        ProjectionsCommand::Switch {
            name,
            version,
            stores,
        } => {
            let (_, registry) = open(&stores, &name).await?;
            let previous = registry
                .switch(&name, version)
                .await
                .map_err(|e| Refused(e.to_string()))?;
            println!("{name}: v{version} is live (was v{previous})");
            Ok(())
        }
        ProjectionsCommand::Drop {
            name,
            version,
            stores,
        } => {
            let (opened, registry) = open(&stores, &name).await?;
            registry
                .mark_dropped(&name, version)
                .await
                .map_err(|e| Refused(e.to_string()))?;
            open_store(&opened, &name, version)?.drop_version().await?;
            println!("{name} v{version}: dropped");
            Ok(())
        }
        ProjectionsCommand::DeadLetters { name, stores, json } => {
            let store = live_store(&stores, &name).await?;
            print_dead_letters(&name, &store.dead_letters().await?, json)
        }
        ProjectionsCommand::Retry { name, stores } => {
            retry(&name, live_store(&stores, &name).await?.as_ref()).await
        }
        ProjectionsCommand::Dump {
            name,
            version,
            stores,
        } => {
            let (opened, registry) = open(&stores, &name).await?;
            let version = match version {
                Some(version) => version,
                None => registry.entry(&name).await?.live_version,
            };
            let dump = open_store(&opened, &name, version)?.dump().await?;
            println!("{}", serde_json::to_string_pretty(&dump)?);
            Ok(())
        }
    }
}

/// Prints a version's dead letters: one line each, or JSON.
pub(crate) fn print_dead_letters(
    name: &str,
    letters: &[aether_projections::stream::DeadLetter],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(letters)?);
    } else if letters.is_empty() {
        println!("{name}: no dead letters");
    } else {
        for letter in letters {
            println!(
                "{}  {}  {}#{}  attempts={}  {}",
                letter.location,
                letter.event_type.as_deref().unwrap_or("(unreadable)"),
                letter.aggregate_id.as_deref().unwrap_or("-"),
                letter.sequence.unwrap_or(0),
                letter.attempts,
                letter.error
            );
        }
    }
    Ok(())
}

/// Re-applies a version's dead letters; refused (exit 2) while some still fail. A reactor's
/// store keeps only its bookkeeping: its dead letters are cleared, not decided again.
pub(crate) async fn retry(name: &str, store: &dyn ReadStore) -> anyhow::Result<()> {
    let (retried, _) = store.retry_dead_letters().await?;
    if is_reactor(name) {
        println!(
            "{name}: {} dead letters cleared without being judged again (the {name} judges \
             what arrives; edit or report a message to have it judged)",
            retried.applied
        );
        return Ok(());
    }
    println!(
        "{name}: {} applied, {} still failing",
        retried.applied, retried.still_failing
    );
    if retried.still_failing > 0 {
        return Err(Refused(format!(
            "{} dead letters still fail: see `aether projections dead-letters {name}`",
            retried.still_failing
        ))
        .into());
    }
    Ok(())
}

async fn open(args: &StoreArgs, name: &str) -> anyhow::Result<(Stores, Registry)> {
    let stores = args.stores().await?;
    // Refuse unknown names before touching the registry.
    open_store(&stores, name, 1).map_err(|e| Refused(e.to_string()))?;
    let registry = Registry::open(stores.postgres.clone()).await?;
    Ok((stores, registry))
}

async fn live_store(args: &StoreArgs, name: &str) -> anyhow::Result<Arc<dyn ReadStore>> {
    let (stores, registry) = open(args, name).await?;
    let entry = registry.entry(name).await?;
    let store = open_store(&stores, name, entry.live_version)?;
    store.prepare().await?;
    Ok(store)
}

#[derive(serde::Serialize)]
struct ListRow {
    name: String,
    store: &'static str,
    version: i32,
    state: &'static str,
    paused: bool,
    checkpoint: i64,
    lag_events: Option<i64>,
    /// While behind: seconds since the checkpoint last moved (a stuck projector grows it).
    lag_seconds: Option<i64>,
    dead_letters: usize,
    building: Vec<i32>,
}

async fn list(args: &StoreArgs, json: bool) -> anyhow::Result<()> {
    let stores = args.stores().await?;
    let registry = Registry::open(stores.postgres.clone()).await?;
    let kafka = args.kafka.config();
    let mut rows = Vec::new();
    let projections = STREAM_PROJECTIONS
        .iter()
        .map(|(name, kind)| (*name, *kind, &EVENT_TOPICS[..]))
        .chain(
            REACTORS
                .iter()
                .map(|(name, topics)| (*name, "PostgreSQL", *topics)),
        );
    for (name, kind, topics) in projections {
        let entry = registry.find(name).await?;
        if entry.is_none() && is_reactor(name) {
            // A reactor registers when it first starts: a deployment without one lists none.
            continue;
        }
        let (version, paused, building) = match &entry {
            Some(entry) => (
                entry.live_version,
                entry.paused,
                entry
                    .versions
                    .iter()
                    .filter(|v| v.state == VersionState::Building)
                    .map(|v| v.version)
                    .collect(),
            ),
            None => (1, false, vec![]),
        };
        let store = match open_store(&stores, name, version) {
            Ok(store) => store,
            Err(RoleError::NoMongo(_)) => {
                rows.push(ListRow {
                    name: name.to_owned(),
                    store: kind,
                    version,
                    state: "no store",
                    paused,
                    checkpoint: 0,
                    lag_events: None,
                    lag_seconds: None,
                    dead_letters: 0,
                    building,
                });
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        store.prepare().await?;
        let checkpoint = store.checkpoint().await?;
        let lag = log_lag(&kafka, topics, checkpoint.clone()).await.ok();
        let moved = store.last_progress().await?;
        let lag_seconds = lag.as_ref().map(|lag| match moved {
            Some(at) if lag.events > 0 => (chrono::Utc::now() - at).num_seconds().max(0),
            None if lag.events > 0 => -1,
            _ => 0,
        });
        rows.push(ListRow {
            name: name.to_owned(),
            store: kind,
            version,
            state: match (&entry, paused) {
                (None, _) => "never run",
                (Some(_), true) => "paused",
                (Some(_), false) => "active",
            },
            paused,
            checkpoint: checkpoint.total(),
            lag_events: lag.map(|lag| lag.events),
            lag_seconds,
            dead_letters: store.dead_letters().await?.len(),
            building,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<11} {:>7} {:<9} {:>11} {:>10} {:>8} {:>12}  building",
        "NAME", "STORE", "VERSION", "STATE", "CHECKPOINT", "LAG", "LAG (S)", "DEAD LETTERS"
    );
    for row in rows {
        println!(
            "{:<10} {:<11} {:>7} {:<9} {:>11} {:>10} {:>8} {:>12}  {}",
            row.name,
            row.store,
            format!("v{}", row.version),
            row.state,
            row.checkpoint,
            row.lag_events
                .map_or_else(|| "?".to_owned(), |lag| lag.to_string()),
            match row.lag_seconds {
                Some(seconds) if seconds >= 0 => seconds.to_string(),
                Some(_) => "never".to_owned(),
                None => "?".to_owned(),
            },
            row.dead_letters,
            row.building
                .iter()
                .map(|v| format!("v{v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(())
}

/// Builds the next version of `name` from offset 0 while the live one keeps serving, showing
/// progress, then switches to it.
async fn rebuild(
    args: &StoreArgs,
    name: &str,
    batch: usize,
    no_switch: bool,
    from: RebuildFrom,
) -> anyhow::Result<()> {
    let (stores, registry) = open(args, name).await?;
    let kafka = args.kafka.config();
    let version = registry.begin_build(name).await?;
    let store = open_store(&stores, name, version)?;
    store.prepare().await?;
    if from == RebuildFrom::Store {
        eprintln!("{name}: building v{version} from the event store");
        let progress = progress_bar()?;
        let applied =
            build_from_event_store(&stores.postgres, store.as_ref(), batch, |done, total| {
                progress.set_length(total.max(0) as u64);
                progress.set_position(done.max(0) as u64);
            })
            .await?;
        progress.finish_and_clear();
        eprintln!("{name}: {applied} events from the event store; now what came after, from Kafka");
    } else {
        eprintln!("{name}: building v{version} from offset 0");
    }
    let built =
        build_until_caught_up(&kafka, store.clone(), name, version, batch, MAX_PASSES).await?;
    if no_switch {
        println!("{name} v{version}: built ({built} events); switch with `aether projections switch {name} {version}`");
        return Ok(());
    }
    // The live version keeps moving while the new one is built, so the new one may still be a
    // little behind it. Switching then would take readers back in time: pause the live
    // projector instead, bring the new version past where the live one stopped, switch, and
    // resume (the projector processes go on with the new version).
    let resume = !registry.entry(name).await?.paused;
    if resume {
        registry.set_paused(name, true).await?;
    }
    let switched =
        catch_up_and_switch(&kafka, &stores, &registry, store, name, version, batch).await;
    if resume {
        if let Err(error) = registry.set_paused(name, false).await {
            eprintln!(
                "{name}: could not resume ({error}); resume with `aether projections resume {name}`"
            );
        }
    }
    let (built, previous) = switched?;
    println!(
        "{name}: v{version} is live ({built} events); v{previous} retired (drop it with \
         `aether projections drop {name} {previous}`)"
    );
    Ok(())
}

/// How long the live projector may take to notice a pause (its processes read the registry
/// every 500 ms) and finish the batch in hand.
const PAUSE_WAIT: Duration = Duration::from_secs(30);

/// With `name` paused: waits until its live version stops moving, applies the log to the new
/// version `store` past that point, and switches to it. Returns the events the new version
/// consumed and the version it replaced.
async fn catch_up_and_switch(
    kafka: &KafkaConfig,
    stores: &Stores,
    registry: &Registry,
    store: Arc<dyn ReadStore>,
    name: &str,
    version: i32,
    batch: usize,
) -> anyhow::Result<(i64, i32)> {
    let live = open_store(stores, name, registry.entry(name).await?.live_version)?;
    let started = Instant::now();
    let mut last = live.checkpoint().await?;
    let mut still = 0;
    // Still for three looks 250 ms apart, after the registry poll had time to reach it.
    while still < 3 || started.elapsed() < Duration::from_millis(1_200) {
        if started.elapsed() > PAUSE_WAIT {
            return Err(Refused(format!(
                "{name}: its live version did not stop within {PAUSE_WAIT:?} of the pause; \
                 v{version} is built but not live (switch with `aether projections switch \
                 {name} {version}`)"
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = live.checkpoint().await?;
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    eprintln!("{name}: live version paused; catching v{version} up with it");
    // One pass reaches the log end as it was when the pass began, which is past where the
    // paused live version stopped.
    let built = build_until_caught_up(kafka, store.clone(), name, version, batch, 1).await?;
    let reached = store.checkpoint().await?;
    if !reached.covers(&last) {
        return Err(Refused(format!(
            "{name}: v{version} did not reach the live version's position; it is built but not \
             live (switch with `aether projections switch {name} {version}`)"
        ))
        .into());
    }
    let previous = registry
        .switch(name, version)
        .await
        .map_err(|e| Refused(e.to_string()))?;
    Ok((built, previous))
}

/// Applies the log to `store` until it is within one batch of the log end, or for at most
/// `passes` passes (each to the log end as it was when the pass began), with a progress bar
/// (rate and ETA) on standard error. Returns the events consumed.
pub async fn build_until_caught_up(
    kafka: &KafkaConfig,
    store: Arc<dyn ReadStore>,
    name: &str,
    version: i32,
    batch: usize,
    passes: usize,
) -> anyhow::Result<i64> {
    let metrics = Arc::new(ProjectorMetrics::new(name, version));
    let projector = StreamProjector::new(
        store.clone(),
        KafkaSource::new(kafka, &EVENT_TOPICS)?,
        Arc::new(NoUpdates),
        ProjectorOptions {
            batch_size: batch.max(1),
            stop_when_caught_up: true,
            ..ProjectorOptions::default()
        },
        metrics,
    );
    let progress = progress_bar()?;
    let mut checkpoints = projector.checkpoint();
    let end = log_lag(kafka, &EVENT_TOPICS, Checkpoint::default())
        .await?
        .log_end;
    progress.set_length(end.max(0) as u64);
    let watcher = {
        let progress = progress.clone();
        tokio::spawn(async move {
            while checkpoints.changed().await.is_ok() {
                let at = checkpoints.borrow_and_update().total();
                progress.set_position(at.max(0) as u64);
            }
        })
    };
    let (_paused, paused) = watch::channel(false);
    // New events keep arriving while we build: go round until a pass finds almost nothing new,
    // or a few times (under writes faster than a pass, the final catch-up happens paused).
    for _ in 0..passes.max(1) {
        let before = store.checkpoint().await?.total();
        projector
            .run(paused.clone(), CancellationToken::new())
            .await?;
        let after = store.checkpoint().await?.total();
        let end = log_lag(kafka, &EVENT_TOPICS, store.checkpoint().await?).await?;
        progress.set_length(end.log_end.max(0) as u64);
        if after - before <= batch as i64 || end.events <= batch as i64 {
            break;
        }
    }
    watcher.abort();
    let total = store.checkpoint().await?.total();
    progress.finish_with_message("caught up");
    Ok(total)
}

/// How far `at` is behind the log; a broker slow to answer is asked again, a few times.
async fn log_lag(
    kafka: &KafkaConfig,
    topics: &'static [&'static str],
    at: Checkpoint,
) -> anyhow::Result<Lag> {
    let mut wait = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        let (kafka, at) = (kafka.clone(), at.clone());
        match tokio::task::spawn_blocking(move || lag_of(&kafka, topics, &at)).await? {
            Ok(lag) => return Ok(lag),
            Err(error) if attempt < 5 => {
                tracing::warn!(%error, attempt, "the broker did not answer; asking again");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error).context("cannot read the log end from Kafka"),
        }
    }
}

/// Passes over the log a build makes before it settles for being close behind.
const MAX_PASSES: usize = 5;

/// A bar with the rate and the time left, on standard error.
fn progress_bar() -> anyhow::Result<ProgressBar> {
    let progress = ProgressBar::new(0);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events  {per_sec}  ETA {eta}",
        )
        .context("progress bar template")?,
    );
    Ok(progress)
}
