//! PostgreSQL read-model stores: one schema per projection version (`catalog_v2`), so a rebuild
//! writes beside the live version and the switch is one registry update.

pub mod audit;
pub mod catalog;
pub mod receipts;
pub mod search;
pub mod timeline;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use super::source::{Checkpoint, StreamEvent};
use super::sql_rows::{
    checkpoint_from_rows, DeadLetterRow, ParkedRow, DEAD_LETTER_COLUMNS, PARKED_COLUMNS,
};
use super::store::{
    aggregate_ids, retry_in_order, sort_batch, Applied, DeadLetter, DeadLetterFields, Parked,
    ReadStore, Retried, RetryParked, StoreError, HELD_BEHIND,
};
use crate::updates::Update;

pub use audit::AuditProjection;
pub use catalog::CatalogProjection;
pub use receipts::ReceiptsProjection;
pub use search::SearchProjection;
pub use timeline::TimelineProjection;

/// One read model kept in PostgreSQL.
#[async_trait]
pub trait PgProjection: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// The statements that create the read model's tables, unqualified: run with `search_path`
    /// set to the version's schema.
    fn ddl(&self) -> &'static str;

    /// `(table, query)` pairs whose rows, in the query's order, are the whole read model.
    fn dump_queries(&self) -> &'static [(&'static str, &'static str)];

    /// Whether the read model's own unique key on `(aggregate_id, sequence)` turns duplicates
    /// away (`apply` inserts with `ON CONFLICT DO NOTHING`), so that the store skips its
    /// separate sequence guard: one look-up and one upsert per aggregate and batch fewer.
    fn rejects_duplicates(&self) -> bool {
        false
    }

    /// Applies `events` (all decodable envelopes; none a duplicate, unless the projection
    /// [rejects duplicates](Self::rejects_duplicates) itself) in order inside the batch's
    /// transaction, and answers how many of them it applied. A failure names the event at
    /// fault where it can (see [`event_error`]).
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[(usize, &StreamEvent)],
        updates: &mut Vec<Update>,
    ) -> Result<usize, StoreError>;
}

/// A failure of the event at `index`: a constraint it breaks is its own fault, a lost
/// connection is not.
pub fn event_error(index: usize, error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Database(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::RowNotFound => StoreError::Event {
            index,
            reason: error.to_string(),
        },
        other => unavailable(other),
    }
}

pub fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// The schema a version lives in.
pub fn schema_name(projection: &str, version: i32) -> String {
    format!("{projection}_v{version}")
}

/// A projection version in its own PostgreSQL schema.
pub struct PgStore {
    pool: PgPool,
    projection: Arc<dyn PgProjection>,
    version: i32,
    schema: String,
}

impl PgStore {
    pub fn new(pool: PgPool, projection: Arc<dyn PgProjection>, version: i32) -> Self {
        let schema = schema_name(projection.name(), version);
        Self {
            pool,
            projection,
            version,
            schema,
        }
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A transaction with `search_path` on this version's schema, for reading.
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query(&format!("SET LOCAL search_path TO {}, public", self.schema))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        Ok(tx)
    }

    /// A transaction for writing: as [`Self::begin_read`], holding the version's write lock (so
    /// two instances never apply at once).
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        let mut tx = self.begin_read().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&self.schema)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        Ok(tx)
    }

    async fn stored_checkpoint(conn: &mut PgConnection) -> Result<Checkpoint, StoreError> {
        let rows = sqlx::query_as("SELECT topic, partition, next_offset FROM projector_checkpoint")
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(checkpoint_from_rows(rows))
    }

    async fn fence(conn: &mut PgConnection, from: &Checkpoint) -> Result<(), StoreError> {
        if Self::stored_checkpoint(conn).await? == *from {
            Ok(())
        } else {
            Err(StoreError::Fenced)
        }
    }

    async fn write_checkpoint(conn: &mut PgConnection, to: &Checkpoint) -> Result<(), StoreError> {
        let (topics, partitions, offsets): (Vec<String>, Vec<i32>, Vec<i64>) = to
            .iter()
            .map(|(p, offset)| (p.topic.clone(), p.partition, offset))
            .fold(
                (vec![], vec![], vec![]),
                |(mut t, mut p, mut o), (a, b, c)| {
                    t.push(a);
                    p.push(b);
                    o.push(c);
                    (t, p, o)
                },
            );
        sqlx::query(
            "INSERT INTO projector_checkpoint (topic, partition, next_offset, updated_at) \
             SELECT *, now() FROM UNNEST($1::text[], $2::int[], $3::bigint[]) \
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, \
             updated_at = excluded.updated_at",
        )
        .bind(topics)
        .bind(partitions)
        .bind(offsets)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_dead_letter(
        conn: &mut PgConnection,
        event: &StreamEvent,
        error: &str,
        attempts: i32,
    ) -> Result<(), StoreError> {
        let fields = DeadLetterFields::of(event);
        sqlx::query(
            "INSERT INTO projector_dead_letters (topic, partition, \"offset\", event_id, \
             event_type, aggregate_id, sequence, payload, error, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&event.partition.topic)
        .bind(event.partition.partition)
        .bind(event.offset)
        .bind(fields.event_id)
        .bind(fields.event_type)
        .bind(fields.aggregate_id)
        .bind(fields.sequence)
        .bind(fields.payload)
        .bind(error)
        .bind(attempts)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// Applies events that passed the duplicate and dead-letter checks, and records their
    /// sequences.
    async fn apply_fresh(
        &self,
        conn: &mut PgConnection,
        batch: &[StreamEvent],
        applied: &mut Applied,
        respect_parked: bool,
    ) -> Result<(), StoreError> {
        let ids = aggregate_ids(batch);
        let parked: HashSet<String> = if respect_parked {
            sqlx::query_scalar(
                "SELECT DISTINCT aggregate_id FROM projector_dead_letters \
                 WHERE aggregate_id = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable)?
            .into_iter()
            .collect()
        } else {
            HashSet::new()
        };
        let guarded = !self.projection.rejects_duplicates();
        let versions: HashMap<String, i64> = if guarded {
            sqlx::query(
                "SELECT aggregate_id, sequence FROM projector_versions WHERE aggregate_id = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
        } else {
            HashMap::new()
        };
        let sorted = sort_batch(batch, &parked, &versions)?;
        for event in &sorted.held {
            Self::insert_dead_letter(conn, event, HELD_BEHIND, 0).await?;
        }
        applied.parked += sorted.held.len();
        applied.ignored += sorted.ignored;
        let fresh = sorted.fresh;
        let changed = self
            .projection
            .apply(conn, &fresh, &mut applied.updates)
            .await?;
        applied.applied += changed;
        applied.ignored += fresh.len().saturating_sub(changed);
        if !guarded {
            return Ok(());
        }
        let (ids, sequences): (Vec<String>, Vec<i64>) = sorted.sequences.into_iter().unzip();
        sqlx::query(
            "INSERT INTO projector_versions (aggregate_id, sequence) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (aggregate_id) DO UPDATE SET sequence = excluded.sequence",
        )
        .bind(ids)
        .bind(sequences)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }
}

const BOOKKEEPING: &str = r#"
CREATE TABLE IF NOT EXISTS projector_checkpoint (
    topic       TEXT        NOT NULL,
    partition   INTEGER     NOT NULL,
    next_offset BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS projector_versions (
    aggregate_id TEXT   PRIMARY KEY,
    sequence     BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS projector_dead_letters (
    id           BIGSERIAL   PRIMARY KEY,
    topic        TEXT        NOT NULL,
    partition    INTEGER     NOT NULL,
    "offset"     BIGINT      NOT NULL,
    event_id     TEXT,
    event_type   TEXT,
    aggregate_id TEXT,
    sequence     BIGINT,
    payload      TEXT        NOT NULL,
    error        TEXT        NOT NULL,
    attempts     INTEGER     NOT NULL,
    parked_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS projector_dead_letters_by_aggregate
    ON projector_dead_letters (aggregate_id);
"#;

#[async_trait]
impl RetryParked for PgStore {
    async fn retry_parked(&self, parked: &Parked) -> Result<Option<Vec<Update>>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM projector_dead_letters WHERE id = $1")
            .bind(parked.id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let mut applied = Applied::default();
        match self
            .apply_fresh(
                &mut tx,
                std::slice::from_ref(&parked.event),
                &mut applied,
                false,
            )
            .await
        {
            Ok(()) => {
                tx.commit().await.map_err(unavailable)?;
                Ok(Some(applied.updates))
            }
            Err(StoreError::Event { .. }) => {
                drop(tx);
                let mut tx = self.begin().await?;
                sqlx::query(
                    "UPDATE projector_dead_letters SET attempts = attempts + 1 WHERE id = $1",
                )
                .bind(parked.id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }
}

#[async_trait]
impl ReadStore for PgStore {
    fn describe(&self) -> String {
        format!("{} v{} (PostgreSQL)", self.projection.name(), self.version)
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        let ddl = format!(
            "SET LOCAL client_min_messages TO warning; \
             SELECT pg_advisory_xact_lock(hashtext('{schema}')); \
             CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema}; \
             {BOOKKEEPING} {}",
            self.projection.ddl(),
            schema = self.schema,
        );
        run_script(&self.pool, ddl).await
    }

    async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        let mut tx = self.begin_read().await?;
        Self::stored_checkpoint(&mut tx).await
    }

    async fn last_progress(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut tx = self.begin_read().await?;
        sqlx::query_scalar("SELECT max(updated_at) FROM projector_checkpoint")
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)
    }

    async fn apply(
        &self,
        from: &Checkpoint,
        batch: &[StreamEvent],
        to: &Checkpoint,
    ) -> Result<Applied, StoreError> {
        let mut tx = self.begin().await?;
        Self::fence(&mut tx, from).await?;
        let mut applied = Applied::default();
        self.apply_fresh(&mut tx, batch, &mut applied, true).await?;
        Self::write_checkpoint(&mut tx, to).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(applied)
    }

    async fn park(
        &self,
        from: &Checkpoint,
        event: &StreamEvent,
        error: &str,
        attempts: i32,
        to: &Checkpoint,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        Self::fence(&mut tx, from).await?;
        Self::insert_dead_letter(&mut tx, event, error, attempts).await?;
        Self::write_checkpoint(&mut tx, to).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut tx = self.begin_read().await?;
        let rows: Vec<DeadLetterRow> = sqlx::query_as(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM projector_dead_letters ORDER BY id"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(DeadLetter::from).collect())
    }

    async fn retry_dead_letters(&self) -> Result<(Retried, Vec<Update>), StoreError> {
        let mut tx = self.begin_read().await?;
        let rows: Vec<ParkedRow> = sqlx::query_as(&format!(
            "SELECT {PARKED_COLUMNS} FROM projector_dead_letters ORDER BY id"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        retry_in_order(self, rows.into_iter().map(Parked::from).collect()).await
    }

    async fn dump(&self) -> Result<Value, StoreError> {
        let mut tx = self.begin_read().await?;
        let mut dump = serde_json::Map::new();
        for (table, query) in self.projection.dump_queries() {
            let rows: Option<Value> =
                sqlx::query_scalar(&format!("SELECT json_agg(t) FROM ({query}) t"))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            dump.insert((*table).to_owned(), rows.unwrap_or(Value::Array(vec![])));
        }
        Ok(Value::Object(dump))
    }

    async fn drop_version(&self) -> Result<(), StoreError> {
        run_script(
            &self.pool,
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
        )
        .await
    }
}

/// Runs a multi-statement script in one transaction.
fn run_script(
    pool: &PgPool,
    script: String,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + '_>> {
    Box::pin(async move {
        let script = format!("BEGIN; {script}; COMMIT;");
        sqlx::raw_sql(&script)
            .execute(pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    })
}
