//! Prometheus metrics of one projector, rendered in the text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the batch-latency histogram's buckets.
const BATCH_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug)]
pub struct ProjectorMetrics {
    projection: String,
    version: i32,
    applied: AtomicU64,
    ignored: AtomicU64,
    parked: AtomicU64,
    failed_batches: AtomicU64,
    batches: AtomicU64,
    batch_micros: AtomicU64,
    buckets: [AtomicU64; BATCH_BUCKETS.len()],
    lag_events: AtomicI64,
    lag_seconds: AtomicI64,
    checkpoint: AtomicI64,
}

impl ProjectorMetrics {
    pub fn new(projection: &str, version: i32) -> Self {
        Self {
            projection: projection.to_owned(),
            version,
            applied: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_micros: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            lag_events: AtomicI64::new(0),
            lag_seconds: AtomicI64::new(0),
            checkpoint: AtomicI64::new(0),
        }
    }

    pub fn batch(&self, applied: usize, ignored: usize, took: Duration) {
        self.applied.fetch_add(applied as u64, Ordering::Relaxed);
        self.ignored.fetch_add(ignored as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        for (bound, bucket) in BATCH_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn parked(&self, count: usize) {
        self.parked.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn failed_batch(&self) {
        self.failed_batches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn lag(&self, events: i64, seconds: i64) {
        self.lag_events.store(events, Ordering::Relaxed);
        self.lag_seconds.store(seconds, Ordering::Relaxed);
    }

    pub fn checkpoint(&self, total: i64) {
        self.checkpoint.store(total, Ordering::Relaxed);
    }

    pub fn applied_total(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    pub fn parked_total(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let labels = format!(
            "projection=\"{}\",version=\"{}\"",
            self.projection, self.version
        );
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        };
        counter(
            &mut out,
            "aether_projector_events_applied_total",
            "Events that changed the read model.",
            self.applied.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "aether_projector_events_ignored_total",
            "Duplicate events skipped by the per-aggregate sequence guard.",
            self.ignored.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "aether_projector_dead_letters_total",
            "Events parked as dead letters.",
            self.parked.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "aether_projector_failed_batches_total",
            "Batches that failed and were retried.",
            self.failed_batches.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "aether_projector_lag_events",
            "Events on the broker not yet applied.",
            self.lag_events.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "aether_projector_lag_seconds",
            "Age of the oldest event not yet applied, 0 when caught up.",
            self.lag_seconds.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "aether_projector_checkpoint_events",
            "Events consumed in all (sum of the checkpoint's next offsets).",
            self.checkpoint.load(Ordering::Relaxed),
        );
        let name = "aether_projector_batch_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to apply and commit one batch.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in BATCH_BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.batches.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.batch_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = ProjectorMetrics::new("catalog", 2);
        metrics.batch(10, 1, Duration::from_millis(3));
        metrics.batch(5, 0, Duration::from_millis(200));
        metrics.parked(1);
        let text = metrics.render();
        assert!(text.contains(
            "aether_projector_events_applied_total{projection=\"catalog\",version=\"2\"} 15"
        ));
        assert!(text.contains(
            "aether_projector_dead_letters_total{projection=\"catalog\",version=\"2\"} 1"
        ));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.25\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
    }
}
