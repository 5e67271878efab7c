//! One event-store type for code that picks its backend at run time.

use aether_schemas::audit::ChainLink;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;
use tracing::Instrument;

use crate::postgres::PgEventStore;
use crate::sqlite::SqliteEventStore;
use crate::store::{ChainCursor, DirectoryKind, Position, StoreError, WriteStore};

/// The embedded store or the distributed one.
#[derive(Clone, Debug)]
pub enum EventStoreBackend {
    Sqlite(SqliteEventStore),
    Postgres(PgEventStore),
}

/// The session ends (`SessionEnded`, `AllSessionsEnded`) read at start-up at most.
pub const RECENT_SESSION_ENDS: i64 = 100_000;

impl EventStoreBackend {
    /// Which backend this is, as metrics label it.
    pub fn name(&self) -> &'static str {
        match self {
            EventStoreBackend::Sqlite(_) => "sqlite",
            EventStoreBackend::Postgres(_) => "postgres",
        }
    }

    /// The newest session ends in the store (at most `limit`), newest first, as the public log
    /// carries them: an instance that starts learns which access tokens not to accept.
    pub async fn recent_session_ends(
        &self,
        limit: i64,
    ) -> Result<Vec<aether_schemas::EventEnvelope>, StoreError> {
        let rows = self.session_ends(None, limit).await?;
        Ok(rows.into_iter().map(|(_, envelope)| envelope).collect())
    }

    /// The session ends after log position `after` (at most `limit`), oldest first, with
    /// their positions: how the embedded mode follows its own log for them.
    pub async fn session_ends_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, aether_schemas::EventEnvelope)>, StoreError> {
        self.session_ends(Some(after), limit).await
    }

    async fn session_ends(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, aether_schemas::EventEnvelope)>, StoreError> {
        use sqlx::Row;
        type Fields = (i64, String, String, i64, String, String, Value, Value);
        let (placeholder_after, placeholder_limit) = match self {
            EventStoreBackend::Sqlite(_) => ("?", "?"),
            EventStoreBackend::Postgres(_) => ("$1", "$2"),
        };
        let query = format!(
            "SELECT position, aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata FROM events \
             WHERE event_type IN ('SessionEnded', 'AllSessionsEnded') AND position > {placeholder_after} \
             ORDER BY position {} LIMIT {placeholder_limit}",
            if after.is_some() { "ASC" } else { "DESC" }
        );
        let after = after.unwrap_or(-1);
        let unavailable = |e: sqlx::Error| StoreError::Unavailable(e.to_string());
        let rows: Vec<Fields> = match self {
            EventStoreBackend::Sqlite(store) => {
                let rows = sqlx::query(&query)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(store.pool())
                    .await
                    .map_err(unavailable)?;
                rows.iter()
                    .filter_map(|row| {
                        let json = |column: &str| {
                            row.try_get::<String, _>(column)
                                .ok()
                                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                        };
                        Some((
                            row.try_get("position").ok()?,
                            row.try_get("aggregate_type").ok()?,
                            row.try_get("aggregate_id").ok()?,
                            row.try_get("sequence").ok()?,
                            row.try_get("event_type").ok()?,
                            row.try_get("event_version").ok()?,
                            json("payload")?,
                            json("metadata")?,
                        ))
                    })
                    .collect()
            }
            EventStoreBackend::Postgres(store) => {
                let rows = sqlx::query(&query)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(store.pool())
                    .await
                    .map_err(unavailable)?;
                rows.iter()
                    .filter_map(|row| {
                        Some((
                            row.try_get("position").ok()?,
                            row.try_get("aggregate_type").ok()?,
                            row.try_get("aggregate_id").ok()?,
                            row.try_get("sequence").ok()?,
                            row.try_get("event_type").ok()?,
                            row.try_get("event_version").ok()?,
                            row.try_get("payload").ok()?,
                            row.try_get("metadata").ok()?,
                        ))
                    })
                    .collect()
            }
        };
        Ok(rows
            .into_iter()
            .filter_map(
                |(
                    position,
                    aggregate_type,
                    aggregate_id,
                    sequence,
                    event_type,
                    version,
                    payload,
                    metadata,
                )| {
                    let envelope = aether_schemas::EventEnvelope::from_stored(
                        &aggregate_type,
                        &aggregate_id,
                        u64::try_from(sequence).ok()?,
                        &event_type,
                        &version,
                        payload,
                        &aether_schemas::Metadata::from_value(&metadata),
                    );
                    Some((position, envelope))
                },
            )
            .collect())
    }
}

/// The span of one append to the event store: a step of the request's trace (the events'
/// later hops are children of the request, not of this span).
fn append_span(backend: &'static str, events: usize) -> tracing::Span {
    tracing::info_span!(
        "event_store.append",
        otel.name = "event store append",
        backend,
        events
    )
}

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            EventStoreBackend::Sqlite($store) => $call,
            EventStoreBackend::Postgres($store) => $call,
        }
    };
}

impl PersistedEventRepository for EventStoreBackend {
    async fn get_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, store => store.get_events::<A>(id).await)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, store => store.get_last_events::<A>(id, last_sequence).await)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        delegate!(self, store => store.get_snapshot::<A>(id).await)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let started = std::time::Instant::now();
        let persisted =
            async { delegate!(self, store => store.persist::<A>(events, snapshot_update).await) }
                .instrument(append_span(self.name(), events.len()))
                .await;
        crate::metrics::append(self.name(), started.elapsed());
        persisted
    }

    async fn stream_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, store => store.stream_events::<A>(id).await)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, store => store.stream_all_events::<A>().await)
    }
}

impl WriteStore for EventStoreBackend {
    async fn append(&self, events: &[SerializedEvent]) -> Result<i64, PersistenceError> {
        let started = std::time::Instant::now();
        let appended = async { delegate!(self, store => store.append(events).await) }
            .instrument(append_span(self.name(), events.len()))
            .await;
        crate::metrics::append(self.name(), started.elapsed());
        appended
    }

    async fn lookup(&self, kind: DirectoryKind, key: &str) -> Result<Option<String>, StoreError> {
        delegate!(self, store => store.lookup(kind, key).await)
    }

    async fn position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Position, StoreError> {
        delegate!(self, store => store.position_of(aggregate_type, aggregate_id).await)
    }

    async fn chain_page(
        &self,
        after: Option<ChainCursor>,
        limit: usize,
    ) -> Result<Vec<ChainLink>, StoreError> {
        delegate!(self, store => store.chain_page(after, limit).await)
    }
}
