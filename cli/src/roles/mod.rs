//! The roles of the `aether` binary, wired from the library crates, one module each: `dev` runs
//! every role in one process on SQLite files (the embedded mode); `api` runs a stateless
//! GraphQL instance of the distributed mode (the `api`, `edge` and `all` roles of
//! `aether serve`: one process shape); `relay`, `projector` and `moderator` run the
//! distributed mode's background roles. Each role is a library function that takes its config and a shutdown
//! token, so tests start them in-process.

pub mod api;
pub mod dev;
pub mod moderator;
pub mod projector;
pub mod relay;

pub use api::{start_distributed, DistributedConfig};
pub use dev::{start_embedded, ProjectorControl};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aether_commands::auth::{TokenIssuer, DEFAULT_ACCESS_TTL, DEFAULT_REFRESH_TTL};
use aether_commands::backend::EventStoreBackend;
use aether_commands::keys::Keyring;
use aether_commands::{ChatCommands, SqliteEventStore};
use aether_projections::rows::RowError;
use aether_projections::stream::engine::ProjectorFailure;
use aether_projections::stream::ProjectorOptions;
use aether_projections::{ReadModels, UpdateBus};
use aether_query_api::ephemeral::{Ephemeral, EphemeralLimits};
use aether_query_api::revocation::Revocations;
use aether_query_api::{build_schema, ApiLimits, ApiState};
use aether_realtime_edge::audience::{AudienceStats, Audiences};
use aether_realtime_edge::http::{router, Authenticator, Connections, HttpLimits, HttpState};
use aether_realtime_edge::oidc::{ExternalIssuer, OidcConfig};
use aether_realtime_edge::web::with_web_dir;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use dev::Projectors;

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
    /// Ended sessions remembered at most (each for one access-token lifetime).
    pub max_revoked_sessions: usize,
    /// The web client's built files (`web/dist`), served at `/` beside the API; none when
    /// `None`.
    pub web_dir: Option<PathBuf>,
    /// Run the moderator (the model stage of moderation) on the embedded log, in this
    /// process; `None` runs none. Only the embedded mode reads this: the distributed mode runs
    /// it as its own role (`aether serve --role moderator`).
    pub moderator: Option<crate::moderator::ModeratorConfig>,
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
            max_revoked_sessions: aether_query_api::revocation::DEFAULT_MAX_REVOKED,
            web_dir: None,
            moderator: None,
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
    /// Where the embedded moderator's model stands, when it runs in this process.
    pub moderator: Option<tokio::sync::watch::Receiver<crate::moderator::ModelState>>,
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

/// A `Running` dropped without [`Running::stop`] (a caller that gave up half-way, a test that
/// failed) still stops its roles: their loops, some on blocking threads that follow the broker,
/// end with the token, so the runtime that ran them can shut down instead of waiting on them.
impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What the two modes hand the API once their stores and feeds are in place.
pub(crate) struct AppParts {
    pub(crate) store: EventStoreBackend,
    pub(crate) events: Option<SqliteEventStore>,
    pub(crate) read: ReadModels,
    pub(crate) projectors: Projectors,
    /// The token-signing keyring or secret.
    pub(crate) secret: Vec<u8>,
    pub(crate) tasks: JoinSet<Result<(), AppError>>,
    pub(crate) shutdown: CancellationToken,
    /// What subscriptions listen to.
    pub(crate) bus: UpdateBus,
    /// Typing and presence.
    pub(crate) hub: Arc<Ephemeral>,
    /// Ended sessions, fed from the log by the mode.
    pub(crate) revocations: Arc<Revocations>,
}

/// The ended sessions of an instance, empty until the mode's feed and the start-up read fill it.
pub(crate) fn revocations(config: &EmbeddedConfig) -> Arc<Revocations> {
    Arc::new(Revocations::new(
        config.access_token_ttl,
        config.max_revoked_sessions,
    ))
}

pub(crate) fn prepare_data_dir(config: &EmbeddedConfig) -> Result<(), AppError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::DataDir {
        path: config.data_dir.clone(),
        source,
    })
}

pub(crate) async fn start_app(
    config: EmbeddedConfig,
    parts: AppParts,
) -> Result<Running, AppError> {
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
        revocations,
    } = parts;
    // The sessions that ended within an access token's lifetime before this start; the mode's
    // feed (already following the log) applies the ones after.
    match store
        .recent_session_ends(aether_commands::backend::RECENT_SESSION_ENDS)
        .await
    {
        Ok(ends) => {
            for end in ends.iter().rev() {
                revocations.apply(end);
            }
        }
        Err(error) => {
            return Err(AppError::Role(format!(
                "cannot read the ended sessions from the event store: {error}"
            )))
        }
    }
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            crate::telemetry::upkeep(token).await;
            Ok(())
        });
    }
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
        revocations: revocations.clone(),
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
    let auth = Authenticator::new(tokens, external, api.commands.clone(), revocations);
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
            graphiql: config
                .web_dir
                .as_ref()
                .is_some_and(|dir| dir.join("graphiql/index.html").is_file()),
        },
        &config.http,
    );
    let app = crate::telemetry::with_metrics(app);
    let app = match &config.web_dir {
        Some(dir) => {
            tracing::info!(dir = %dir.display(), "serving the web client at /");
            with_web_dir(app, dir)
        }
        None => app,
    };
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
    let ready = crate::telemetry::ready("api");
    ready.set(1.0);
    {
        // A stopping instance drains; it is no longer ready for new work.
        let token = shutdown.clone();
        tasks.spawn(async move {
            token.cancelled().await;
            ready.set(0.0);
            Ok(())
        });
    }
    tracing::info!(%local_addr, "aether is serving GraphQL at /graphql");
    Ok(Running {
        local_addr,
        shutdown,
        projectors: projectors.controls,
        moderator: None,
        audiences,
        tasks,
        events,
        read,
    })
}

/// Serves a background role's health `router`, with `/metrics` beside it, on `listen` until
/// shutdown; returns the address it listens on (port 0 picks one).
pub(crate) async fn serve_health(
    router: axum::Router,
    listen: SocketAddr,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<SocketAddr> {
    use anyhow::Context;

    let router = crate::telemetry::with_metrics(router);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let token = shutdown.clone();
    tasks.spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
            .context("health endpoint failed")
    });
    Ok(addr)
}
