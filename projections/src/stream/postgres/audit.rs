//! The audit read model: every event with its actor and cause, queryable by aggregate, actor
//! and time. One multi-row insert per batch; its unique key on `(aggregate_id, sequence)` turns
//! redelivered events away, so the store's separate sequence guard is skipped.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::{event_error, PgProjection};
use crate::stream::source::StreamEvent;
use crate::stream::store::StoreError;
use crate::updates::Update;

#[derive(Debug, Default)]
pub struct AuditProjection;

impl AuditProjection {
    pub const NAME: &'static str = "audit";
}

#[async_trait]
impl PgProjection for AuditProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn ddl(&self) -> &'static str {
        r#"
CREATE TABLE IF NOT EXISTS audit_events (
    event_id       UUID        PRIMARY KEY,
    event_type     TEXT        NOT NULL,
    version        TEXT        NOT NULL,
    aggregate_type TEXT        NOT NULL,
    aggregate_id   TEXT        NOT NULL,
    sequence       BIGINT      NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    actor          TEXT,
    correlation_id TEXT        NOT NULL,
    causation_id   TEXT        NOT NULL,
    topic          TEXT        NOT NULL,
    partition      INTEGER     NOT NULL,
    "offset"       BIGINT      NOT NULL,
    data           JSONB       NOT NULL,
    UNIQUE (aggregate_id, sequence)
);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit_events (actor, occurred_at);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_events (occurred_at);
CREATE INDEX IF NOT EXISTS audit_by_correlation ON audit_events (correlation_id);
"#
    }

    /// `UNIQUE (aggregate_id, sequence)` turns a redelivered event away by itself.
    fn rejects_duplicates(&self) -> bool {
        true
    }

    fn dump_queries(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "audit_events",
            "SELECT event_id, event_type, version, aggregate_type, aggregate_id, sequence, \
             occurred_at, actor, correlation_id, causation_id, data \
             FROM audit_events ORDER BY aggregate_id, sequence",
        )]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[(usize, &StreamEvent)],
        _updates: &mut Vec<Update>,
    ) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut columns = AuditColumns::default();
        for (_, event) in events {
            let Some(envelope) = event.envelope() else {
                continue;
            };
            columns.event_id.push(envelope.id);
            columns.event_type.push(envelope.event_type.clone());
            columns.version.push(envelope.version.clone());
            columns.aggregate_type.push(envelope.aggregate_type.clone());
            columns.aggregate_id.push(envelope.aggregate_id.clone());
            columns.sequence.push(event.sequence());
            columns.occurred_at.push(envelope.occurred_at);
            columns.actor.push(envelope.actor.clone());
            columns.correlation_id.push(envelope.correlation_id.clone());
            columns.causation_id.push(envelope.causation_id.clone());
            columns.topic.push(event.partition.topic.clone());
            columns.partition.push(event.partition.partition);
            columns.offset.push(event.offset);
            columns.data.push(envelope.data.clone());
        }
        let inserted = sqlx::query(
            "INSERT INTO audit_events (event_id, event_type, version, aggregate_type, \
             aggregate_id, sequence, occurred_at, actor, correlation_id, causation_id, topic, \
             partition, \"offset\", data) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::bigint[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], \
             $12::int[], $13::bigint[], $14::jsonb[]) \
             ON CONFLICT (aggregate_id, sequence) DO NOTHING",
        )
        .bind(columns.event_id)
        .bind(columns.event_type)
        .bind(columns.version)
        .bind(columns.aggregate_type)
        .bind(columns.aggregate_id)
        .bind(columns.sequence)
        .bind(columns.occurred_at)
        .bind(columns.actor)
        .bind(columns.correlation_id)
        .bind(columns.causation_id)
        .bind(columns.topic)
        .bind(columns.partition)
        .bind(columns.offset)
        .bind(columns.data)
        .execute(&mut *tx)
        .await
        // A batched insert cannot say which row broke it: blame the first, and the projector
        // narrows down from there.
        .map_err(|e| event_error(events[0].0, e))?;
        Ok(usize::try_from(inserted.rows_affected()).unwrap_or(usize::MAX))
    }
}

#[derive(Default)]
struct AuditColumns {
    event_id: Vec<uuid::Uuid>,
    event_type: Vec<String>,
    version: Vec<String>,
    aggregate_type: Vec<String>,
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    actor: Vec<Option<String>>,
    correlation_id: Vec<String>,
    causation_id: Vec<String>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    data: Vec<serde_json::Value>,
}
