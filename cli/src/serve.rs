//! `aether serve`: the distributed roles, against PostgreSQL and Kafka.

use std::net::SocketAddr;

use aether_commands::relay::{run_relay, RelayConfig, RelayStatus};
use aether_realtime_edge::http::health_router;
use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ops::{KafkaArgs, PostgresArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Publish the PostgreSQL outbox to Kafka (one active instance; others stand by).
    Relay,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The role this process plays.
    #[arg(long, value_enum, env = "AETHER_ROLE")]
    role: Role,

    #[command(flatten)]
    postgres: PostgresArgs,

    #[command(flatten)]
    kafka: KafkaArgs,

    /// Address for /healthz and /readyz (and the API, for roles that serve it).
    #[arg(long, default_value = "127.0.0.1:8081", env = "AETHER_LISTEN")]
    listen: SocketAddr,

    /// Outbox rows the relay publishes per round trip.
    #[arg(long, default_value_t = 1000, env = "AETHER_RELAY_BATCH")]
    relay_batch: i64,
}

pub async fn serve(args: ServeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = args.postgres.connect().await?;
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    match args.role {
        Role::Relay => {
            let (status, readiness) = tokio::sync::watch::channel(RelayStatus::default());
            let config = RelayConfig {
                batch_size: args.relay_batch.max(1),
                ..RelayConfig::default()
            };
            let pool = store.pool().clone();
            let kafka = args.kafka.config();
            let token = shutdown.clone();
            tasks.spawn(async move {
                run_relay(pool, kafka, config, status, token)
                    .await
                    .context("relay failed")
            });
            let router = health_router(move || {
                let status = readiness.borrow().clone();
                let ready = !status.active || status.broker_ok;
                let details = serde_json::json!({
                    "ready": ready,
                    "active": status.active,
                    "brokerReachable": status.broker_ok,
                    "published": status.published,
                });
                (ready, details)
            });
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            println!(
                "aether relay: health at http://{}/readyz",
                listener.local_addr()?
            );
            let token = shutdown.clone();
            tasks.spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await
                    .context("health endpoint failed")
            });
        }
    }
    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let result = joined.context("a role panicked").and_then(|result| result);
        if let Err(error) = result {
            shutdown.cancel();
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    outcome
}
