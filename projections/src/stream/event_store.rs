//! Rebuilding from the PostgreSQL event store rather than from Kafka: for a log whose early
//! offsets are gone, or a broker slower than the database.

use std::sync::Arc;

use aether_schemas::{EventEnvelope, Metadata};
use serde_json::Value;
use sqlx::{PgPool, Row};

use super::source::{Payload, StreamEvent, TopicPartition};
use super::store::{ReadStore, StoreError};

/// The pseudo-topic of events read from the event store. Its "offset" is the store's position;
/// it never counts as Kafka progress ([`Checkpoint::total`] leaves it out).
pub const EVENT_STORE_TOPIC: &str = "event-store";

fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Applies every event of the store to `store`, in batches, from one consistent snapshot (a
/// repeatable-read transaction): if an event of an aggregate is in it, so is every earlier one,
/// however late their transactions committed. What commits after the snapshot reaches the
/// version from Kafka afterwards, where the events already applied are ignored by sequence.
/// `progress(done, total)` is called after each batch. Returns the events applied.
pub async fn build_from_event_store(
    events: &PgPool,
    store: &dyn ReadStore,
    batch_size: usize,
    progress: impl Fn(i64, i64),
) -> Result<i64, StoreError> {
    let mut snapshot = events.begin().await.map_err(unavailable)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *snapshot)
        .await
        .map_err(unavailable)?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *snapshot)
        .await
        .map_err(unavailable)?;
    let partition = Arc::new(TopicPartition {
        topic: EVENT_STORE_TOPIC.to_owned(),
        partition: 0,
    });
    let mut checkpoint = store.checkpoint().await?;
    let mut last = checkpoint.next_offset(&partition).unwrap_or(0) - 1;
    let mut done = 0_i64;
    loop {
        let rows = sqlx::query(
            "SELECT position, aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata FROM events WHERE position > $1 \
             ORDER BY position LIMIT $2",
        )
        .bind(last)
        .bind(i64::try_from(batch_size.max(1)).unwrap_or(i64::MAX))
        .fetch_all(&mut *snapshot)
        .await
        .map_err(unavailable)?;
        let Some(end) = rows.last().map(|row| row.get::<i64, _>(0)) else {
            break;
        };
        let batch: Vec<StreamEvent> = rows
            .iter()
            .map(|row| {
                let sequence: i64 = row.get(3);
                let envelope = EventEnvelope::from_stored(
                    row.get::<&str, _>(1),
                    row.get::<&str, _>(2),
                    u64::try_from(sequence).unwrap_or_default(),
                    row.get::<&str, _>(4),
                    row.get::<&str, _>(5),
                    row.get::<Value, _>(6),
                    &Metadata::from_value(&row.get::<Value, _>(7)),
                );
                StreamEvent {
                    partition: partition.clone(),
                    offset: row.get(0),
                    payload: Payload::Event(Box::new(envelope)),
                    traceparent: None,
                }
            })
            .collect();
        let to = checkpoint.after(&batch);
        let applied = store.apply(&checkpoint, &batch, &to).await?;
        checkpoint = to;
        last = end;
        done += i64::try_from(applied.applied).unwrap_or_default();
        progress(done, total);
    }
    Ok(done)
}
