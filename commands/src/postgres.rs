//! The distributed event store on PostgreSQL: postgres-es stores and loads events; triggers in
//! the same transaction chain their hashes, fill the write-side directory and the outbox that the
//! relay publishes to Kafka.
//!
//! Appends of one process are group-committed ([`GroupCommit`]): commands that arrive while a
//! transaction is being written share the next one, so they share its commit, its WAL flush and
//! its one outbox notification. (`NOTIFY` holds a database-wide lock from before commit until
//! the end of the transaction, so transactions that notify commit one after the other, each
//! with its own flush; one transaction per command capped the store at its flush rate.)

use std::collections::HashMap;
use std::time::Duration;

use aether_schemas::audit::ChainLink;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use crate::group_commit::{AppendOutcome, GroupCommit, GroupWriter};
use crate::sqlite::chain_link;
use crate::store::{ChainCursor, DirectoryKind, Position, StoreError, WriteStore};

/// Commands written in one transaction at most, by default.
pub const DEFAULT_GROUP_COMMIT_MAX: usize = 256;

#[derive(Clone)]
pub struct PgEventStore {
    repo: std::sync::Arc<PostgresEventRepository>,
    pool: PgPool,
    /// Commands' events waiting for the next group commit; `None` when each command writes
    /// its own transaction.
    appends: Option<GroupCommit<Vec<SerializedEvent>>>,
}

impl std::fmt::Debug for PgEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEventStore").finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl PgEventStore {
    /// Connects to PostgreSQL. A connection attempt gives up after `connect_timeout`, so a
    /// command fails fast when the database is down.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(connect_timeout)
            // No ping before every acquisition (a round trip per statement): a connection that
            // died is found by the statement itself, which then fails as `Unavailable` like any
            // other database error.
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(unavailable)?;
        Ok(Self::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            repo: std::sync::Arc::new(PostgresEventRepository::new(pool.clone())),
            pool,
            appends: Some(GroupCommit::new(DEFAULT_GROUP_COMMIT_MAX)),
        }
    }

    /// Writes at most `max` commands in one transaction; 0 turns group commit off, so that
    /// each command writes its own transaction, concurrently with the others.
    pub fn with_group_commit(mut self, max: usize) -> Self {
        self.appends = (max > 0).then(|| GroupCommit::new(max));
        self
    }

    /// Creates or upgrades the event-store tables (`aether migrate`).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl PersistedEventRepository for PgEventStore {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.repo.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        // postgres-es formats the sequence into the SQL text, a new prepared statement per
        // sequence; this is its query with the sequence bound instead (the command service asks
        // this on every message, for the server's newest events).
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
             metadata FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(i64::try_from(last_sequence).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        rows.iter().map(serialized_event).collect()
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.repo.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.repo.persist::<A>(events, snapshot_update).await
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.repo.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.repo.stream_all_events::<A>().await
    }
}

fn serialized_event(row: &PgRow) -> Result<SerializedEvent, PersistenceError> {
    let get = |e: sqlx::Error| PersistenceError::DeserializationError(Box::new(e));
    let sequence: i64 = row.try_get("sequence").map_err(get)?;
    Ok(SerializedEvent::new(
        row.try_get("aggregate_id").map_err(get)?,
        usize::try_from(sequence)
            .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?,
        row.try_get("aggregate_type").map_err(get)?,
        row.try_get("event_type").map_err(get)?,
        row.try_get("event_version").map_err(get)?,
        row.try_get("payload").map_err(get)?,
        row.try_get("metadata").map_err(get)?,
    ))
}

/// Sorts an append failure the way postgres-es does: any unique violation (a taken sequence,
/// or a taken directory key) is a lost race that the command service retries.
fn append_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            PersistenceError::OptimisticLockError
        }
        _ => PersistenceError::ConnectionError(Box::new(error)),
    }
}

/// postgres-es's columns, every event of one write in one statement: one round trip and one
/// firing of the statement-level triggers (outbox, directory, wake-up), however many events
/// and commands it carries. `jsonb[]` as postgres-es binds JSON, so the stored text, which the
/// hash chain covers, is what a single-row insert would store.
const INSERT_EVENTS: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], \
     $6::jsonb[], $7::jsonb[]) \
     RETURNING aggregate_type, aggregate_id, sequence, position";

/// Inserts `events` in one statement and returns the log position of each, in their order.
async fn insert_events<'a>(
    executor: impl sqlx::PgExecutor<'_>,
    events: impl Iterator<Item = &'a SerializedEvent> + Clone,
) -> Result<Vec<i64>, PersistenceError> {
    let sequences = events
        .clone()
        .map(|event| i64::try_from(event.sequence))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
    let rows = sqlx::query(INSERT_EVENTS)
        .bind(column(events.clone(), |event| &event.aggregate_type))
        .bind(column(events.clone(), |event| &event.aggregate_id))
        .bind(&sequences)
        .bind(column(events.clone(), |event| &event.event_type))
        .bind(column(events.clone(), |event| &event.event_version))
        .bind(column(events.clone(), |event| &event.payload))
        .bind(column(events.clone(), |event| &event.metadata))
        .fetch_all(executor)
        .await
        .map_err(append_error)?;
    // RETURNING promises no order: each event finds its row by its key.
    let mut written = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key: (&str, &str, i64) = (
            row.try_get(0).map_err(append_error)?,
            row.try_get(1).map_err(append_error)?,
            row.try_get(2).map_err(append_error)?,
        );
        written.insert(key, row.try_get::<i64, _>(3).map_err(append_error)?);
    }
    events
        .zip(&sequences)
        .map(|(event, &sequence)| {
            let key = (
                event.aggregate_type.as_str(),
                event.aggregate_id.as_str(),
                sequence,
            );
            written.get(&key).copied().ok_or_else(|| {
                PersistenceError::UnknownError(
                    format!("no position returned for {}/{sequence}", event.aggregate_id).into(),
                )
            })
        })
        .collect()
}

/// One field of every event, as one array parameter of [`INSERT_EVENTS`].
fn column<'a, T: ?Sized>(
    events: impl Iterator<Item = &'a SerializedEvent>,
    field: fn(&'a SerializedEvent) -> &'a T,
) -> Vec<&'a T> {
    events.map(field).collect()
}

/// The position of the last of `events`, 0 for none.
fn last_position(positions: &[i64]) -> i64 {
    positions.last().copied().unwrap_or(0)
}

fn group_error(error: sqlx::Error) -> String {
    error.to_string()
}

impl PgEventStore {
    /// Writes every command's events in one statement, which is its own transaction: the
    /// usual case, where no command of the group lost a race. `Ok(None)` when the statement
    /// failed (nothing is kept), so that the group is written again command by command and only
    /// the failing command fails.
    async fn write_group_at_once(
        &self,
        group: &[Vec<SerializedEvent>],
    ) -> Result<Option<Vec<AppendOutcome>>, String> {
        let Ok(positions) = insert_events(&self.pool, group.iter().flatten()).await else {
            // A lost race, or a statement one command's events alone made fail.
            return Ok(None);
        };
        let mut rest = positions.as_slice();
        let outcomes = group
            .iter()
            .map(|events| {
                let (command, later) = rest.split_at(events.len().min(rest.len()));
                rest = later;
                Ok(last_position(command))
            })
            .collect();
        Ok(Some(outcomes))
    }

    /// Writes each command's events in its own savepoint: a command that lost a race (a taken
    /// sequence or directory key) is undone alone, and its outcome says so.
    async fn write_group_by_command(
        &self,
        group: &[Vec<SerializedEvent>],
    ) -> Result<Vec<AppendOutcome>, String> {
        let mut tx = self.pool.begin().await.map_err(group_error)?;
        let mut outcomes = Vec::with_capacity(group.len());
        for events in group {
            sqlx::query("SAVEPOINT command")
                .execute(&mut *tx)
                .await
                .map_err(group_error)?;
            let outcome = insert_events(&mut *tx, events.iter())
                .await
                .map(|positions| last_position(&positions));
            if outcome.is_err() {
                sqlx::query("ROLLBACK TO SAVEPOINT command")
                    .execute(&mut *tx)
                    .await
                    .map_err(group_error)?;
            }
            sqlx::query("RELEASE SAVEPOINT command")
                .execute(&mut *tx)
                .await
                .map_err(group_error)?;
            outcomes.push(outcome);
        }
        tx.commit().await.map_err(group_error)?;
        Ok(outcomes)
    }
}

impl GroupWriter<Vec<SerializedEvent>> for PgEventStore {
    async fn write_group(
        &self,
        group: &[Vec<SerializedEvent>],
    ) -> Result<Vec<AppendOutcome>, String> {
        if let [events] = group {
            // A command alone needs no savepoint: its own transaction is its outcome.
            return Ok(vec![self.append_alone(events).await]);
        }
        match self.write_group_at_once(group).await? {
            Some(outcomes) => Ok(outcomes),
            None => self.write_group_by_command(group).await,
        }
    }
}

impl PgEventStore {
    /// One command's events in their own transaction.
    async fn append_alone(&self, events: &[SerializedEvent]) -> AppendOutcome {
        if events.is_empty() {
            return Ok(0);
        }
        // One statement is its own transaction: one round trip.
        let positions = insert_events(&self.pool, events.iter()).await?;
        Ok(last_position(&positions))
    }
}

impl WriteStore for PgEventStore {
    async fn append(&self, events: &[SerializedEvent]) -> Result<i64, PersistenceError> {
        match &self.appends {
            Some(appends) if !events.is_empty() => appends.submit(self, events.to_vec()).await,
            _ => self.append_alone(events).await,
        }
    }

    async fn lookup(&self, kind: DirectoryKind, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT aggregate_id FROM directory WHERE kind = $1 AND key = $2")
            .bind(kind.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Position, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT position, sequence FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(Position::from_row(row))
    }

    async fn chain_page(
        &self,
        after: Option<ChainCursor>,
        limit: usize,
    ) -> Result<Vec<ChainLink>, StoreError> {
        let after = after.unwrap_or_default();
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload::text AS payload, metadata::text AS metadata, prev_hash, hash FROM events \
             WHERE (aggregate_type, aggregate_id, sequence) > ($1, $2, $3) \
             ORDER BY aggregate_type COLLATE \"C\", aggregate_id COLLATE \"C\", sequence LIMIT $4",
        )
        .bind(after.aggregate_type)
        .bind(after.aggregate_id)
        .bind(after.sequence)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| chain_link(row).map_err(unavailable))
            .collect()
    }
}
