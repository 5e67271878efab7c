//! The bookkeeping rows the two SQL stores (PostgreSQL, SQLite) share: the same columns, read
//! and written the same way, whatever the dialect of the statements around them.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::source::{Checkpoint, StreamEvent, TopicPartition};
use super::store::{DeadLetter, Parked};

/// One `(topic, partition, next_offset)` row per partition a version has read.
pub(crate) type CheckpointRow = (String, i32, i64);

pub(crate) fn checkpoint_from_rows(rows: Vec<CheckpointRow>) -> Checkpoint {
    let mut checkpoint = Checkpoint::default();
    for (topic, partition, next_offset) in rows {
        checkpoint.set(TopicPartition { topic, partition }, next_offset);
    }
    checkpoint
}

/// The columns of a dead letter as an operator lists them.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeadLetterRow {
    topic: String,
    partition: i32,
    offset: i64,
    event_id: Option<String>,
    event_type: Option<String>,
    aggregate_id: Option<String>,
    sequence: Option<i64>,
    error: String,
    attempts: i32,
    parked_at: DateTime<Utc>,
}

/// The select list of a [`DeadLetterRow`].
pub(crate) const DEAD_LETTER_COLUMNS: &str = "topic, partition, \"offset\", event_id, \
     event_type, aggregate_id, sequence, error, attempts, parked_at";

impl From<DeadLetterRow> for DeadLetter {
    fn from(row: DeadLetterRow) -> Self {
        Self {
            location: format!("{}/{}@{}", row.topic, row.partition, row.offset),
            event_id: row.event_id,
            event_type: row.event_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            error: row.error,
            attempts: row.attempts,
            parked_at: row.parked_at,
        }
    }
}

/// The columns a retry needs to rebuild the parked event.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ParkedRow {
    id: i64,
    topic: String,
    partition: i32,
    offset: i64,
    payload: String,
    aggregate_id: Option<String>,
}

pub(crate) const PARKED_COLUMNS: &str = "id, topic, partition, \"offset\", payload, aggregate_id";

impl From<ParkedRow> for Parked {
    fn from(row: ParkedRow) -> Self {
        Self {
            id: row.id,
            aggregate_id: row.aggregate_id,
            event: StreamEvent {
                partition: Arc::new(TopicPartition {
                    topic: row.topic,
                    partition: row.partition,
                }),
                offset: row.offset,
                payload: StreamEvent::decode(row.payload.as_bytes()),
                traceparent: None,
            },
        }
    }
}
