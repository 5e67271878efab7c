//! A read model kept in SQLite: the statements one projection applies per event. The stream
//! engine ([`crate::stream::StreamProjector`]) runs it through [`crate::stream::sqlite::SqliteStore`],
//! which adds the checkpoint, the duplicate guard and the dead letters.

use aether_schemas::LoggedEvent;
use async_trait::async_trait;
use sqlx::SqliteConnection;

use crate::rows::RowError;
use crate::updates::Update;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model store: {0}")]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Row(#[from] RowError),
    #[error("event {event_type} at position {position} could not be decoded: {reason}")]
    Decode {
        position: i64,
        event_type: String,
        reason: String,
    },
}

impl ProjectionError {
    pub fn decode(event: &LoggedEvent, error: impl std::fmt::Display) -> Self {
        Self::Decode {
            position: event.position,
            event_type: event.envelope.event_type.clone(),
            reason: error.to_string(),
        }
    }
}

/// One read model's reaction to events.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// A stable name: the checkpoint's key.
    fn name(&self) -> &'static str;

    /// `(table, query)` pairs whose rows, in the query's order, are the whole read model.
    fn tables(&self) -> &'static [(&'static str, &'static str)];

    /// Applies one event inside the batch's transaction and appends the updates to publish once
    /// the transaction commits. Events the projection does not care about are simply ignored.
    async fn apply(
        &self,
        tx: &mut SqliteConnection,
        event: &LoggedEvent,
        updates: &mut Vec<Update>,
    ) -> Result<(), ProjectionError>;
}
