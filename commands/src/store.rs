//! What the command side needs from an event store beyond cqrs-es's repository trait.

use std::future::Future;

use aether_schemas::audit::ChainLink;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};

/// The newest event of an aggregate: its log position (the consistency token a client can wait
/// on) and its aggregate sequence (the aggregate's version).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub log: i64,
    pub sequence: i64,
}

impl Position {
    /// From a `(position, sequence)` row, zeros when the aggregate has no events.
    pub fn from_row(row: Option<(i64, i64)>) -> Self {
        row.map_or_else(Self::default, |(log, sequence)| Self { log, sequence })
    }
}

/// Names one stored event: enough for any process that has the log to find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRef {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
}

impl EventRef {
    /// The opaque consistency token clients receive: `Type/id/sequence`.
    pub fn token(&self) -> String {
        format!(
            "{}/{}/{}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }

    pub fn parse_token(token: &str) -> Option<Self> {
        let mut parts = token.trim().splitn(3, '/');
        let aggregate_type = parts.next().filter(|part| !part.is_empty())?;
        let aggregate_id = parts.next().filter(|part| !part.is_empty())?;
        let sequence = parts
            .next()?
            .parse()
            .ok()
            .filter(|sequence| *sequence > 0)?;
        Some(Self {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence,
        })
    }
}

/// Where a command's last event was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Its position in this store's own log.
    pub log: i64,
    pub event: EventRef,
}

/// A write-side look-up table kept in step with the events by the store itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryKind {
    /// username → user id
    Username,
    /// channel id → server id
    Channel,
    /// invite code → server id
    Invite,
}

impl DirectoryKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::Username => "username",
            DirectoryKind::Channel => "channel",
            DirectoryKind::Invite => "invite",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("the event store could not be prepared: {0}")]
    Migration(String),
}

/// Raised (inside a `PersistenceError`) when an append would make a directory key ambiguous,
/// such as a second account with the same username.
#[derive(Debug, thiserror::Error)]
#[error("{kind} is already taken")]
pub struct DirectoryConflict {
    pub kind: &'static str,
}

/// An event repository with the directory and log positions the command service relies on.
pub trait WriteStore: PersistedEventRepository + Clone + 'static {
    fn lookup(
        &self,
        kind: DirectoryKind,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Appends one command's events (of one aggregate, consecutive sequences) atomically, as
    /// `persist` without a snapshot does, and returns the log position of the last one.
    fn append(
        &self,
        events: &[SerializedEvent],
    ) -> impl Future<Output = Result<i64, PersistenceError>> + Send;

    /// Where the newest event of one aggregate stands (zeros if it has none).
    fn position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Position, StoreError>> + Send;

    /// Up to `limit` stored events after `after` (an aggregate type, id and sequence) in
    /// (aggregate type, aggregate id, sequence) order, with their hash-chain fields: what
    /// `aether audit verify` walks.
    fn chain_page(
        &self,
        after: Option<ChainCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ChainLink>, StoreError>> + Send;
}

/// Where a page of the audit walk ends; the default is before the first event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainCursor {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
}

impl From<&ChainLink> for ChainCursor {
    fn from(link: &ChainLink) -> Self {
        Self {
            aggregate_type: link.aggregate_type.clone(),
            aggregate_id: link.aggregate_id.clone(),
            sequence: link.sequence,
        }
    }
}
