//! `aether`: the AetherConnect binary. Parses configuration, sets up logging and runs a role.

mod keys;
mod ops;
mod projections;
mod projections_embedded;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aether_cli::moderator::ModeratorConfig;
use aether_cli::roles::{start_embedded, EmbeddedConfig};
use aether_cli::tracing_otel::{self, Exporter, WithTraceIds};
use aether_projections::stream::ProjectorOptions;
use aether_query_api::ephemeral::EphemeralLimits;
use aether_query_api::rate::{Rate, RateLimits};
use aether_query_api::ApiLimits;
use aether_realtime_edge::http::{AllowedOrigins, HttpLimits};
use aether_realtime_edge::oidc::{JwksSource, OidcConfig};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// mimalloc instead of glibc's malloc: with thousands of subscriptions each allocating and
/// freeing small buffers per update, glibc's allocator (its free-list consolidation above all)
/// took about 30 % of the CPU of the realtime benchmark's product phase.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// AetherConnect: an event-sourced chat backend.
///
/// Commands append domain events to an event store; projectors build read models from the log;
/// a GraphQL API serves queries, mutations and subscriptions.
#[derive(Debug, Parser)]
#[command(name = "aether", version, propagate_version = true)]
struct Cli {
    /// Log format: `pretty` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "AETHER_LOG_FORMAT")]
    log_format: LogFormat,

    /// Log filter, e.g. `info` or `aether=debug,sqlx=warn` (RUST_LOG syntax).
    #[arg(long, global = true, default_value = "info", env = "AETHER_LOG")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProjectorsAtStart {
    /// Apply events as they arrive.
    Running,
    /// Start with every projector paused: events are stored but read models do not move.
    Paused,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up and matched right away: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run every role in one process on SQLite files under the data directory (no services
    /// needed): event store, projectors, read models and the GraphQL API at /graphql.
    Dev(DevArgs),

    /// Run against PostgreSQL, Kafka and MongoDB: one role per process with
    /// `--role api|edge|relay|projector`, or the API and the relay together with `--role all`.
    Serve(serve::ServeArgs),

    /// Create or upgrade the PostgreSQL event store's tables.
    Migrate(ops::MigrateArgs),

    /// Manage Kafka topics.
    #[command(subcommand)]
    Kafka(ops::KafkaCommand),

    /// Check that stored history was not rewritten.
    #[command(subcommand)]
    Audit(ops::AuditCommand),

    /// Read the public event log, e.g. to feed analytics.
    #[command(subcommand)]
    Log(ops::LogCommand),

    /// Manage the token-signing keyring: generate, rotate, retire, list, jwks.
    #[command(subcommand)]
    Keys(keys::KeysCommand),

    /// Watch, pause, rebuild and repair the distributed projections.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),

    /// Print the public GraphQL schema (SDL), the same as the committed `schema.graphql`.
    Schema,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Directory for the SQLite files and the token-signing secret (created if missing).
    #[arg(long, default_value = "./data", env = "AETHER_DATA_DIR")]
    pub(crate) data_dir: PathBuf,

    /// Address to serve HTTP and WebSocket on. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080", env = "AETHER_LISTEN")]
    pub(crate) listen: SocketAddr,

    /// Whether projectors apply events from the start.
    #[arg(long, value_enum, default_value_t = ProjectorsAtStart::Running, env = "AETHER_PROJECTORS")]
    projectors: ProjectorsAtStart,

    /// Events a projector applies per read-model transaction.
    #[arg(long, default_value_t = 500, env = "AETHER_PROJECTOR_BATCH")]
    pub(crate) projector_batch: usize,

    /// Deepest GraphQL selection accepted.
    #[arg(long, default_value_t = 12, env = "AETHER_MAX_QUERY_DEPTH")]
    max_query_depth: usize,

    /// Highest cost one GraphQL operation may have: each field counts 1 plus what it selects,
    /// and a page (`first`/`last`, the page maximum when not given) counts its selection once
    /// per item it asks for.
    #[arg(long, default_value_t = 1000, env = "AETHER_MAX_QUERY_COMPLEXITY")]
    max_query_complexity: usize,

    /// Most aliased fields one GraphQL document may hold.
    #[arg(long, default_value_t = 30, env = "AETHER_MAX_QUERY_ALIASES")]
    max_query_aliases: usize,

    /// Most items one page (`first`/`last`) may ask for.
    #[arg(long, default_value_t = 100, env = "AETHER_MAX_PAGE_SIZE")]
    max_page_size: i64,

    /// Most distinct emoji one message may carry as reactions (reacting with one more is
    /// refused with CONFLICT; joining an emoji already there never is).
    #[arg(long, default_value_t = ApiLimits::default().max_reaction_kinds, env = "AETHER_MAX_REACTIONS_PER_MESSAGE")]
    max_reactions_per_message: usize,

    /// Most messages one channel or conversation may have pinned (pinning one more is refused
    /// with CONFLICT).
    #[arg(long, default_value_t = ApiLimits::default().max_pins, env = "AETHER_MAX_PINS_PER_CHANNEL")]
    max_pins_per_channel: usize,

    /// Mutations one signed-in user may send: RATE/BURST (per second / at once) or `off`.
    #[arg(long, default_value_t = RateLimits::default().mutations_per_user, env = "AETHER_RATE_MUTATIONS_PER_USER")]
    rate_mutations_per_user: Rate,

    /// Mutations one client address may send: RATE/BURST or `off`.
    #[arg(long, default_value_t = RateLimits::default().mutations_per_ip, env = "AETHER_RATE_MUTATIONS_PER_IP")]
    rate_mutations_per_ip: Rate,

    /// Sign-in and registration attempts one client address may make: RATE/BURST or `off`.
    #[arg(long, default_value_t = RateLimits::default().logins_per_ip, env = "AETHER_RATE_LOGINS_PER_IP")]
    rate_logins_per_ip: Rate,

    /// Subscriptions one WebSocket connection may start: RATE/BURST or `off`.
    #[arg(long, default_value_t = RateLimits::default().subscribes_per_connection, env = "AETHER_RATE_SUBSCRIBES_PER_CONNECTION")]
    rate_subscribes_per_connection: Rate,

    /// Sign-in attempts for one username, from anywhere: RATE/BURST or `off`.
    #[arg(long, default_value_t = RateLimits::default().logins_per_username, env = "AETHER_RATE_LOGINS_PER_USERNAME")]
    rate_logins_per_username: Rate,

    /// Failed sign-ins one client address may make, whichever accounts they tried: RATE/BURST
    /// or `off`. Once spent, every sign-in from the address waits (password spraying).
    #[arg(long, default_value_t = RateLimits::default().failed_logins_per_ip, env = "AETHER_RATE_FAILED_LOGINS_PER_IP")]
    rate_failed_logins_per_ip: Rate,

    /// Query cost one signed-in user may spend: RATE/BURST (cost per second / at once) or
    /// `off`. A query costs what --max-query-complexity measures (a page counts its selection
    /// once per item).
    #[arg(long, default_value_t = RateLimits::default().query_cost_per_user, env = "AETHER_RATE_QUERY_COST_PER_USER")]
    rate_query_cost_per_user: Rate,

    /// Query cost one client address may spend, signed in or not: RATE/BURST or `off`.
    #[arg(long, default_value_t = RateLimits::default().query_cost_per_ip, env = "AETHER_RATE_QUERY_COST_PER_IP")]
    rate_query_cost_per_ip: Rate,

    /// Largest query or mutation result sent, in bytes; a larger one is replaced by a
    /// BAD_USER_INPUT error.
    #[arg(long, default_value_t = aether_realtime_edge::http::DEFAULT_MAX_RESPONSE_BYTES, env = "AETHER_MAX_RESPONSE_BYTES")]
    max_response_bytes: usize,

    /// Reverse proxies whose X-Forwarded-For header is believed (comma-separated addresses):
    /// requests and WebSockets through them are limited per the address the header names.
    /// None by default: the connection's own address counts.
    #[arg(long, value_delimiter = ',', env = "AETHER_TRUSTED_PROXIES")]
    trusted_proxies: Vec<std::net::IpAddr>,

    /// Largest accepted HTTP request body, in bytes.
    #[arg(long, default_value_t = 256 * 1024, env = "AETHER_MAX_BODY_BYTES")]
    max_body_bytes: usize,

    /// WebSocket connections one instance holds at most; more are refused with HTTP 503.
    #[arg(long, default_value_t = 100_000, env = "AETHER_MAX_CONNECTIONS")]
    max_connections: usize,

    /// Largest WebSocket message a client may send, in bytes; a larger one closes the connection.
    #[arg(long, default_value_t = 64 * 1024, env = "AETHER_MAX_WS_MESSAGE_BYTES")]
    max_ws_message_bytes: usize,

    /// Milliseconds a message to a WebSocket client may wait to be sent; a client that reads
    /// nothing for this long is disconnected.
    #[arg(long, default_value_t = 10_000, env = "AETHER_WS_SEND_TIMEOUT_MS")]
    ws_send_timeout_ms: u64,

    /// Milliseconds a WebSocket may stay open without `connection_init` before it is closed
    /// (4408).
    #[arg(long, default_value_t = 10_000, env = "AETHER_WS_INIT_TIMEOUT_MS")]
    ws_init_timeout_ms: u64,

    /// Bytes each WebSocket connection reads into at once (a larger client message still
    /// arrives whole); small, because every idle connection keeps it.
    #[arg(long, default_value_t = aether_realtime_edge::http::DEFAULT_WS_READ_BUFFER_BYTES, env = "AETHER_WS_READ_BUFFER_BYTES")]
    ws_read_buffer_bytes: usize,

    /// Update payloads (channel events, typing, presence) kept to share between subscribers
    /// with the same subscription document: each update is serialized once per such audience,
    /// not once per subscriber.
    #[arg(long, default_value_t = aether_realtime_edge::audience::DEFAULT_SHARED_PAYLOADS, env = "AETHER_WS_SHARED_PAYLOADS")]
    ws_shared_payloads: usize,

    /// Subscriptions one WebSocket connection may hold at once.
    #[arg(
        long,
        default_value_t = 100,
        env = "AETHER_MAX_SUBSCRIPTIONS_PER_CONNECTION"
    )]
    max_subscriptions_per_connection: usize,

    /// Updates of its channel a slow subscriber may fall behind before it re-reads the read
    /// model.
    #[arg(long, default_value_t = aether_projections::updates::DEFAULT_BUS_CAPACITY, env = "AETHER_UPDATE_BUFFER")]
    update_buffer: usize,

    /// Seconds an access token is valid.
    #[arg(long, default_value_t = 900, env = "AETHER_ACCESS_TOKEN_TTL")]
    access_token_ttl: u64,

    /// Ended sessions (sign-outs, reused refresh tokens) remembered at most, each for one
    /// access-token lifetime: their access tokens are refused and their WebSockets closed.
    #[arg(long, default_value_t = aether_query_api::revocation::DEFAULT_MAX_REVOKED, env = "AETHER_MAX_REVOKED_SESSIONS")]
    max_revoked_sessions: usize,

    /// Milliseconds a typing signal holds unless renewed.
    #[arg(long, default_value_t = 6000, env = "AETHER_TYPING_TTL_MS")]
    typing_ttl_ms: u64,

    /// Shortest milliseconds between two forwarded typing signals of one user in one channel.
    #[arg(long, default_value_t = 1000, env = "AETHER_TYPING_INTERVAL_MS")]
    typing_interval_ms: u64,

    /// Milliseconds between an instance's presence reports while users are connected; a report
    /// older than three of these no longer counts.
    #[arg(long, default_value_t = 10_000, env = "AETHER_PRESENCE_HEARTBEAT_MS")]
    presence_heartbeat_ms: u64,

    /// Milliseconds without any live report before a user shows offline.
    #[arg(long, default_value_t = 3000, env = "AETHER_PRESENCE_OFFLINE_GRACE_MS")]
    presence_offline_grace_ms: u64,

    /// Seconds to wait for open requests and connections after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10, env = "AETHER_SHUTDOWN_GRACE")]
    shutdown_grace: u64,

    /// Also accept access tokens of this external OpenID Connect issuer (its exact `iss`).
    #[arg(long, env = "AETHER_OIDC_ISSUER", requires_all = ["oidc_audience", "oidc_jwks"])]
    oidc_issuer: Option<String>,

    /// The audience the external issuer's tokens must name in `aud` (this deployment's client id).
    #[arg(long, env = "AETHER_OIDC_AUDIENCE", requires = "oidc_issuer")]
    oidc_audience: Option<String>,

    /// The external issuer's public keys: a JWKS file, or an http(s) URL.
    #[arg(long, env = "AETHER_OIDC_JWKS", requires = "oidc_issuer")]
    oidc_jwks: Option<String>,

    /// Seconds between two reads of the external issuer's JWKS.
    #[arg(long, default_value_t = 300, env = "AETHER_OIDC_JWKS_REFRESH_SECONDS")]
    oidc_jwks_refresh_seconds: u64,

    /// Seconds of clock difference tolerated on the external issuer's `exp` and `nbf`.
    #[arg(long, default_value_t = 30, env = "AETHER_OIDC_LEEWAY_SECONDS")]
    oidc_leeway_seconds: u64,

    /// Serve the web client's built files from this directory at `/` (the API stays at
    /// `/graphql`). `aether dev` serves `web/dist` when it exists and this is not given.
    #[arg(long, env = "AETHER_WEB_DIR")]
    pub(crate) web_dir: Option<PathBuf>,

    /// Browser origins whose pages may call the API (CORS): `none`, `localhost` (pages served
    /// from this machine, any port), `*`, or comma-separated origins such as
    /// `https://chat.example.com`. Default: `localhost` for `aether dev`, `none` for
    /// `aether serve`. The web client served at `/` needs none: it is the API's own origin.
    #[arg(long, env = "AETHER_CORS_ORIGINS")]
    pub(crate) cors_origins: Option<AllowedOrigins>,

    /// Run the moderator (the model stage of moderation) in `aether dev`. Off by default: the
    /// classifier head built in, trained on a few hundred labelled sentences, also hides some
    /// harmless messages (docs/moderation.md). Without the model's files it reports them
    /// missing and moderates nothing.
    #[arg(long, env = "AETHER_MODERATOR")]
    moderator: bool,

    /// The moderator's model: the all-MiniLM-L6-v2 folder `scripts/fetch-model.sh` fills.
    /// Default: $AETHER_MODEL_DIR, else ~/.cache/aether/models/all-MiniLM-L6-v2.
    #[arg(long, env = "AETHER_MODEL_DIR")]
    model_dir: Option<PathBuf>,

    /// The moderator's classifier head (`train-head` writes one); the head built into the
    /// binary by default.
    #[arg(long, env = "AETHER_MODERATION_HEAD")]
    moderation_head: Option<PathBuf>,

    /// Most messages the moderator scores in one forward pass of the model.
    #[arg(long, default_value_t = 16, env = "AETHER_MODERATION_BATCH")]
    moderation_batch: usize,

    /// Milliseconds the moderator waits for more messages once one arrived, before it scores
    /// what it has.
    #[arg(long, default_value_t = 20, env = "AETHER_MODERATION_LINGER_MS")]
    moderation_linger_ms: u64,

    /// The most of its time the moderator spends scoring, 0.05 to 1: below 1 it rests after
    /// each forward pass (0.25: three times as long as the pass took), leaving the cores it
    /// shares with delivery free; moderation then lags under a burst. Default: 0.25 in
    /// `aether dev`, where the moderator shares the cores with delivery; 1 for the
    /// `moderator` role, on cores of its own.
    #[arg(long, env = "AETHER_MODERATION_CPU_SHARE",
          value_parser = aether_cli::moderator::parse_cpu_share)]
    moderation_cpu_share: Option<f64>,

    /// Threads the moderator's model runs on; 0 for every core. Default: 1 in `aether dev`
    /// (the other cores stay with delivery while the model scores), 0 for the `moderator`
    /// role.
    #[arg(long, env = "AETHER_MODERATION_THREADS")]
    moderation_threads: Option<usize>,
}

/// Where the moderator runs, which decides its default share of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ModeratorHome {
    /// In `aether dev`, beside delivery: one thread, a quarter of its time. Measured at 1,000
    /// messages/s to 1,000 subscribers on 2 cores: delivery's p99 118 ms against 121 ms
    /// without the moderator, where every core at full share made it 767 ms.
    Embedded,
    /// The `moderator` role: a process on cores of its own.
    OwnProcess,
}

impl DevArgs {
    /// The moderator's settings from the flags.
    pub(crate) fn moderator_config(&self, home: ModeratorHome) -> ModeratorConfig {
        let defaults = ModeratorConfig::default();
        let (cpu_share, threads) = match home {
            ModeratorHome::Embedded => (0.25, 1),
            ModeratorHome::OwnProcess => (defaults.cpu_share, defaults.threads),
        };
        ModeratorConfig {
            model_dir: self.model_dir.clone().unwrap_or(defaults.model_dir),
            head: self.moderation_head.clone(),
            max_batch: self.moderation_batch.max(1),
            linger: Duration::from_millis(self.moderation_linger_ms),
            cpu_share: self.moderation_cpu_share.unwrap_or(cpu_share),
            threads: self.moderation_threads.unwrap_or(threads),
            ..defaults
        }
    }

    pub(crate) fn into_config(self) -> EmbeddedConfig {
        let moderator = self
            .moderator
            .then(|| self.moderator_config(ModeratorHome::Embedded));
        EmbeddedConfig {
            moderator,
            data_dir: self.data_dir,
            listen: self.listen,
            projector: ProjectorOptions {
                batch_size: self.projector_batch.max(1),
                ..ProjectorOptions::default()
            },
            projectors_paused: self.projectors == ProjectorsAtStart::Paused,
            api: ApiLimits {
                max_depth: self.max_query_depth,
                max_complexity: self.max_query_complexity,
                max_page_size: self.max_page_size.max(1),
                max_aliases: self.max_query_aliases,
                max_reaction_kinds: self.max_reactions_per_message.max(1),
                max_pins: self.max_pins_per_channel.max(1),
                rates: RateLimits {
                    mutations_per_user: self.rate_mutations_per_user,
                    mutations_per_ip: self.rate_mutations_per_ip,
                    logins_per_ip: self.rate_logins_per_ip,
                    logins_per_username: self.rate_logins_per_username,
                    failed_logins_per_ip: self.rate_failed_logins_per_ip,
                    query_cost_per_user: self.rate_query_cost_per_user,
                    query_cost_per_ip: self.rate_query_cost_per_ip,
                    subscribes_per_connection: self.rate_subscribes_per_connection,
                    ..RateLimits::default()
                },
                ..ApiLimits::default()
            },
            http: HttpLimits {
                max_body_bytes: self.max_body_bytes,
                max_connections: self.max_connections,
                max_subscriptions_per_connection: self.max_subscriptions_per_connection,
                max_ws_message_bytes: self.max_ws_message_bytes,
                ws_send_timeout: Duration::from_millis(self.ws_send_timeout_ms.max(1)),
                ws_init_timeout: Duration::from_millis(self.ws_init_timeout_ms.max(1)),
                ws_read_buffer_bytes: self.ws_read_buffer_bytes.max(1),
                shared_payloads: self.ws_shared_payloads.max(1),
                trusted_proxies: self.trusted_proxies,
                max_response_bytes: self.max_response_bytes.max(1),
                allowed_origins: self.cors_origins.unwrap_or(AllowedOrigins::Localhost),
            },
            update_buffer: self.update_buffer,
            ephemeral: EphemeralLimits {
                typing_ttl: Duration::from_millis(self.typing_ttl_ms.max(1)),
                typing_interval: Duration::from_millis(self.typing_interval_ms),
                heartbeat: Duration::from_millis(self.presence_heartbeat_ms.max(100)),
                offline_grace: Duration::from_millis(self.presence_offline_grace_ms),
                ..EphemeralLimits::default()
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            access_token_ttl: Duration::from_secs(self.access_token_ttl),
            max_revoked_sessions: self.max_revoked_sessions.max(1),
            web_dir: self.web_dir,
            oidc: match (self.oidc_issuer, self.oidc_audience, self.oidc_jwks) {
                (Some(issuer), Some(audience), Some(jwks)) => Some(OidcConfig {
                    issuer,
                    audience,
                    jwks: JwksSource::parse(&jwks),
                    refresh: Duration::from_secs(self.oidc_jwks_refresh_seconds.max(1)),
                    leeway: Duration::from_secs(self.oidc_leeway_seconds),
                }),
                _ => None,
            },
            ..EmbeddedConfig::default()
        }
    }
}

/// Servers log to standard output (for a log collector); operator commands log to standard
/// error, so their standard output stays what they print (JSON, JSON lines, tables).
///
/// A process that serves (`service` is its name in traces) also exports its spans when an
/// OpenTelemetry endpoint is configured (see [`aether_cli::tracing_otel`]); what it returns
/// must be shut down as the process ends, to export the spans still queued.
fn init_tracing(
    format: LogFormat,
    filter: &str,
    to_stderr: bool,
    service: Option<&str>,
) -> anyhow::Result<Option<Exporter>> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    let writer = if to_stderr {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // Lines a flood could repeat without end (the pool's slow-acquire warning) pass at most
    // once per interval.
    let throttled = tracing_subscriber::filter::filter_fn(aether_cli::logging::throttled);
    let registry = tracing_subscriber::registry();
    // Each format makes a subscriber of its own type, and the OpenTelemetry layer is made for
    // that type.
    fn split<L>(made: Option<(L, Exporter)>) -> (Option<L>, Option<Exporter>) {
        match made {
            Some((layer, exporter)) => (Some(layer), Some(exporter)),
            None => (None, None),
        }
    }
    let exporter = match format {
        LogFormat::Pretty => {
            let logs = registry.with(
                tracing_subscriber::fmt::layer()
                    .event_format(WithTraceIds(tracing_subscriber::fmt::format()))
                    .with_writer(writer)
                    .with_filter(filter)
                    .with_filter(throttled),
            );
            let (otel, exporter) = split(match service {
                Some(service) => tracing_otel::layer(service)?,
                None => None,
            });
            logs.with(otel).try_init()?;
            exporter
        }
        LogFormat::Json => {
            let logs = registry.with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(WithTraceIds(
                        tracing_subscriber::fmt::format().json().flatten_event(true),
                    ))
                    .with_writer(writer)
                    .with_filter(filter)
                    .with_filter(throttled),
            );
            let (otel, exporter) = split(match service {
                Some(service) => tracing_otel::layer(service)?,
                None => None,
            });
            logs.with(otel).try_init()?;
            exporter
        }
    };
    Ok(exporter)
}

/// Cancels `token` on the first SIGINT or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => tracing::info!("interrupted; shutting down"),
            _ = terminate => tracing::info!("terminated; shutting down"),
        }
        token.cancel();
    });
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(mut args) => {
            // The client `bash scripts/dev.sh` builds, when run from the repository root.
            let built = PathBuf::from("web/dist");
            if args.web_dir.is_none() && built.join("index.html").is_file() {
                args.web_dir = Some(built);
            }
            let running = start_embedded(args.into_config()).await?;
            println!(
                "aether dev: GraphQL at http://{}/graphql",
                running.local_addr
            );
            cancel_on_signal(running.shutdown.clone());
            running.wait().await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Serve(args) => {
            let shutdown = CancellationToken::new();
            cancel_on_signal(shutdown.clone());
            serve::serve(args, shutdown).await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Migrate(args) => ops::migrate(args).await,
        Command::Kafka(command) => ops::kafka(command).await,
        Command::Audit(command) => {
            if ops::audit(command).await? {
                Ok(())
            } else {
                Err(HistoryRewritten.into())
            }
        }
        Command::Log(command) => ops::log(command).await,
        Command::Projections(command) => projections::run(command).await,
        Command::Keys(command) => keys::run(command),
        Command::Schema => {
            print!("{}", aether_query_api::sdl());
            Ok(())
        }
    }
}

/// `aether audit verify` found a broken chain: exit 1 after printing where.
#[derive(Debug, thiserror::Error)]
#[error("the event history does not match its hash chain")]
struct HistoryRewritten;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let to_stderr = !matches!(cli.command, Command::Dev(_) | Command::Serve(_));
    let service = match &cli.command {
        Command::Dev(_) => Some(tracing_otel::service_name("dev", None)),
        Command::Serve(args) => Some(args.service_name()),
        _ => None,
    };
    let exporter = match init_tracing(cli.log_format, &cli.log, to_stderr, service.as_deref()) {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("aether: invalid log or tracing settings: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome = run(cli).await;
    if let Some(exporter) = exporter {
        // Waits for the last export, on a thread that may block.
        let _ = tokio::task::spawn_blocking(move || exporter.shutdown()).await;
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<projections::Refused>() => {
            eprintln!("aether: {error:#}");
            ExitCode::from(2)
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "aether failed");
            eprintln!("aether: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// The long flags `aether PATH… --help` lists.
    fn flags(path: &[&str]) -> Vec<String> {
        let mut command = super::Cli::command();
        command.build();
        let mut current = &command;
        for name in path {
            current = current
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"));
        }
        current
            .get_arguments()
            .filter_map(|arg| arg.get_long().map(str::to_owned))
            .collect()
    }

    #[test]
    fn each_command_offers_only_the_flags_it_uses() {
        // Producer settings: only where something publishes to Kafka.
        let producing = ["kafka-linger-ms", "kafka-max-in-flight"];
        for path in [
            &["projections", "rebuild"][..],
            &["projections", "list"],
            &["log", "replay"],
            &["kafka", "init"],
            &["migrate"],
        ] {
            let flags = flags(path);
            for flag in producing {
                assert!(!flags.iter().any(|f| f == flag), "{path:?} offers --{flag}");
            }
            assert!(
                !flags.iter().any(|f| f == "postgres-group-commit"),
                "{path:?} offers --postgres-group-commit"
            );
        }
        let serve = flags(&["serve"]);
        for flag in producing {
            assert!(serve.iter().any(|f| f == flag), "serve lacks --{flag}");
        }
    }
}
