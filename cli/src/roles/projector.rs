//! The `projector` role: keeps one projection up to date from the Kafka log in its own store,
//! following the registry (pause, resume, switch), with `/metrics`, `/healthz` and `/readyz`
//! on its listen address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aether_kafka::KafkaConfig;
use aether_projections::stream::engine::ProjectorOptions;
use aether_projections::stream::role::{projector, Stores};
use aether_realtime_edge::http::health_router;
use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Starts projector `name` and its metrics endpoint in `tasks`; returns where the endpoint
/// listens.
pub async fn start_projector(
    stores: Stores,
    kafka: KafkaConfig,
    name: &str,
    options: ProjectorOptions,
    listen: SocketAddr,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<SocketAddr> {
    crate::telemetry::recorder();
    let (_live_metrics, run) = projector(&stores, &kafka, name, &options, shutdown)?;
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            crate::telemetry::upkeep(token).await;
            Ok(())
        });
    }
    let halted = Arc::new(Mutex::new(None::<String>));
    {
        let (halted, name) = (halted.clone(), name.to_owned());
        let ready = crate::telemetry::ready("projector");
        ready.set(1.0);
        tasks.spawn(async move {
            let outcome = run.await;
            ready.set(0.0);
            if let Err(error) = &outcome {
                *halted.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
            }
            outcome.with_context(|| format!("projector {name} failed"))
        });
    }
    let health = health_router(move || {
        let failure = halted.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let details = serde_json::json!({ "ready": failure.is_none(), "failure": failure });
        (failure.is_none(), details)
    });
    let addr = super::serve_health(health, listen, shutdown, tasks).await?;
    Ok(addr)
}
