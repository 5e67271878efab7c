//! The `api` role of the distributed mode (also `edge`, and `all` with the relay in the same
//! process): a stateless GraphQL instance over the PostgreSQL event store, the projector
//! processes' read models and `aether.updates.v1`.

use std::sync::Arc;

use aether_commands::backend::EventStoreBackend;
use aether_commands::postgres::PgEventStore;
use aether_commands::relay::{run_relay, LatencyRecorder, RelayConfig, RelayStatus};
use aether_kafka::KafkaConfig;
use aether_projections::{ReadModels, UpdateBus};
use aether_query_api::ephemeral::Ephemeral;
use aether_realtime_edge::edge::{
    run_revocation_feed, run_signal_feed, run_update_feed, wait_positioned, KafkaSignals,
};
use aether_schemas::topics;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{dev::Projectors, start_app, AppError, AppParts, EmbeddedConfig, Running};

/// Where the distributed API finds its servers.
#[derive(Clone, Debug)]
pub struct DistributedConfig {
    pub postgres: PgEventStore,
    pub kafka: KafkaConfig,
    /// The MongoDB database that keeps the timeline read model; `None` where the deployment
    /// keeps it in PostgreSQL (`--timeline-store postgres`).
    pub mongo: Option<mongodb::Database>,
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
    // Before anything that records: handles made earlier would record nowhere.
    crate::telemetry::recorder();
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
    // Sessions ended on any instance: followed from here on; the ones before are read from the
    // event store as the API starts.
    let revocations = super::revocations(&config);
    let (ends_positioned, ends_ready) = oneshot::channel();
    {
        let (kafka, revocations, token) = (
            distributed.kafka.clone(),
            revocations.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            run_revocation_feed(kafka, revocations, ends_positioned, token)
                .await
                .map_err(AppError::Role)
        });
    }
    // "From the moment the instance starts" means from when this function returns: an update
    // published after that reaches every subscriber of this instance.
    wait_positioned(topics::UPDATES, updates_ready).await;
    wait_positioned(topics::EPHEMERAL, signals_ready).await;
    wait_positioned(topics::IDENTITY_EVENTS, ends_ready).await;
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
            revocations,
        },
    )
    .await
}
