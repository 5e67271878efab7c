//! The projector role: one projection, kept up to date by one process, following the registry
//! (pause, resume, switch to a rebuilt version) as operators change it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_kafka::{KafkaConfig, KafkaError};
use aether_schemas::topics;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::engine::{ProjectorFailure, ProjectorOptions, StreamProjector, UpdateSink};
use super::metrics::ProjectorMetrics;
use super::mongo::{MongoStore, MongoTimelineProjection};
use super::postgres::{
    AuditProjection, CatalogProjection, PgProjection, PgStore, ReceiptsProjection,
    SearchProjection, TimelineProjection,
};
use super::reactor::{is_reactor, reactor, REACTORS};
use super::registry::Registry;
use super::source::KafkaSource;
use super::store::{ReadStore, StoreError};
use crate::updates::Update;

/// The projections that run as their own processes, and the store each keeps.
pub const STREAM_PROJECTIONS: &[(&str, &str)] = &[
    (CatalogProjection::NAME, "PostgreSQL"),
    (AuditProjection::NAME, "PostgreSQL"),
    (SearchProjection::NAME, "PostgreSQL"),
    (ReceiptsProjection::NAME, "PostgreSQL"),
    (MongoTimelineProjection::NAME, "MongoDB or PostgreSQL"),
];

/// The stores read models are kept in.
#[derive(Clone, Debug)]
pub struct Stores {
    pub postgres: PgPool,
    /// The MongoDB database of the document read models (timeline); `None` where none is
    /// configured, and those projections cannot run.
    pub mongo: Option<mongodb::Database>,
    /// Which of the two keeps the timeline.
    pub timeline: TimelineStore,
}

/// Where the timeline read model (messages and each channel's numbered changes) is kept in the
/// distributed mode. Every role of a deployment must be given the same: projectors write it
/// there and API and edge instances read it there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimelineStore {
    /// Collections `timeline_vN_*` of the MongoDB database.
    #[default]
    MongoDb,
    /// Schema `timeline_vN` of the PostgreSQL database, beside the other read models.
    Postgres,
}

impl TimelineStore {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MongoDb => "mongodb",
            Self::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for TimelineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TimelineStore {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "mongodb" => Ok(Self::MongoDb),
            "postgres" => Ok(Self::Postgres),
            other => Err(format!(
                "unknown timeline store {other:?}: mongodb or postgres"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("unknown projection {0:?}; known: {known}", known = known())]
    Unknown(String),
    #[error(
        "projection {0} lives in MongoDB: give --mongo (AETHER_MONGO_URL), or keep it in \
         PostgreSQL with --timeline-store postgres on every role"
    )]
    NoMongo(String),
    #[error(
        "{0} is a reactor, not a projection: it runs as its own role (`aether serve --role {0}`)"
    )]
    Reactor(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Projector(#[from] ProjectorFailure),
}

fn known() -> String {
    STREAM_PROJECTIONS
        .iter()
        .map(|(name, _)| *name)
        .chain(REACTORS.iter().map(|(name, _)| *name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The store of one version of a projection, or a reactor's bookkeeping.
pub fn open_store(
    stores: &Stores,
    name: &str,
    version: i32,
) -> Result<Arc<dyn ReadStore>, RoleError> {
    if name == MongoTimelineProjection::NAME && stores.timeline == TimelineStore::MongoDb {
        let Some(database) = stores.mongo.clone() else {
            return Err(RoleError::NoMongo(name.to_owned()));
        };
        return Ok(Arc::new(MongoStore::new(
            database,
            Arc::new(MongoTimelineProjection),
            version,
        )));
    }
    let projection: Arc<dyn PgProjection> = match (name, reactor(name)) {
        (_, Some(bookkeeping)) => Arc::new(bookkeeping),
        (CatalogProjection::NAME, _) => Arc::new(CatalogProjection),
        (AuditProjection::NAME, _) => Arc::new(AuditProjection),
        (SearchProjection::NAME, _) => Arc::new(SearchProjection),
        (ReceiptsProjection::NAME, _) => Arc::new(ReceiptsProjection),
        (TimelineProjection::NAME, _) => Arc::new(TimelineProjection),
        (other, None) => return Err(RoleError::Unknown(other.to_owned())),
    };
    Ok(Arc::new(PgStore::new(
        stores.postgres.clone(),
        projection,
        version,
    )))
}

/// Publishes updates to `aether.updates.v1`, keyed like the read-model row they describe.
/// Fire and forget: an update lost here is recovered by the client's catch-up from its cursor.
pub struct KafkaUpdates {
    producer: FutureProducer,
    topic: String,
}

impl KafkaUpdates {
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: config.producer()?,
            topic: config.topic(topics::UPDATES),
        })
    }
}

impl KafkaUpdates {
    /// Queues one update, with a `traceparent` header when it continues a trace.
    fn send(&self, update: &Update, traceparent: Option<&str>) {
        let key = update.key();
        let Ok(payload) = serde_json::to_vec(update) else {
            return;
        };
        let mut record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        if traceparent.is_some() {
            record = record.headers(aether_kafka::trace::with_header(
                OwnedHeaders::new_with_capacity(1),
                traceparent,
            ));
        }
        if let Err((error, _)) = self.producer.send_result(record) {
            tracing::warn!(%error, "cannot queue a projection update");
        }
    }
}

impl UpdateSink for KafkaUpdates {
    fn publish(&self, updates: Vec<Update>) {
        for update in updates {
            self.send(&update, None);
        }
    }

    fn publish_traced(&self, updates: Vec<(Update, Option<String>)>) {
        for (update, traceparent) in updates {
            self.send(&update, traceparent.as_deref());
        }
    }
}

/// Where the running projector's metrics are, across version switches.
pub type MetricsSlot = Arc<Mutex<Arc<ProjectorMetrics>>>;

/// How often a projector process re-reads the registry.
const REGISTRY_POLL: Duration = Duration::from_millis(500);

/// Runs projection `name` until `shutdown`: the live version from the registry, paused while
/// the registry says so, and moved to a new version as soon as one is switched live.
pub async fn run_projector(
    stores: Stores,
    kafka: KafkaConfig,
    name: String,
    options: ProjectorOptions,
    updates: Arc<dyn UpdateSink>,
    metrics: MetricsSlot,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    if is_reactor(&name) {
        return Err(RoleError::Reactor(name));
    }
    open_store(&stores, &name, 1)?;
    let registry = Registry::open(stores.postgres.clone()).await?;
    while !shutdown.is_cancelled() {
        let entry = match registry.entry(&name).await {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(projection = %name, %error, "cannot read the registry; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let version = entry.live_version;
        let store = open_store(&stores, &name, version)?;
        store.prepare().await?;
        let version_metrics = Arc::new(ProjectorMetrics::new(&name, version));
        *metrics.lock().unwrap_or_else(|p| p.into_inner()) = version_metrics.clone();
        let source = KafkaSource::new(&kafka, &topics::EVENT_TOPICS)?;
        let projector = StreamProjector::new(
            store,
            source,
            updates.clone(),
            options.clone(),
            version_metrics,
        );
        let (paused, paused_rx) = watch::channel(entry.paused);
        let current = shutdown.child_token();
        let watcher = {
            let registry = registry.clone();
            let name = name.clone();
            let current = current.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = current.cancelled() => return,
                        _ = tokio::time::sleep(REGISTRY_POLL) => {}
                    }
                    match registry.find(&name).await {
                        Ok(Some(entry)) if entry.live_version != version => {
                            tracing::info!(projection = %name, from = version, to = entry.live_version, "switching to the new live version");
                            current.cancel();
                            return;
                        }
                        Ok(Some(entry)) => {
                            paused.send_if_modified(|p| {
                                std::mem::replace(p, entry.paused) != entry.paused
                            });
                        }
                        Ok(None) => {}
                        Err(error) => tracing::debug!(%error, "registry poll failed"),
                    }
                }
            })
        };
        let outcome = projector.run(paused_rx, current.clone()).await;
        current.cancel();
        let _ = watcher.await;
        outcome?;
    }
    Ok(())
}

/// Keeps `paused` as the registry says for `name`, re-read every half second, until
/// `shutdown`: how a reactor process follows `aether projections pause|resume`. A registry
/// that cannot be read leaves the last answer in place.
pub async fn follow_paused(
    registry: Registry,
    name: &str,
    paused: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    loop {
        match registry.find(name).await {
            Ok(Some(entry)) => {
                if paused.send_if_modified(|p| std::mem::replace(p, entry.paused) != entry.paused) {
                    tracing::info!(reactor = name, paused = entry.paused, "paused or resumed");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "registry poll failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REGISTRY_POLL) => {}
        }
    }
}

/// The projections the API's queries read: a deployment runs a projector process for each.
pub const QUERIED_PROJECTIONS: [&str; 3] = [
    CatalogProjection::NAME,
    ReceiptsProjection::NAME,
    MongoTimelineProjection::NAME,
];

/// Projector `name` as its own process runs it: checked against the stores, publishing updates
/// to `aether.updates.v1`, its live version's metrics in the returned slot. The future runs it
/// until `shutdown`.
pub fn projector(
    stores: &Stores,
    kafka: &KafkaConfig,
    name: &str,
    options: &ProjectorOptions,
    shutdown: &CancellationToken,
) -> Result<
    (
        MetricsSlot,
        impl std::future::Future<Output = Result<(), RoleError>> + Send + 'static,
    ),
    RoleError,
> {
    if is_reactor(name) {
        return Err(RoleError::Reactor(name.to_owned()));
    }
    open_store(stores, name, 1)?;
    let updates = Arc::new(KafkaUpdates::new(kafka)?);
    let metrics: MetricsSlot = Arc::new(Mutex::new(Arc::new(ProjectorMetrics::new(name, 1))));
    let run = run_projector(
        stores.clone(),
        kafka.clone(),
        name.to_owned(),
        options.clone(),
        updates,
        metrics.clone(),
        shutdown.clone(),
    );
    Ok((metrics, run))
}

/// Runs each of `names` as [`run_projector`] would in its own process, publishing updates to
/// `aether.updates.v1`, until `shutdown`: for tests and benchmarks that hold a whole
/// deployment in one process.
pub fn spawn_projectors(
    stores: &Stores,
    kafka: &KafkaConfig,
    names: &[&str],
    options: &ProjectorOptions,
    shutdown: &CancellationToken,
) -> Result<tokio::task::JoinSet<Result<(), RoleError>>, RoleError> {
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let (_, run) = projector(stores, kafka, name, options, shutdown)?;
        tasks.spawn(run);
    }
    Ok(tasks)
}
