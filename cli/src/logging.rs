//! Log lines that a flood of requests could repeat without end are let through at most once
//! per interval: the database pool's slow-acquire warning (`sqlx::pool::acquire`) is written
//! at most once every [`SLOW_ACQUIRE_INTERVAL`], however many requests waited for a
//! connection; every other line is untouched.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tracing::{Level, Metadata};

/// The pool's slow-acquire warning is written at most this often.
pub const SLOW_ACQUIRE_INTERVAL: Duration = Duration::from_secs(10);

/// Admits one event per interval.
#[derive(Debug)]
pub struct Throttle {
    interval_ms: i64,
    /// When the next event may pass (milliseconds since the epoch).
    next_ms: AtomicI64,
}

impl Throttle {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval_ms: interval.as_millis() as i64,
            next_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether an event at `now_ms` passes; if it does, the next waits a whole interval.
    pub fn admit(&self, now_ms: i64) -> bool {
        let mut next = self.next_ms.load(Ordering::Acquire);
        loop {
            if now_ms < next {
                return false;
            }
            match self.next_ms.compare_exchange_weak(
                next,
                now_ms.saturating_add(self.interval_ms),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(current) => next = current,
            }
        }
    }
}

static SLOW_ACQUIRE: Throttle = Throttle::new(SLOW_ACQUIRE_INTERVAL);

/// Whether `metadata` is the pool's slow-acquire warning.
pub fn is_slow_acquire(metadata: &Metadata<'_>) -> bool {
    metadata.target() == "sqlx::pool::acquire" && *metadata.level() <= Level::WARN
}

/// The filter every log output of the binary goes through.
pub fn throttled(metadata: &Metadata<'_>) -> bool {
    !is_slow_acquire(metadata) || SLOW_ACQUIRE.admit(chrono::Utc::now().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_interval_passes() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let passed = (0..56_000)
            .filter(|n| throttle.admit(1_000_000 + n / 10))
            .count();
        // 5.6 seconds of events: the first only.
        assert_eq!(passed, 1);
        assert!(throttle.admit(1_010_000));
        assert!(!throttle.admit(1_010_001));
    }
}
