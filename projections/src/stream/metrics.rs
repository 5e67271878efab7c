//! What one projector reports: to the process's metrics recorder (the `metrics` facade; the
//! binary installs the Prometheus exporter and serves `/metrics`), labelled with the projection
//! and its version, and as totals of its own for the operator's commands and the tests, which
//! may run several projectors of one projection in a process.
//!
//! Every handle is made once, when the projector starts: recording a batch takes no lookup and
//! no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

pub const EVENTS_APPLIED: &str = "aether_projector_events_applied_total";
pub const EVENTS_IGNORED: &str = "aether_projector_events_ignored_total";
pub const DEAD_LETTERS: &str = "aether_projector_dead_letters_total";
pub const FAILED_BATCHES: &str = "aether_projector_failed_batches_total";
pub const LAG_EVENTS: &str = "aether_projector_lag_events";
pub const LAG_SECONDS: &str = "aether_projector_lag_seconds";
pub const CHECKPOINT_EVENTS: &str = "aether_projector_checkpoint_events";
pub const BATCH_SECONDS: &str = "aether_projector_batch_seconds";

/// Describes the projector metrics to the installed recorder (their help text and units).
pub fn describe() {
    metrics::describe_counter!(
        EVENTS_APPLIED,
        Unit::Count,
        "Events that changed the read model."
    );
    metrics::describe_counter!(
        EVENTS_IGNORED,
        Unit::Count,
        "Duplicate events skipped by the per-aggregate sequence guard."
    );
    metrics::describe_counter!(DEAD_LETTERS, Unit::Count, "Events parked as dead letters.");
    metrics::describe_counter!(
        FAILED_BATCHES,
        Unit::Count,
        "Batches that failed and were retried."
    );
    metrics::describe_gauge!(
        LAG_EVENTS,
        Unit::Count,
        "Events on the log not yet applied."
    );
    metrics::describe_gauge!(
        LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest event not yet applied, 0 when caught up."
    );
    metrics::describe_gauge!(
        CHECKPOINT_EVENTS,
        Unit::Count,
        "Events consumed in all (sum of the checkpoint's next offsets)."
    );
    metrics::describe_histogram!(
        BATCH_SECONDS,
        Unit::Seconds,
        "Time to apply and commit one batch."
    );
}

#[derive(Debug)]
pub struct ProjectorMetrics {
    applied: Counter,
    ignored: Counter,
    parked: Counter,
    failed_batches: Counter,
    lag_events: Gauge,
    lag_seconds: Gauge,
    checkpoint: Gauge,
    batch_seconds: Histogram,
    /// This projector's own totals (the recorder's sum every projector of the same labels).
    applied_total: AtomicU64,
    ignored_total: AtomicU64,
    parked_total: AtomicU64,
    failed_batches_total: AtomicU64,
}

impl ProjectorMetrics {
    /// The metrics of version `version` of projection `projection`. Their series appear (at
    /// zero) as soon as this is made, so a dashboard shows a projector that has done nothing
    /// yet.
    pub fn new(projection: &str, version: i32) -> Self {
        let labels = [
            ("projection", projection.to_owned()),
            ("version", version.to_string()),
        ];
        Self {
            applied: metrics::counter!(EVENTS_APPLIED, &labels),
            ignored: metrics::counter!(EVENTS_IGNORED, &labels),
            parked: metrics::counter!(DEAD_LETTERS, &labels),
            failed_batches: metrics::counter!(FAILED_BATCHES, &labels),
            lag_events: metrics::gauge!(LAG_EVENTS, &labels),
            lag_seconds: metrics::gauge!(LAG_SECONDS, &labels),
            checkpoint: metrics::gauge!(CHECKPOINT_EVENTS, &labels),
            batch_seconds: metrics::histogram!(BATCH_SECONDS, &labels),
            applied_total: AtomicU64::new(0),
            ignored_total: AtomicU64::new(0),
            parked_total: AtomicU64::new(0),
            failed_batches_total: AtomicU64::new(0),
        }
    }

    pub fn batch(&self, applied: usize, ignored: usize, took: Duration) {
        self.applied.increment(applied as u64);
        self.ignored.increment(ignored as u64);
        self.batch_seconds.record(took);
        self.applied_total
            .fetch_add(applied as u64, Ordering::Relaxed);
        self.ignored_total
            .fetch_add(ignored as u64, Ordering::Relaxed);
    }

    pub fn parked(&self, count: usize) {
        if count == 0 {
            return;
        }
        self.parked.increment(count as u64);
        self.parked_total.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn failed_batch(&self) {
        self.failed_batches.increment(1);
        self.failed_batches_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn lag(&self, events: i64, seconds: i64) {
        self.lag_events.set(events as f64);
        self.lag_seconds.set(seconds as f64);
    }

    pub fn checkpoint(&self, total: i64) {
        self.checkpoint.set(total as f64);
    }

    /// Events this projector applied since it started.
    pub fn applied_total(&self) -> u64 {
        self.applied_total.load(Ordering::Relaxed)
    }

    /// Duplicates this projector skipped since it started.
    pub fn ignored_total(&self) -> u64 {
        self.ignored_total.load(Ordering::Relaxed)
    }

    /// Events this projector parked as dead letters since it started.
    pub fn parked_total(&self) -> u64 {
        self.parked_total.load(Ordering::Relaxed)
    }

    /// Batches of this projector that failed and were retried.
    pub fn failed_batches_total(&self) -> u64 {
        self.failed_batches_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_its_own_totals_whatever_the_recorder() {
        let metrics = ProjectorMetrics::new("catalog", 2);
        metrics.batch(10, 1, Duration::from_millis(3));
        metrics.batch(5, 0, Duration::from_millis(200));
        metrics.parked(1);
        metrics.failed_batch();
        assert_eq!(metrics.applied_total(), 15);
        assert_eq!(metrics.ignored_total(), 1);
        assert_eq!(metrics.parked_total(), 1);
        assert_eq!(metrics.failed_batches_total(), 1);
    }
}
