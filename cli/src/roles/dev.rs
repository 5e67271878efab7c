//! The `dev` role: the embedded mode. Event store, projectors, read models and the GraphQL
//! API in one process, on SQLite files under one data directory.

use std::sync::Arc;

use aether_commands::auth::load_or_create_secret;
use aether_commands::backend::EventStoreBackend;
use aether_commands::SqliteEventStore;
use aether_projections::catalog::CatalogProjection;
use aether_projections::projection::Projection;
use aether_projections::receipts::ReceiptsProjection;
use aether_projections::stream::source::{EventLogSource, EventSource};
use aether_projections::stream::sqlite::SqliteStore;
use aether_projections::stream::{ProjectorMetrics, ReadStore, StreamProjector};
use aether_projections::timeline::TimelineProjection;
use aether_projections::{ReadModels, UpdateBus, Watermarks};
use aether_query_api::ephemeral::Ephemeral;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{prepare_data_dir, start_app, AppError, AppParts, EmbeddedConfig, Running};

/// Opens the stores, starts the projectors and the HTTP server, and returns once it listens.
pub async fn start_embedded(config: EmbeddedConfig) -> Result<Running, AppError> {
    prepare_data_dir(&config)?;
    let events = SqliteEventStore::open(&config.data_dir.join("events.db")).await?;
    let store = EventStoreBackend::Sqlite(events.clone());
    let bus = UpdateBus::new(config.update_buffer);
    let hub = Ephemeral::loopback(config.ephemeral.clone());
    let mut tasks = JoinSet::new();
    let shutdown = CancellationToken::new();
    let (read, projectors) =
        start_embedded_projectors(&config, &events, &bus, &mut tasks, &shutdown).await?;
    let secret = match &config.jwt_secret_file {
        Some(path) => std::fs::read(path).map_err(|source| AppError::DataDir {
            path: path.clone(),
            source,
        })?,
        None => load_or_create_secret(&config.data_dir.join("jwt-secret")).map_err(|source| {
            AppError::DataDir {
                path: config.data_dir.clone(),
                source,
            }
        })?,
    };
    start_app(
        config,
        AppParts {
            store,
            events: Some(events),
            read,
            projectors,
            secret,
            tasks,
            shutdown,
            bus,
            hub,
        },
    )
    .await
}

/// The embedded mode's projectors: the stream engine, reading the event store's own log into
/// one SQLite file per projection version in the data directory (`catalog_v1.db`, …), and
/// announcing what they applied on `bus`.
async fn start_embedded_projectors(
    config: &EmbeddedConfig,
    events: &SqliteEventStore,
    bus: &UpdateBus,
    tasks: &mut JoinSet<Result<(), AppError>>,
    shutdown: &CancellationToken,
) -> Result<(ReadModels, Projectors), AppError> {
    let projections: [Arc<dyn Projection>; 3] = [
        Arc::new(CatalogProjection),
        Arc::new(ReceiptsProjection),
        Arc::new(TimelineProjection),
    ];
    let mut checkpoints = Vec::new();
    let mut projectors = Projectors::default();
    for projection in projections {
        let name = projection.name();
        let store = Arc::new(SqliteStore::new(&config.data_dir, projection, 1));
        store.prepare().await?;
        let metrics = Arc::new(ProjectorMetrics::new(name, 1));
        let source = EventLogSource::new(Arc::new(events.clone()));
        let projector = StreamProjector::new(
            store,
            Arc::new(source) as Arc<dyn EventSource>,
            Arc::new(bus.clone()),
            config.projector.clone(),
            metrics.clone(),
        );
        checkpoints.push(projector.checkpoint());
        let (paused, paused_rx) = tokio::sync::watch::channel(config.projectors_paused);
        projectors
            .controls
            .push((name, ProjectorControl { paused, metrics }));
        let token = shutdown.clone();
        tasks.spawn(async move { Ok(projector.run(paused_rx, token).await?) });
    }
    let watermarks = Watermarks::new(checkpoints);
    let read = ReadModels::embedded(&config.data_dir, watermarks.clone()).await?;
    projectors.watermarks = Some(watermarks);
    Ok((read, projectors))
}

/// Pauses and resumes one of the embedded projectors, and shows its metrics.
#[derive(Clone, Debug)]
pub struct ProjectorControl {
    paused: tokio::sync::watch::Sender<bool>,
    metrics: Arc<ProjectorMetrics>,
}

impl ProjectorControl {
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    pub fn metrics(&self) -> &ProjectorMetrics {
        &self.metrics
    }
}

/// The projectors running in this process, if any.
#[derive(Default)]
pub(crate) struct Projectors {
    pub(crate) controls: Vec<(&'static str, ProjectorControl)>,
    pub(crate) watermarks: Option<Watermarks>,
}
