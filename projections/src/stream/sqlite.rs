//! The SQLite adapter of the store port: the embedded mode's read models (catalog, timeline),
//! one database file per projection version, fed by the same projector as the distributed
//! stores and held to the same contract.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aether_schemas::LoggedEvent;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteRow, SqliteSynchronous};
use sqlx::{Column, Row, SqliteConnection, SqlitePool, TypeInfo, ValueRef};

use super::source::{Checkpoint, StreamEvent};
use super::sql_rows::{
    checkpoint_from_rows, DeadLetterRow, ParkedRow, DEAD_LETTER_COLUMNS, PARKED_COLUMNS,
};
use super::store::{
    aggregate_ids, retry_in_order, sort_batch, Applied, DeadLetter, DeadLetterFields, Parked,
    ReadStore, Retried, RetryParked, StoreError, HELD_BEHIND,
};
use crate::projection::{Projection, ProjectionError};
use crate::updates::Update;

const BOOKKEEPING: &str = r#"
CREATE TABLE IF NOT EXISTS stream_checkpoint (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS stream_dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT    NOT NULL,
    partition    INTEGER NOT NULL,
    "offset"     INTEGER NOT NULL,
    event_id     TEXT,
    event_type   TEXT,
    aggregate_id TEXT,
    sequence     INTEGER,
    payload      TEXT    NOT NULL,
    error        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    parked_at    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS stream_dead_letters_by_aggregate
    ON stream_dead_letters (aggregate_id);
"#;

/// One version of an SQLite read model, in its own file `<dir>/<name>_v<version>.db`.
pub struct SqliteStore {
    path: PathBuf,
    projection: Arc<dyn Projection>,
    version: i32,
    pool: tokio::sync::Mutex<Option<SqlitePool>>,
}

impl SqliteStore {
    pub fn new(dir: &Path, projection: Arc<dyn Projection>, version: i32) -> Self {
        Self {
            path: dir.join(format!("{}_v{version}.db", projection.name())),
            projection,
            version,
            pool: tokio::sync::Mutex::new(None),
        }
    }

    /// The version's pool, opened (and the file created) on first use.
    async fn pool(&self) -> Result<SqlitePool, StoreError> {
        let mut slot = self.pool.lock().await;
        if let Some(pool) = slot.as_ref().filter(|pool| !pool.is_closed()) {
            return Ok(pool.clone());
        }
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        *slot = Some(pool.clone());
        Ok(pool)
    }

    /// A write transaction: `BEGIN IMMEDIATE` takes SQLite's write lock up front, which is what
    /// keeps two writers of one version apart.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool()
            .await?
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)
    }

    async fn stored_checkpoint(conn: &mut SqliteConnection) -> Result<Checkpoint, StoreError> {
        let rows = sqlx::query_as("SELECT topic, partition, next_offset FROM stream_checkpoint")
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(checkpoint_from_rows(rows))
    }

    async fn fence(conn: &mut SqliteConnection, from: &Checkpoint) -> Result<(), StoreError> {
        if Self::stored_checkpoint(conn).await? == *from {
            Ok(())
        } else {
            Err(StoreError::Fenced)
        }
    }

    async fn write_checkpoint(
        conn: &mut SqliteConnection,
        to: &Checkpoint,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        for (partition, next) in to.iter() {
            sqlx::query(
                "INSERT INTO stream_checkpoint (topic, partition, next_offset, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (topic, partition) DO UPDATE SET \
                 next_offset = excluded.next_offset, updated_at = excluded.updated_at",
            )
            .bind(&partition.topic)
            .bind(partition.partition)
            .bind(next)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn insert_dead_letter(
        conn: &mut SqliteConnection,
        event: &StreamEvent,
        error: &str,
        attempts: i32,
    ) -> Result<(), StoreError> {
        let fields = DeadLetterFields::of(event);
        sqlx::query(
            "INSERT INTO stream_dead_letters (topic, partition, \"offset\", event_id, \
             event_type, aggregate_id, sequence, payload, error, attempts, parked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .bind(Utc::now())
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn apply_fresh(
        &self,
        conn: &mut SqliteConnection,
        batch: &[StreamEvent],
        applied: &mut Applied,
        respect_parked: bool,
    ) -> Result<(), StoreError> {
        let name = self.projection.name();
        let ids = serde_json::to_string(&aggregate_ids(batch)).unwrap_or_default();
        let parked: HashSet<String> = if respect_parked {
            sqlx::query_scalar(
                "SELECT DISTINCT aggregate_id FROM stream_dead_letters \
                 WHERE aggregate_id IN (SELECT value FROM json_each($1))",
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
        let versions: HashMap<String, i64> = sqlx::query(
            "SELECT aggregate_id, sequence FROM projector_versions WHERE projection = $1 \
             AND aggregate_id IN (SELECT value FROM json_each($2))",
        )
        .bind(name)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
        let sorted = sort_batch(batch, &parked, &versions)?;
        for event in &sorted.held {
            Self::insert_dead_letter(conn, event, HELD_BEHIND, 0).await?;
        }
        applied.parked += sorted.held.len();
        applied.ignored += sorted.ignored;
        for (index, event) in &sorted.fresh {
            let Some(envelope) = event.envelope() else {
                continue;
            };
            let logged = LoggedEvent {
                position: event.offset,
                routing_key: envelope.aggregate_id.clone(),
                envelope: envelope.clone(),
                traceparent: event.traceparent.clone(),
            };
            self.projection
                .apply(conn, &logged, &mut applied.updates)
                .await
                .map_err(|error| projection_error(*index, error))?;
        }
        applied.applied += sorted.fresh.len();
        for (aggregate, sequence) in &sorted.sequences {
            sqlx::query(
                "INSERT INTO projector_versions (projection, aggregate_id, sequence) \
                 VALUES ($1, $2, $3) ON CONFLICT (projection, aggregate_id) \
                 DO UPDATE SET sequence = excluded.sequence",
            )
            .bind(name)
            .bind(aggregate)
            .bind(sequence)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        }
        Ok(())
    }
}

fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// A failure the event at `index` is to blame for, or one of the store's own.
fn projection_error(index: usize, error: ProjectionError) -> StoreError {
    match error {
        ProjectionError::Store(sqlx::Error::Database(error)) => StoreError::Event {
            index,
            reason: error.to_string(),
        },
        ProjectionError::Decode { .. } | ProjectionError::Row(_) => StoreError::Event {
            index,
            reason: error.to_string(),
        },
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// One row as JSON, whatever its columns.
fn row_json(row: &SqliteRow) -> Value {
    let mut object = Map::new();
    for column in row.columns() {
        let i = column.ordinal();
        let kind = row
            .try_get_raw(i)
            .map(|raw| {
                if raw.is_null() {
                    "NULL".to_owned()
                } else {
                    raw.type_info().name().to_owned()
                }
            })
            .unwrap_or_default();
        let value = match kind.as_str() {
            "NULL" => Value::Null,
            "INTEGER" => row
                .try_get::<i64, _>(i)
                .map(Value::from)
                .unwrap_or_default(),
            "REAL" => row
                .try_get::<f64, _>(i)
                .map(Value::from)
                .unwrap_or_default(),
            _ => row
                .try_get::<String, _>(i)
                .map(Value::from)
                .unwrap_or_default(),
        };
        object.insert(column.name().to_owned(), value);
    }
    Value::Object(object)
}

#[async_trait]
impl RetryParked for SqliteStore {
    async fn retry_parked(&self, parked: &Parked) -> Result<Option<Vec<Update>>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM stream_dead_letters WHERE id = $1")
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
                sqlx::query("UPDATE stream_dead_letters SET attempts = attempts + 1 WHERE id = $1")
                    .bind(parked.id)
                    .execute(&self.pool().await?)
                    .await
                    .map_err(unavailable)?;
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }
}

#[async_trait]
impl ReadStore for SqliteStore {
    fn describe(&self) -> String {
        format!("{} v{} (SQLite)", self.projection.name(), self.version)
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        let pool = &self.pool().await?;
        crate::migrate(pool)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        sqlx::raw_sql(BOOKKEEPING)
            .execute(pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        let mut conn = self.pool().await?.acquire().await.map_err(unavailable)?;
        Self::stored_checkpoint(&mut conn).await
    }

    async fn last_progress(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar("SELECT max(updated_at) FROM stream_checkpoint")
            .fetch_one(&self.pool().await?)
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
        tx.commit().await.map_err(unavailable)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let rows: Vec<DeadLetterRow> = sqlx::query_as(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM stream_dead_letters ORDER BY id"
        ))
        .fetch_all(&self.pool().await?)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(DeadLetter::from).collect())
    }

    async fn retry_dead_letters(&self) -> Result<(Retried, Vec<Update>), StoreError> {
        let rows: Vec<ParkedRow> = sqlx::query_as(&format!(
            "SELECT {PARKED_COLUMNS} FROM stream_dead_letters ORDER BY id"
        ))
        .fetch_all(&self.pool().await?)
        .await
        .map_err(unavailable)?;
        retry_in_order(self, rows.into_iter().map(Parked::from).collect()).await
    }

    async fn dump(&self) -> Result<Value, StoreError> {
        let pool = &self.pool().await?;
        let mut dump = Map::new();
        for (table, query) in self.projection.tables() {
            let rows = sqlx::query(query)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?;
            dump.insert(
                (*table).to_owned(),
                Value::Array(rows.iter().map(row_json).collect()),
            );
        }
        Ok(Value::Object(dump))
    }

    async fn drop_version(&self) -> Result<(), StoreError> {
        // Tables are dropped, not the file deleted: a connection of the old pool still closing
        // would remove the `-wal` and `-shm` files of a new database of the same name (seen as
        // SQLite's "disk I/O error" on the next write).
        let pool = self.pool().await?;
        let mut conn = pool.acquire().await.map_err(unavailable)?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(unavailable)?;
        for table in tables {
            let quoted = table.replace('"', "\"\"");
            sqlx::query(&format!("DROP TABLE IF EXISTS \"{quoted}\""))
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
        }
        // Give the space back.
        sqlx::query("VACUUM")
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// The projections the embedded mode keeps, each in its own SQLite file per version.
pub const EMBEDDED_PROJECTIONS: [&str; 3] = [
    crate::catalog::CatalogProjection::NAME,
    crate::receipts::ReceiptsProjection::NAME,
    crate::timeline::TimelineProjection::NAME,
];

/// The statements of embedded projection `name`, if it is one.
pub fn embedded_projection(name: &str) -> Option<Arc<dyn Projection>> {
    match name {
        crate::catalog::CatalogProjection::NAME => {
            Some(Arc::new(crate::catalog::CatalogProjection))
        }
        crate::receipts::ReceiptsProjection::NAME => {
            Some(Arc::new(crate::receipts::ReceiptsProjection))
        }
        crate::timeline::TimelineProjection::NAME => {
            Some(Arc::new(crate::timeline::TimelineProjection))
        }
        _ => None,
    }
}

impl SqliteStore {
    /// Where this version's file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
