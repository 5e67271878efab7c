//! The `relay` role: publishes the PostgreSQL outbox to Kafka in commit order (one active
//! instance; others stand by), with `/metrics`, `/healthz` and `/readyz` on its listen address.

use std::net::SocketAddr;

use aether_commands::relay::{run_relay, RelayConfig, RelayStatus};
use aether_kafka::KafkaConfig;
use aether_realtime_edge::http::health_router;
use anyhow::Context;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Starts the relay and its health and metrics endpoint in `tasks`; returns where the endpoint
/// listens.
pub async fn start_relay(
    pool: PgPool,
    kafka: KafkaConfig,
    config: RelayConfig,
    listen: SocketAddr,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<SocketAddr> {
    crate::telemetry::recorder();
    let (status, readiness) = tokio::sync::watch::channel(RelayStatus::default());
    let token = shutdown.clone();
    tasks.spawn(async move {
        run_relay(pool, kafka, config, status, token)
            .await
            .context("relay failed")
    });
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            crate::telemetry::upkeep(token).await;
            Ok(())
        });
    }
    {
        let (mut changes, token) = (readiness.clone(), shutdown.clone());
        let ready = crate::telemetry::ready("relay");
        tasks.spawn(async move {
            loop {
                let status = changes.borrow_and_update().clone();
                ready.set(if !status.active || status.broker_ok {
                    1.0
                } else {
                    0.0
                });
                tokio::select! {
                    _ = token.cancelled() => break,
                    changed = changes.changed() => if changed.is_err() { break },
                }
            }
            ready.set(0.0);
            Ok(())
        });
    }
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
    let addr = super::serve_health(router, listen, shutdown, tasks).await?;
    Ok(addr)
}
