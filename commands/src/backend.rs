//! One event-store type for code that picks its backend at run time.

use aether_schemas::audit::ChainLink;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;

use crate::postgres::PgEventStore;
use crate::sqlite::SqliteEventStore;
use crate::store::{ChainCursor, DirectoryKind, Position, StoreError, WriteStore};

/// The embedded store or the distributed one.
#[derive(Clone, Debug)]
pub enum EventStoreBackend {
    Sqlite(SqliteEventStore),
    Postgres(PgEventStore),
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
        delegate!(self, store => store.persist::<A>(events, snapshot_update).await)
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
        delegate!(self, store => store.append(events).await)
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
