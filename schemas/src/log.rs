//! The port projectors read the event log through.

use tokio::sync::watch;

use crate::envelope::LoggedEvent;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
    #[error("a stored event could not be decoded at position {position}: {reason}")]
    Corrupt { position: i64, reason: String },
}

/// A totally ordered, append-only log of events.
///
/// Positions increase strictly in commit order, so a reader that remembers the last position it
/// handled never skips nor repeats an event.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Up to `limit` events with a position greater than `after`, in position order.
    async fn read_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedEvent>, LogError>;

    /// The position of the newest committed event, pushed on every commit.
    fn head(&self) -> watch::Receiver<i64>;
}
