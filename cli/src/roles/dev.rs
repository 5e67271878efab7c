//! The `dev` role: the embedded mode. Event store, projectors, read models and the GraphQL
//! API in one process, on SQLite files under one data directory.

use std::collections::HashMap;
use std::sync::Arc;

use aether_commands::auth::load_or_create_secret;
use aether_commands::backend::EventStoreBackend;
use aether_commands::SqliteEventStore;
use aether_projections::catalog::CatalogProjection;
use aether_projections::projection::Projection;
use aether_projections::receipts::ReceiptsProjection;
use aether_projections::stream::controls::{EmbeddedControls, CONTROLS_POLL};
use aether_projections::stream::source::{EventLogSource, EventSource};
use aether_projections::stream::sqlite::SqliteStore;
use aether_projections::stream::{ProjectorMetrics, ReadStore, StreamProjector};
use aether_projections::timeline::TimelineProjection;
use aether_projections::{ReadModels, UpdateBus, Watermarks};
use aether_query_api::ephemeral::Ephemeral;
use aether_query_api::revocation::Revocations;
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
    let revocations = super::revocations(&config);
    {
        let (store, revocations, token) = (store.clone(), revocations.clone(), shutdown.clone());
        let head = aether_schemas::EventLog::head(&events);
        tasks.spawn(async move {
            follow_session_ends(store, head, revocations, token).await;
            Ok(())
        });
    }
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
            revocations,
        },
    )
    .await
}

/// Applies every session end the log receives from now on to `revocations`: the embedded
/// mode's own log, read by position (the session ends only, through their index), woken by
/// each commit.
async fn follow_session_ends(
    store: EventStoreBackend,
    mut head: tokio::sync::watch::Receiver<i64>,
    revocations: Arc<Revocations>,
    shutdown: CancellationToken,
) {
    const PAGE: i64 = 500;
    let mut after = *head.borrow_and_update();
    loop {
        // Read before the query: every event up to it is visible to the query (one writer,
        // positions in commit order), so none between the two is skipped.
        let reached = *head.borrow_and_update();
        match store.session_ends_after(after, PAGE).await {
            Ok(ends) => {
                let full = ends.len() as i64 == PAGE;
                for (position, end) in &ends {
                    after = after.max(*position);
                    revocations.apply(end);
                }
                if full {
                    continue;
                }
                // Nothing more up to `reached`: look from there next.
                after = after.max(reached);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read session ends from the log; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                }
                continue;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = head.changed() => if changed.is_err() { return },
        }
    }
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
    follow_controls(config, &projectors, tasks, shutdown).await?;
    let watermarks = Watermarks::new(checkpoints);
    let read = ReadModels::embedded(&config.data_dir, watermarks.clone()).await?;
    projectors.watermarks = Some(watermarks);
    Ok((read, projectors))
}

/// Applies the operator's pauses and resumes (`aether projections pause|resume --data-dir`) to
/// the running projectors: at once, then every [`CONTROLS_POLL`] until `shutdown`. A projection
/// the operator never paused or resumed keeps the start-up setting.
async fn follow_controls(
    config: &EmbeddedConfig,
    projectors: &Projectors,
    tasks: &mut JoinSet<Result<(), AppError>>,
    shutdown: &CancellationToken,
) -> Result<(), AppError> {
    let controls = EmbeddedControls::open(&config.data_dir)
        .await
        .map_err(aether_projections::rows::RowError::from)?;
    let apply = {
        let projectors = projectors.controls.clone();
        move |paused: HashMap<String, bool>| {
            for (name, control) in &projectors {
                if let Some(&paused) = paused.get(*name) {
                    let changed = control
                        .paused
                        .send_if_modified(|p| std::mem::replace(p, paused) != paused);
                    if changed {
                        tracing::info!(projection = name, paused, "projection control changed");
                    }
                }
            }
        }
    };
    apply(controls.paused().await.unwrap_or_default());
    let token = shutdown.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(CONTROLS_POLL) => {}
            }
            match controls.paused().await {
                Ok(paused) => apply(paused),
                Err(error) => tracing::debug!(%error, "cannot read the projection controls"),
            }
        }
        controls.close().await;
        Ok(())
    });
    Ok(())
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
