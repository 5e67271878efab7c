//! Waiting out a broker (or a store) that does not answer: exponential backoff that gives way to
//! shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The pause before the next attempt: starts at `first`, doubles after each wait up to `max`,
/// and starts over after a success ([`Backoff::reset`]).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// How long the next [`Backoff::wait`] sleeps.
    pub fn next_wait(&self) -> Duration {
        self.next
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps for the current pause and doubles it; `false` if `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_double_up_to_the_limit_and_start_over_after_a_reset() {
        let shutdown = CancellationToken::new();
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(3));
        let mut waits = Vec::new();
        for _ in 0..4 {
            waits.push(backoff.next_wait());
            assert!(backoff.wait(&shutdown).await);
        }
        assert_eq!(waits, [1, 2, 3, 3].map(Duration::from_millis).to_vec());
        backoff.reset();
        assert_eq!(backoff.next_wait(), Duration::from_millis(1));
    }

    #[tokio::test]
    async fn shutdown_ends_a_wait() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!backoff.wait(&shutdown).await);
    }
}
