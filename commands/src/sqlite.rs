//! The embedded event store on SQLite: a cqrs-es event repository, the write-side directory,
//! and the log that projectors tail (the `events` table ordered by `position`).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aether_schemas::audit::{chain_hash, ChainLink};
use aether_schemas::{EventEnvelope, EventLog, LogError, LoggedEvent, Metadata};
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::watch;

use crate::group_commit::{AppendOutcome, GroupCommit, GroupWriter};
use crate::store::{
    ChainCursor, DirectoryConflict, DirectoryKind, EventRef, Position, StoreError, WriteStore,
};

/// How long a writer waits for SQLite's single write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct SqliteEventStore {
    pool: SqlitePool,
    head: Arc<watch::Sender<i64>>,
    /// Commands waiting for the next group commit, and the write turn. Writers of this process
    /// take turns there, in arrival order, before they ask SQLite for its write lock:
    /// contending for that lock directly makes the losers sleep in SQLite's busy handler (up
    /// to 100 ms a time), which under load costs more than the writes.
    appends: GroupCommit<PendingAppend>,
}

impl std::fmt::Debug for SqliteEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEventStore")
            .field("head", &*self.head.borrow())
            .finish()
    }
}

/// Opens (creating if needed) an SQLite database file tuned for one writer and many readers.
pub async fn open_sqlite(
    path: &Path,
    synchronous: SqliteSynchronous,
) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    // No ping before each acquire (sqlx's default): a connection to a local file does not go
    // stale, and each ping is a round trip to the connection's worker thread.
    SqlitePoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

impl SqliteEventStore {
    /// Opens the store at `path`, applying migrations. Every commit is fsynced
    /// (`synchronous=FULL`): an event the API acknowledged survives a power cut.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = open_sqlite(path, SqliteSynchronous::Full)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (head, _) = watch::channel(head);
        Ok(Self {
            pool,
            head: Arc::new(head),
            appends: GroupCommit::new(GROUP_COMMIT_MAX),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// This log's position of a stored event, if it has arrived.
    pub async fn local_position(&self, event: &EventRef) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT position FROM events \
             WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = ?",
        )
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn select_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
             metadata FROM events WHERE aggregate_type = ? AND aggregate_id = ? AND sequence > ? \
             ORDER BY sequence",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .fetch_all(&self.pool)
        .await
        .map_err(connection_error)?;
        rows.iter().map(serialized_event).collect()
    }
}

fn connection_error(error: sqlx::Error) -> PersistenceError {
    PersistenceError::ConnectionError(Box::new(error))
}

fn serialized_event(row: &SqliteRow) -> Result<SerializedEvent, PersistenceError> {
    let payload: String = row.try_get("payload").map_err(connection_error)?;
    let metadata: String = row.try_get("metadata").map_err(connection_error)?;
    let sequence: i64 = row.try_get("sequence").map_err(connection_error)?;
    Ok(SerializedEvent {
        aggregate_id: row.try_get("aggregate_id").map_err(connection_error)?,
        sequence: usize::try_from(sequence)
            .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?,
        aggregate_type: row.try_get("aggregate_type").map_err(connection_error)?,
        event_type: row.try_get("event_type").map_err(connection_error)?,
        event_version: row.try_get("event_version").map_err(connection_error)?,
        payload: serde_json::from_str(&payload)?,
        metadata: serde_json::from_str(&metadata)?,
    })
}

/// Sorts an append failure: a taken sequence number is a lost optimistic-concurrency race; a
/// taken directory key is a domain conflict (e.g. a username registered a moment ago).
fn append_error(error: sqlx::Error) -> PersistenceError {
    if let sqlx::Error::Database(db) = &error {
        if db.is_unique_violation() {
            let message = db.message();
            if message.contains("directory.") {
                return PersistenceError::UnknownError(Box::new(DirectoryConflict {
                    kind: "this name",
                }));
            }
            return PersistenceError::OptimisticLockError;
        }
    }
    connection_error(error)
}

async fn stream(events: Vec<SerializedEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    for event in events {
        if feed.push(Ok(event)).await.is_err() {
            break;
        }
    }
    stream
}

/// Appends gathered into one transaction at most: enough to share a commit among every
/// command that arrived while the previous one was being written, few enough to keep the
/// write lock briefly.
const GROUP_COMMIT_MAX: usize = 256;

/// A snapshot written with a command's events: aggregate type, id, state and version.
type SnapshotUpdate = (&'static str, String, Value, usize);

/// One command's events (and snapshot) waiting for the next group commit.
struct PendingAppend {
    events: Vec<SerializedEvent>,
    snapshot: Option<SnapshotUpdate>,
}

impl GroupWriter<PendingAppend> for SqliteEventStore {
    /// Writes `group` in one transaction, each command in its own savepoint.
    async fn write_group(&self, group: &[PendingAppend]) -> Result<Vec<AppendOutcome>, String> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| e.to_string())?;
        let mut outcomes = Vec::with_capacity(group.len());
        for append in group {
            outcomes.push(
                Self::write_in_savepoint(&mut tx, append)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        let newest = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .copied()
            .max()
            .unwrap_or(0);
        self.head.send_modify(|head| *head = (*head).max(newest));
        Ok(outcomes)
    }
}

impl SqliteEventStore {
    /// Appends events (and a snapshot) atomically; returns the last event's position.
    ///
    /// Group commit ([`GroupCommit`]): the command that gets the write turn writes every
    /// command waiting behind it too, each inside its own savepoint (so one command's conflict
    /// undoes only that command), in one transaction with one fsync.
    async fn append_with_snapshot(
        &self,
        events: &[SerializedEvent],
        snapshot: Option<SnapshotUpdate>,
    ) -> Result<i64, PersistenceError> {
        let append = PendingAppend {
            events: events.to_vec(),
            snapshot,
        };
        self.appends.submit(self, append).await
    }

    /// `append` inside a savepoint: its own failure (a lost race, a taken name) undoes only its
    /// writes and is its outcome; an error of the transaction itself is the `Err`.
    async fn write_in_savepoint(
        conn: &mut SqliteConnection,
        append: &PendingAppend,
    ) -> Result<Result<i64, PersistenceError>, sqlx::Error> {
        sqlx::query("SAVEPOINT command").execute(&mut *conn).await?;
        let written = Self::write_one(conn, &append.events, append.snapshot.as_ref()).await;
        if written.is_err() {
            sqlx::query("ROLLBACK TO SAVEPOINT command")
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query("RELEASE SAVEPOINT command")
            .execute(&mut *conn)
            .await?;
        Ok(written)
    }

    /// One command's events, chained to the aggregate's previous event, and its snapshot.
    async fn write_one(
        conn: &mut SqliteConnection,
        events: &[SerializedEvent],
        snapshot: Option<&SnapshotUpdate>,
    ) -> Result<i64, PersistenceError> {
        let mut last_position = 0_i64;
        let mut prev_hash: Option<String> = None;
        for event in events {
            let sequence = i64::try_from(event.sequence)
                .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
            let prev = match prev_hash.take() {
                Some(hash) => hash,
                None => sqlx::query_scalar(
                    "SELECT hash FROM events \
                     WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = ?",
                )
                .bind(&event.aggregate_type)
                .bind(&event.aggregate_id)
                .bind(sequence - 1)
                .fetch_optional(&mut *conn)
                .await
                .map_err(connection_error)?
                .unwrap_or_default(),
            };
            let payload = event.payload.to_string();
            let metadata = event.metadata.to_string();
            let hash = chain_hash(
                &prev,
                &event.aggregate_type,
                &event.aggregate_id,
                sequence,
                &event.event_type,
                &event.event_version,
                &payload,
                &metadata,
            );
            let result = sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata, prev_hash, hash) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&event.aggregate_type)
            .bind(&event.aggregate_id)
            .bind(sequence)
            .bind(&event.event_type)
            .bind(&event.event_version)
            .bind(payload)
            .bind(metadata)
            .bind(prev)
            .bind(&hash)
            .execute(&mut *conn)
            .await
            .map_err(append_error)?;
            last_position = result.last_insert_rowid();
            prev_hash = Some(hash);
        }
        if let Some((aggregate_type, aggregate_id, payload, version)) = snapshot {
            let last_sequence = events.last().map_or(0, |e| e.sequence);
            sqlx::query(
                "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, \
                 snapshot_version, payload) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET \
                 last_sequence = excluded.last_sequence, \
                 snapshot_version = excluded.snapshot_version, payload = excluded.payload",
            )
            .bind(*aggregate_type)
            .bind(aggregate_id)
            .bind(i64::try_from(last_sequence).unwrap_or(i64::MAX))
            .bind(i64::try_from(*version).unwrap_or(i64::MAX))
            .bind(payload.to_string())
            .execute(&mut *conn)
            .await
            .map_err(append_error)?;
        }
        Ok(last_position)
    }
}

impl PersistedEventRepository for SqliteEventStore {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select_events(A::TYPE, aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let after = i64::try_from(last_sequence).unwrap_or(i64::MAX);
        self.select_events(A::TYPE, aggregate_id, after).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let row = sqlx::query(
            "SELECT last_sequence, snapshot_version, payload FROM snapshots \
             WHERE aggregate_type = ? AND aggregate_id = ?",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(connection_error)?;
        let Some(row) = row else { return Ok(None) };
        let payload: String = row.try_get("payload").map_err(connection_error)?;
        let last_sequence: i64 = row.try_get("last_sequence").map_err(connection_error)?;
        let version: i64 = row.try_get("snapshot_version").map_err(connection_error)?;
        let to_usize = |n: i64| {
            usize::try_from(n).map_err(|e| PersistenceError::DeserializationError(Box::new(e)))
        };
        Ok(Some(SerializedSnapshot {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: serde_json::from_str(&payload)?,
            current_sequence: to_usize(last_sequence)?,
            current_snapshot: to_usize(version)?,
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let snapshot_update =
            snapshot_update.map(|(id, payload, version)| (A::TYPE, id, payload, version));
        self.append_with_snapshot(events, snapshot_update)
            .await
            .map(|_| ())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        Ok(stream(self.get_events::<A>(aggregate_id).await?).await)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
             metadata FROM events WHERE aggregate_type = ? ORDER BY position",
        )
        .bind(A::TYPE)
        .fetch_all(&self.pool)
        .await
        .map_err(connection_error)?;
        let events = rows
            .iter()
            .map(serialized_event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(stream(events).await)
    }
}

impl WriteStore for SqliteEventStore {
    async fn append(&self, events: &[SerializedEvent]) -> Result<i64, PersistenceError> {
        self.append_with_snapshot(events, None).await
    }

    async fn lookup(&self, kind: DirectoryKind, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT aggregate_id FROM directory WHERE kind = ? AND key = ?")
            .bind(kind.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Position, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT position, sequence FROM events \
             WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence DESC LIMIT 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Position::from_row(row))
    }

    async fn chain_page(
        &self,
        after: Option<ChainCursor>,
        limit: usize,
    ) -> Result<Vec<ChainLink>, StoreError> {
        let after = after.unwrap_or_default();
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
             metadata, prev_hash, hash FROM events \
             WHERE (aggregate_type, aggregate_id, sequence) > (?, ?, ?) \
             ORDER BY aggregate_type, aggregate_id, sequence LIMIT ?",
        )
        .bind(after.aggregate_type)
        .bind(after.aggregate_id)
        .bind(after.sequence)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        rows.iter()
            .map(|row| chain_link(row).map_err(|e| StoreError::Unavailable(e.to_string())))
            .collect()
    }
}

/// Reads a row of the audit walk; the column names are the same on every backend.
pub(crate) fn chain_link<R>(row: &R) -> Result<ChainLink, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ChainLink {
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn logged_event(row: &SqliteRow) -> Result<LoggedEvent, LogError> {
    let position: i64 = row
        .try_get("position")
        .map_err(|e| LogError::Unavailable(e.to_string()))?;
    let corrupt = |reason: String| LogError::Corrupt { position, reason };
    let text = |column: &str| -> Result<String, LogError> {
        row.try_get(column).map_err(|e| corrupt(e.to_string()))
    };
    let sequence: i64 = row
        .try_get("sequence")
        .map_err(|e| corrupt(e.to_string()))?;
    let payload: Value =
        serde_json::from_str(&text("payload")?).map_err(|e| corrupt(e.to_string()))?;
    let metadata: Value =
        serde_json::from_str(&text("metadata")?).map_err(|e| corrupt(e.to_string()))?;
    let metadata = Metadata::from_value(&metadata);
    let envelope = EventEnvelope::from_stored(
        &text("aggregate_type")?,
        &text("aggregate_id")?,
        u64::try_from(sequence).map_err(|e| corrupt(e.to_string()))?,
        &text("event_type")?,
        &text("event_version")?,
        payload,
        &metadata,
    );
    Ok(LoggedEvent {
        position,
        routing_key: metadata.routing_key,
        envelope,
        traceparent: metadata.traceparent,
    })
}

#[async_trait::async_trait]
impl EventLog for SqliteEventStore {
    async fn read_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedEvent>, LogError> {
        let rows = sqlx::query(
            "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata FROM events WHERE position > ? ORDER BY position LIMIT ?",
        )
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| LogError::Unavailable(e.to_string()))?;
        rows.iter().map(logged_event).collect()
    }

    fn head(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }
}
