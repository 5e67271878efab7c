//! The `dev` role: the embedded mode. Event store, projectors, the moderator, read models and
//! the GraphQL API in one process, on SQLite files under one data directory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aether_commands::auth::load_or_create_secret;
use aether_commands::backend::EventStoreBackend;
use aether_commands::{ChatCommands, SqliteEventStore};
use aether_projections::catalog::CatalogProjection;
use aether_projections::projection::Projection;
use aether_projections::receipts::ReceiptsProjection;
use aether_projections::rows::RowError;
use aether_projections::stream::controls::{Control, EmbeddedControls, CONTROLS_POLL};
use aether_projections::stream::source::Checkpoint;
use aether_projections::stream::source::{EventLogSource, EventSource};
use aether_projections::stream::sqlite::SqliteStore;
use aether_projections::stream::{ProjectorMetrics, ReadStore, StreamProjector};
use aether_projections::timeline::TimelineProjection;
use aether_projections::{ReadModels, UpdateBus, Watermarks};
use aether_query_api::ephemeral::Ephemeral;
use aether_query_api::revocation::Revocations;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use aether_projections::stream::reactor::{Bookkeeping, MODERATOR};

use crate::moderator::ModelState;

use super::{prepare_data_dir, start_app, AppError, AppParts, EmbeddedConfig, Running};

/// Opens the stores, starts the projectors and the HTTP server, and returns once it listens.
pub async fn start_embedded(config: EmbeddedConfig) -> Result<Running, AppError> {
    // Before anything that records: handles made earlier would record nowhere.
    crate::telemetry::recorder();
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
    let moderator_paused = projectors.reactor(MODERATOR);
    let moderator = config
        .moderator
        .clone()
        .zip(moderator_paused)
        .map(|(moderation, paused)| {
            let (state, watching) = tokio::sync::watch::channel(ModelState::Loading);
            let run = crate::moderator::run(
                Arc::new(SqliteStore::new(
                    &config.data_dir,
                    Arc::new(Bookkeeping::moderator()),
                    1,
                )),
                Arc::new(EventLogSource::new(Arc::new(events.clone()))),
                Arc::new(ChatCommands::new(store.clone())),
                moderation,
                state,
                paused,
                shutdown.clone(),
            );
            tasks
                .spawn(async move { run.await.map_err(|error| AppError::Role(error.to_string())) });
            watching
        });
    let mut running = start_app(
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
    .await?;
    running.moderator = moderator;
    Ok(running)
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
/// one SQLite file per projection version in the data directory (`catalog_v1.db`, …; the live
/// version of each from the operator's controls), and announcing what they applied on `bus`.
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
    let controls = EmbeddedControls::open(&config.data_dir)
        .await
        .map_err(RowError::from)?;
    let set = controls.read().await.map_err(RowError::from)?;
    let live = |name: &str| set.get(name).map_or(1, |control| control.live_version);
    let mut slots = Vec::new();
    let mut checkpoints = Vec::new();
    let mut projectors = Projectors::default();
    for projection in projections {
        let name = projection.name();
        let version = live(name);
        // Its file exists before the read models attach it.
        SqliteStore::new(&config.data_dir, projection.clone(), version)
            .prepare()
            .await?;
        let paused = set
            .get(name)
            .and_then(|control| control.paused)
            .unwrap_or(config.projectors_paused);
        let (paused, paused_rx) = tokio::sync::watch::channel(paused);
        let (version_tx, version_rx) = tokio::sync::watch::channel(version);
        let (applied, applied_rx) = tokio::sync::watch::channel(Default::default());
        checkpoints.push(applied_rx);
        let metrics = Arc::new(Mutex::new(Arc::new(ProjectorMetrics::new(name, version))));
        projectors.controls.push((
            name,
            ProjectorControl {
                paused,
                version: version_tx,
                metrics: metrics.clone(),
            },
        ));
        slots.push(Slot {
            projection,
            version: version_rx,
            paused: paused_rx,
            applied,
            metrics,
        });
    }
    if config.moderator.is_some() {
        // Paused only by the operator (`aether projections pause moderator --data-dir`).
        let paused = set
            .get(MODERATOR)
            .and_then(|control| control.paused)
            .unwrap_or(false);
        projectors
            .reactors
            .push((MODERATOR, tokio::sync::watch::channel(paused).0));
    }
    let watermarks = Watermarks::new(checkpoints);
    let versions = projectors
        .controls
        .iter()
        .map(|(name, control)| ((*name).to_owned(), *control.version.borrow()))
        .collect();
    let read =
        ReadModels::embedded_versions(&config.data_dir, &versions, watermarks.clone()).await?;
    for slot in slots {
        let run = slot.run(
            config.data_dir.clone(),
            events.clone(),
            bus.clone(),
            config.projector.clone(),
            read.clone(),
            shutdown.clone(),
        );
        tasks.spawn(run);
    }
    follow_controls(controls, &projectors, tasks, shutdown);
    projectors.watermarks = Some(watermarks);
    Ok((read, projectors))
}

/// One embedded projection, kept by whichever version is live.
struct Slot {
    projection: Arc<dyn Projection>,
    version: tokio::sync::watch::Receiver<i32>,
    paused: tokio::sync::watch::Receiver<bool>,
    /// The live version's checkpoint, whichever projector keeps it.
    applied: tokio::sync::watch::Sender<Checkpoint>,
    metrics: Arc<Mutex<Arc<ProjectorMetrics>>>,
}

impl Slot {
    /// Runs the live version's projector until `shutdown`; when an operator switches the live
    /// version, stops it, catches the new one up past where it stopped (readers stay on the old
    /// one meanwhile, so they never see the projection go back), then moves readers over.
    async fn run(
        mut self,
        dir: std::path::PathBuf,
        events: SqliteEventStore,
        bus: UpdateBus,
        options: aether_projections::stream::ProjectorOptions,
        read: ReadModels,
        shutdown: CancellationToken,
    ) -> Result<(), AppError> {
        let name = self.projection.name();
        let mut version = *self.version.borrow_and_update();
        // Where the version readers used stopped, while a new one catches up with it.
        let mut handover: Option<(i32, Checkpoint)> = None;
        loop {
            let store = Arc::new(SqliteStore::new(&dir, self.projection.clone(), version));
            store.prepare().await?;
            let metrics = Arc::new(ProjectorMetrics::new(name, version));
            *self.metrics.lock().unwrap_or_else(|p| p.into_inner()) = metrics.clone();
            let projector = StreamProjector::new(
                store,
                Arc::new(EventLogSource::new(Arc::new(events.clone()))) as Arc<dyn EventSource>,
                Arc::new(bus.clone()),
                options.clone(),
                metrics,
            );
            let mut checkpoint = projector.checkpoint();
            let current = shutdown.child_token();
            let running = tokio::spawn({
                let (paused, current) = (self.paused.clone(), current.clone());
                async move { projector.run(paused, current).await }
            });
            // Follow this projector's checkpoint; finish a handover once it passes the old one.
            let switched = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break None,
                    changed = self.version.changed() => {
                        if changed.is_err() {
                            break None;
                        }
                        let next = *self.version.borrow_and_update();
                        if next != version {
                            break Some(next);
                        }
                    }
                    changed = checkpoint.changed() => {
                        if changed.is_err() {
                            break None;
                        }
                        let at = checkpoint.borrow_and_update().clone();
                        match &handover {
                            Some((from, old)) if at.covers(old) => {
                                read.switch_embedded(name, version).await?;
                                tracing::info!(projection = name, from = *from, to = version, "switched to the new live version");
                                handover = None;
                                self.applied.send_replace(at);
                            }
                            Some(_) => {}
                            None => {
                                self.applied.send_replace(at);
                            }
                        }
                    }
                }
            };
            current.cancel();
            let outcome = running
                .await
                .map_err(|e| AppError::Role(format!("{name} projector: {e}")))?;
            let Some(next) = switched else {
                outcome?;
                return Ok(());
            };
            outcome?;
            // Readers stay on the version they use until the next one has passed it.
            let (readers_on, stopped_at) = match handover.take() {
                Some(pending) => pending,
                None => (version, self.applied.borrow().clone()),
            };
            if next == readers_on {
                read.switch_embedded(name, next).await?;
            } else {
                handover = Some((readers_on, stopped_at));
            }
            tracing::info!(
                projection = name,
                from = version,
                to = next,
                "the live version changed; catching up"
            );
            version = next;
        }
    }
}

/// Applies the operator's controls (`aether projections pause|resume|switch --data-dir`) to
/// the running projectors every [`CONTROLS_POLL`] until `shutdown`. A projection the operator
/// never paused or resumed keeps the start-up setting.
fn follow_controls(
    controls: EmbeddedControls,
    projectors: &Projectors,
    tasks: &mut JoinSet<Result<(), AppError>>,
    shutdown: &CancellationToken,
) {
    let reactors = projectors.reactors.clone();
    let projectors = projectors.controls.clone();
    let apply = move |set: HashMap<String, Control>| {
        // Projectors and reactors alike are paused and resumed.
        let pauses = projectors
            .iter()
            .map(|(name, control)| (*name, &control.paused))
            .chain(reactors.iter().map(|(name, paused)| (*name, paused)));
        for (name, paused) in pauses {
            let Some(wanted) = set.get(name).and_then(|control| control.paused) else {
                continue;
            };
            if paused.send_if_modified(|p| std::mem::replace(p, wanted) != wanted) {
                tracing::info!(name, paused = wanted, "paused or resumed");
            }
        }
        for (name, control) in &projectors {
            let Some(wanted) = set.get(*name) else {
                continue;
            };
            let version = wanted.live_version;
            control
                .version
                .send_if_modified(|v| std::mem::replace(v, version) != version);
        }
    };
    let token = shutdown.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(CONTROLS_POLL) => {}
            }
            match controls.read().await {
                Ok(set) => apply(set),
                Err(error) => tracing::debug!(%error, "cannot read the projection controls"),
            }
        }
        controls.close().await;
        Ok(())
    });
}

/// Pauses and resumes one of the embedded projectors, and shows its metrics.
#[derive(Clone, Debug)]
pub struct ProjectorControl {
    paused: tokio::sync::watch::Sender<bool>,
    /// The live version the operator chose.
    version: tokio::sync::watch::Sender<i32>,
    metrics: Arc<Mutex<Arc<ProjectorMetrics>>>,
}

impl ProjectorControl {
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// The live version's metrics.
    pub fn metrics(&self) -> Arc<ProjectorMetrics> {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The projectors running in this process, if any.
#[derive(Default)]
pub(crate) struct Projectors {
    pub(crate) controls: Vec<(&'static str, ProjectorControl)>,
    /// Whether each reactor configured to run here is paused, as the operator's controls say.
    pub(crate) reactors: Vec<(&'static str, tokio::sync::watch::Sender<bool>)>,
    pub(crate) watermarks: Option<Watermarks>,
}

impl Projectors {
    /// Whether reactor `name` is paused, as it changes; `None` unless it runs here.
    fn reactor(&self, name: &str) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.reactors
            .iter()
            .find(|(reactor, _)| *reactor == name)
            .map(|(_, paused)| paused.subscribe())
    }
}
