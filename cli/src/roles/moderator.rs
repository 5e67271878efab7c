//! The `moderator` role: the model stage of moderation on the Kafka log (the message events
//! topic), its checkpoint and dead letters in PostgreSQL (schema `moderator_v1`), its verdicts
//! written as commands to the event store; `/metrics`, `/healthz` and `/readyz` on its listen
//! address. `/readyz` answers 503 with the reason while the model loads or when it cannot be
//! used; `/healthz` answers as long as the process runs.
//!
//! Run one instance: a second one would score the same messages again (its verdicts would
//! record nothing, but the work is wasted).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aether_commands::backend::EventStoreBackend;
use aether_commands::postgres::PgEventStore;
use aether_commands::ChatCommands;
use aether_kafka::KafkaConfig;
use aether_projections::stream::postgres::PgStore;
use aether_projections::stream::reactor::{Bookkeeping, MODERATOR};
use aether_projections::stream::registry::Registry;
use aether_projections::stream::role::follow_paused;
use aether_projections::stream::KafkaSource;
use aether_realtime_edge::http::health_router;
use aether_schemas::topics;
use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::moderator::{ModelState, ModeratorConfig};

/// Starts the moderator and its health and metrics endpoint in `tasks`; returns where the
/// endpoint listens and where the model stands.
pub async fn start_moderator(
    events: PgEventStore,
    kafka: KafkaConfig,
    config: ModeratorConfig,
    listen: SocketAddr,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<(SocketAddr, watch::Receiver<ModelState>)> {
    crate::telemetry::recorder();
    let store = Arc::new(PgStore::new(
        events.pool().clone(),
        Arc::new(Bookkeeping::moderator()),
        1,
    ));
    // Paused and resumed by `aether projections pause|resume moderator`, like a projector.
    let registry = Registry::open(events.pool().clone()).await?;
    let starts_paused = registry.entry(MODERATOR).await?.paused;
    let (pause, paused) = watch::channel(starts_paused);
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            follow_paused(registry, MODERATOR, pause, token).await;
            Ok(())
        });
    }
    let source = KafkaSource::new(&kafka, &[topics::MESSAGE_EVENTS])?;
    let commands = Arc::new(ChatCommands::new(EventStoreBackend::Postgres(events)));
    let (state, model) = watch::channel(ModelState::Loading);
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            crate::telemetry::upkeep(token).await;
            Ok(())
        });
    }
    let failed = Arc::new(Mutex::new(None::<String>));
    let ready = crate::telemetry::ready("moderator");
    {
        let (failed, token) = (failed.clone(), shutdown.clone());
        let run =
            crate::moderator::run(store, source.into(), commands, config, state, paused, token);
        tasks.spawn(async move {
            let outcome = run.await;
            if let Err(error) = &outcome {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
            }
            outcome.context("the moderator failed")
        });
    }
    {
        // The readiness gauge follows the model, like `/readyz`.
        let (mut changes, token, ready) = (model.clone(), shutdown.clone(), ready.clone());
        tasks.spawn(async move {
            loop {
                let (is_ready, _) = changes.borrow_and_update().readiness();
                ready.set(if is_ready { 1.0 } else { 0.0 });
                tokio::select! {
                    _ = token.cancelled() => break,
                    changed = changes.changed() => if changed.is_err() { break },
                }
            }
            ready.set(0.0);
            Ok(())
        });
    }
    let health = {
        let model = model.clone();
        health_router(move || {
            let failure = failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match failure {
                Some(failure) => (
                    false,
                    serde_json::json!({ "ready": false, "reason": failure }),
                ),
                None => model.borrow().readiness(),
            }
        })
    };
    let addr = super::serve_health(health, listen, shutdown, tasks).await?;
    Ok((addr, model))
}
