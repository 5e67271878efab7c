//! The embedded application (`aether dev`): event store, projectors, read models and the API in
//! one process, on SQLite files under one data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aether_commands::auth::{
    load_or_create_secret, TokenIssuer, DEFAULT_ACCESS_TTL, DEFAULT_REFRESH_TTL,
};
use aether_commands::backend::EventStoreBackend;
use aether_commands::keys::Keyring;
use aether_commands::postgres::PgEventStore;
use aether_commands::relay::{run_relay, LatencyRecorder, RelayConfig, RelayStatus};
use aether_commands::{ChatCommands, SqliteEventStore};
use aether_kafka::KafkaConfig;
use aether_projections::catalog::CatalogProjection;
use aether_projections::projection::Projection;
use aether_projections::receipts::ReceiptsProjection;
use aether_projections::rows::RowError;
use aether_projections::stream::engine::ProjectorFailure;
use aether_projections::stream::source::{EventLogSource, EventSource};
use aether_projections::stream::sqlite::SqliteStore;
use aether_projections::stream::{ProjectorMetrics, ProjectorOptions, ReadStore, StreamProjector};
use aether_projections::timeline::TimelineProjection;
use aether_projections::{ProjectionError, ReadModels, UpdateBus, Watermarks};
use aether_query_api::ephemeral::{Ephemeral, EphemeralLimits};
use aether_query_api::{build_schema, ApiLimits, ApiState};
use aether_schemas::topics;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::audience::{AudienceStats, Audiences};
use crate::edge::{run_signal_feed, run_update_feed, wait_positioned, KafkaSignals};
use crate::http::{router, Authenticator, Connections, HttpLimits, HttpState};
use crate::oidc::{ExternalIssuer, OidcConfig};

#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Where the SQLite files and the token secret live.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// How the embedded mode's projectors batch, retry and treat poison events.
    pub projector: ProjectorOptions,
    /// Start the embedded projectors paused (resume them through [`Running::projectors`]).
    pub projectors_paused: bool,
    pub api: ApiLimits,
    pub http: HttpLimits,
    /// Updates a slow subscriber may fall behind before it re-reads the read model.
    pub update_buffer: usize,
    /// Longest a query waits for the read models to reach a consistency token.
    pub consistency_wait: Duration,
    /// Longest the server waits for open requests and connections after a shutdown signal.
    pub shutdown_grace: Duration,
    pub access_token_ttl: Duration,
    /// Read the token-signing secret from this file instead of generating one in the data
    /// directory (the distributed mode, where every instance must share it).
    pub jwt_secret_file: Option<PathBuf>,
    /// Typing and presence timings.
    pub ephemeral: EphemeralLimits,
    /// An external OpenID Connect issuer whose tokens are accepted besides the product's own.
    pub oidc: Option<OidcConfig>,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            projector: ProjectorOptions::default(),
            projectors_paused: false,
            api: ApiLimits::default(),
            http: HttpLimits::default(),
            update_buffer: aether_projections::updates::DEFAULT_BUS_CAPACITY,
            consistency_wait: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            access_token_ttl: DEFAULT_ACCESS_TTL,
            jwt_secret_file: None,
            ephemeral: EphemeralLimits::default(),
            oidc: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] aether_commands::store::StoreError),
    #[error("read model store: {0}")]
    ReadStore(#[from] sqlx::Error),
    #[error("read model migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("read model store: {0}")]
    ProjectionStore(#[from] aether_projections::stream::StoreError),
    #[error("projector: {0}")]
    Projector(#[from] ProjectorFailure),
    #[error("read models: {0}")]
    ReadModels(#[from] RowError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Role(String),
}

/// A started application.
pub struct Running {
    pub local_addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub projectors: Vec<(&'static str, ProjectorControl)>,
    audiences: Arc<Audiences>,
    tasks: JoinSet<Result<(), AppError>>,
    /// The embedded mode's event store, closed once every role stopped.
    events: Option<SqliteEventStore>,
    read: ReadModels,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// How often updates were serialized for this instance's subscribers, and how
    /// often sent: the difference is what sharing payloads within an audience saved.
    pub fn audience_stats(&self) -> AudienceStats {
        self.audiences.stats()
    }

    /// Waits until every role has stopped (after `shutdown` is cancelled, or one role fails),
    /// then closes the stores.
    pub async fn wait(mut self) -> Result<(), AppError> {
        let mut outcome = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let result = match joined {
                Ok(result) => result,
                Err(error) => Err(AppError::Serve(std::io::Error::other(error.to_string()))),
            };
            if let Err(error) = result {
                tracing::error!(%error, "a role failed; shutting down");
                self.shutdown.cancel();
                if outcome.is_ok() {
                    outcome = Err(error);
                }
            }
        }
        if let Some(events) = &self.events {
            events.close().await;
        }
        self.read.close().await;
        outcome
    }

    /// Stops everything and waits for it.
    pub async fn stop(self) -> Result<(), AppError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

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
struct Projectors {
    controls: Vec<(&'static str, ProjectorControl)>,
    watermarks: Option<Watermarks>,
}

/// Where the distributed API finds its servers.
#[derive(Clone, Debug)]
pub struct DistributedConfig {
    pub postgres: PgEventStore,
    pub kafka: KafkaConfig,
    /// The MongoDB database of the document read models (the timeline).
    pub mongo: mongodb::Database,
    /// Also run the relay in this process (`aether serve --role all`).
    pub with_relay: bool,
    /// For benchmarks: the in-process relay records command→Kafka latencies here (see
    /// [`RelayConfig::latency`]). `None` records nothing.
    pub relay_latency: Option<LatencyRecorder>,
}

/// An API (or edge) instance of the distributed mode. It keeps no copy of the log and writes
/// no file: commands go to the PostgreSQL event store; queries read the projector processes'
/// read models (PostgreSQL, MongoDB); subscriptions catch up from those and go live from
/// `aether.updates.v1` (every partition, from start-up, no consumer group); typing and
/// presence travel between instances on their own topic. Start as many as you like.
pub async fn start_distributed(
    config: EmbeddedConfig,
    distributed: DistributedConfig,
) -> Result<Running, AppError> {
    let Some(secret_file) = config.jwt_secret_file.clone() else {
        return Err(AppError::Role(
            "the distributed mode needs the shared token-signing keys: give a secret file"
                .to_owned(),
        ));
    };
    let secret = std::fs::read(&secret_file).map_err(|source| AppError::DataDir {
        path: secret_file,
        source,
    })?;
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    if distributed.with_relay {
        let pool = distributed.postgres.pool().clone();
        let (kafka, token) = (distributed.kafka.clone(), shutdown.clone());
        let relay = RelayConfig {
            latency: distributed.relay_latency.clone(),
            ..RelayConfig::default()
        };
        tasks.spawn(async move {
            let (status, _) = tokio::sync::watch::channel(RelayStatus::default());
            run_relay(pool, kafka, relay, status, token)
                .await
                .map_err(|e| AppError::Role(format!("relay: {e}")))
        });
    }
    let read = ReadModels::distributed(
        distributed.postgres.pool().clone(),
        distributed.mongo.clone(),
    )
    .await?;
    let bus = UpdateBus::new(config.update_buffer);
    let (updates_positioned, updates_ready) = oneshot::channel();
    {
        let (kafka, feed, token) = (distributed.kafka.clone(), bus.clone(), shutdown.clone());
        tasks.spawn(async move {
            run_update_feed(kafka, feed, updates_positioned, token)
                .await
                .map_err(AppError::Role)
        });
    }
    // Typing and presence travel between instances on their own short-lived topic.
    let signals = KafkaSignals::new(&distributed.kafka)
        .map_err(|e| AppError::Role(format!("typing and presence: {e}")))?;
    let hub = Ephemeral::new(config.ephemeral.clone(), Arc::new(signals));
    let (signals_positioned, signals_ready) = oneshot::channel();
    {
        let (kafka, hub, token) = (distributed.kafka.clone(), hub.clone(), shutdown.clone());
        tasks.spawn(async move {
            run_signal_feed(kafka, hub, signals_positioned, token)
                .await
                .map_err(AppError::Role)
        });
    }
    // "From the moment the instance starts" means from when this function returns: an update
    // published after that reaches every subscriber of this instance.
    wait_positioned(topics::UPDATES, updates_ready).await;
    wait_positioned(topics::EPHEMERAL, signals_ready).await;
    start_app(
        config,
        AppParts {
            store: EventStoreBackend::Postgres(distributed.postgres),
            events: None,
            read,
            projectors: Projectors::default(),
            secret,
            tasks,
            shutdown,
            bus,
            hub,
        },
    )
    .await
}

/// What the two modes hand the API once their stores and feeds are in place.
struct AppParts {
    store: EventStoreBackend,
    events: Option<SqliteEventStore>,
    read: ReadModels,
    projectors: Projectors,
    /// The token-signing keyring or secret.
    secret: Vec<u8>,
    tasks: JoinSet<Result<(), AppError>>,
    shutdown: CancellationToken,
    /// What subscriptions listen to.
    bus: UpdateBus,
    /// Typing and presence.
    hub: Arc<Ephemeral>,
}

fn prepare_data_dir(config: &EmbeddedConfig) -> Result<(), AppError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::DataDir {
        path: config.data_dir.clone(),
        source,
    })
}

async fn start_app(config: EmbeddedConfig, parts: AppParts) -> Result<Running, AppError> {
    let AppParts {
        store,
        events,
        read,
        projectors,
        secret,
        mut tasks,
        shutdown,
        bus,
        hub,
    } = parts;
    {
        let (hub, token) = (hub.clone(), shutdown.clone());
        tasks.spawn(async move {
            hub.run(token).await;
            Ok(())
        });
    }
    let keyring = Keyring::from_bytes(&secret).map_err(|error| {
        AppError::Role(format!("the token-signing keys cannot be used: {error}"))
    })?;
    let tokens = TokenIssuer::new(&keyring, config.access_token_ttl, DEFAULT_REFRESH_TTL).map_err(
        |error| AppError::Role(format!("the token-signing keys cannot be used: {error}")),
    )?;
    let api = ApiState {
        commands: Arc::new(ChatCommands::new(store)),
        read: read.clone(),
        updates: bus,
        ephemeral: hub,
        tokens: tokens.clone(),
        limits: config.api.clone(),
        shutdown: shutdown.clone(),
    };
    let external = match config.oidc.clone() {
        None => None,
        Some(oidc) => {
            let issuer = ExternalIssuer::load(oidc)
                .await
                .map_err(|error| AppError::Role(error.to_string()))?;
            issuer.spawn_refresh(shutdown.clone());
            Some(issuer)
        }
    };
    let auth = Authenticator::new(tokens, external, api.commands.clone());
    let schema = build_schema(api.clone());
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    let connections = Connections::new(&config.http);
    let audiences = connections.audiences().clone();
    let app = router(
        HttpState {
            schema,
            auth,
            api,
            watermarks: projectors.watermarks,
            consistency_wait: config.consistency_wait,
            ready,
            connections,
        },
        &config.http,
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(AppError::Serve)?;
    let grace = config.shutdown_grace;
    let token = shutdown.clone();
    tasks.spawn(async move {
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(token.clone().cancelled_owned());
        let server = tokio::spawn(async move { server.await });
        tokio::pin!(server);
        let result = tokio::select! {
            result = &mut server => result,
            _ = async {
                token.cancelled().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "connections still open after the grace period; closing them");
                server.abort();
                return Ok(());
            }
        };
        match result {
            Ok(served) => served.map_err(AppError::Serve),
            Err(join) => Err(AppError::Serve(std::io::Error::other(join.to_string()))),
        }
    });
    ready_tx.send_replace(true);
    tracing::info!(%local_addr, "aether is serving GraphQL at /graphql");
    Ok(Running {
        local_addr,
        shutdown,
        projectors: projectors.controls,
        audiences,
        tasks,
        events,
        read,
    })
}
