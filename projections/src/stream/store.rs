//! The port every distributed read-model store implements.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::source::{Checkpoint, StreamEvent};
use crate::updates::Update;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored checkpoint is not the one the batch started from: another instance of the same
    /// projection version wrote in between. The batch was not applied; re-read the checkpoint.
    #[error("the checkpoint moved: another projector instance is writing this projection version")]
    Fenced,
    /// Applying the event at `index` of the batch failed for a reason of its own (it cannot be
    /// decoded, it breaks a constraint). Nothing of the batch was applied.
    #[error("event {index} of the batch could not be applied: {reason}")]
    Event { index: usize, reason: String },
    /// The store could not be reached or failed for a reason unrelated to the events.
    #[error("read model store: {0}")]
    Unavailable(String),
}

/// What a committed batch did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Events that changed the read model.
    pub applied: usize,
    /// Duplicates (sequence already applied) and events of aggregates with a dead letter.
    pub ignored: usize,
    /// Events parked behind an earlier dead letter of their aggregate.
    pub parked: usize,
    /// What to tell the realtime edge, now that the batch is committed.
    pub updates: Vec<Update>,
}

/// An event the projector set aside after it failed too often.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetter {
    /// `topic/partition@offset`.
    pub location: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub sequence: Option<i64>,
    pub error: String,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
}

/// What re-applying the dead letters did.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Retried {
    pub applied: usize,
    pub still_failing: usize,
}

/// One version of one projection in its store.
///
/// Every write is one store transaction that also moves the checkpoint, and checks that the
/// checkpoint is still the one the caller started from, so two instances can never interleave.
#[async_trait]
pub trait ReadStore: Send + Sync + 'static {
    /// `name` and `version`, e.g. `catalog v2`.
    fn describe(&self) -> String;

    /// Creates the version's tables or collections if they do not exist. Idempotent.
    async fn prepare(&self) -> Result<(), StoreError>;

    /// The stored checkpoint (empty for a version never run).
    async fn checkpoint(&self) -> Result<Checkpoint, StoreError>;

    /// Applies `batch` and moves the checkpoint from `from` to `to`, in one transaction.
    /// Events at or below their aggregate's applied sequence are ignored; events of an aggregate
    /// that has a dead letter are parked behind it, so each aggregate keeps its order.
    async fn apply(
        &self,
        from: &Checkpoint,
        batch: &[StreamEvent],
        to: &Checkpoint,
    ) -> Result<Applied, StoreError>;

    /// Parks `event` with `error` and moves the checkpoint from `from` to `to`, in one
    /// transaction.
    async fn park(
        &self,
        from: &Checkpoint,
        event: &StreamEvent,
        error: &str,
        attempts: i32,
        to: &Checkpoint,
    ) -> Result<(), StoreError>;

    /// The parked events, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;

    /// Re-applies the parked events in the order they were parked; each one that applies is
    /// removed. An aggregate whose first parked event still fails keeps the rest parked.
    async fn retry_dead_letters(&self) -> Result<(Retried, Vec<Update>), StoreError>;

    /// The whole read model in a stable order, for comparing two builds.
    async fn dump(&self) -> Result<serde_json::Value, StoreError>;

    /// Drops the version's tables or collections, checkpoint included.
    async fn drop_version(&self) -> Result<(), StoreError>;
}
