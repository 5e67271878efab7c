//! Metrics of the process: the Prometheus recorder behind the `metrics` facade that every
//! library crate records through, installed once per process, and rendered on each role's
//! own router at `/metrics` (the exporter runs no listener of its own).

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Upper bounds (seconds) of every latency histogram's buckets: from a cached read to a
/// request that waited out a timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the buckets of the moderator's batch sizes (messages per forward pass).
const BATCH_BUCKETS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// How often histogram samples are folded into their buckets between scrapes, so that a
/// process nobody scrapes does not keep every sample.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed (and every metric described) on the first call. Roles
/// call this before they make anything that records, so handles made at start-up record
/// into it; a second role in the same process (the tests) shares it.
pub fn recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            // Durations are histograms with fixed buckets (summaries cannot be aggregated
            // across instances); every metric whose name ends in `_seconds` and is recorded
            // as a histogram uses them.
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(crate::moderator::BATCH_SIZE.to_owned()),
                        &BATCH_BUCKETS,
                    )
                })
                .map(PrometheusBuilder::build_recorder);
            let recorder = match recorder {
                Ok(recorder) => recorder,
                // The buckets are a non-empty constant.
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            handle
        })
        .clone()
}

pub const READY: &str = "aether_ready";

/// The readiness gauge of `role` (`api`, `relay`, `projector`): 1 while `/readyz` of the role
/// would answer 200, 0 otherwise, so an alert can tell a running but useless process.
pub fn ready(role: &'static str) -> metrics::Gauge {
    metrics::gauge!(READY, "role" => role)
}

/// Every metric the process records, described to the recorder (help text and unit).
fn describe() {
    metrics::describe_gauge!(
        READY,
        metrics::Unit::Count,
        "1 while the role can do its work (its /readyz answers 200), 0 otherwise."
    );
    aether_commands::metrics::describe();
    aether_projections::stream::metrics::describe();
    aether_query_api::metrics::describe();
    aether_realtime_edge::metrics::describe();
    crate::moderator::describe();
}

/// `router` with `/metrics`: the process's metrics in the Prometheus text format.
pub fn with_metrics(router: Router) -> Router {
    let handle = recorder();
    router.route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    )
}

/// Folds histogram samples into their buckets every [`UPKEEP_EVERY`] until `shutdown`.
pub async fn upkeep(shutdown: CancellationToken) {
    let handle = recorder();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
        }
    }
}
