//! The `relay` role: publishes the PostgreSQL outbox to Kafka in commit order (one active
//! instance; others stand by), with `/healthz` and `/readyz` on its listen address.

use std::net::SocketAddr;

use aether_commands::relay::{run_relay, RelayConfig, RelayStatus};
use aether_kafka::KafkaConfig;
use aether_realtime_edge::http::health_router;
use anyhow::Context;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Starts the relay and its health endpoint in `tasks`; returns where the endpoint listens.
pub async fn start_relay(
    pool: PgPool,
    kafka: KafkaConfig,
    config: RelayConfig,
    listen: SocketAddr,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<SocketAddr> {
    let (status, readiness) = tokio::sync::watch::channel(RelayStatus::default());
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
    let listener = tokio::net::TcpListener::bind(listen)
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
