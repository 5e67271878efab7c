//! The port every distributed read-model store implements.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::source::{Checkpoint, Payload, StreamEvent};
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

    /// When the checkpoint last moved, if it ever did.
    async fn last_progress(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

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

/// Why an event was parked without being tried: its aggregate already has a dead letter.
pub const HELD_BEHIND: &str = "parked behind an earlier dead letter of the same aggregate";

/// A batch sorted by the per-aggregate sequence guard, the same way in every store.
#[derive(Debug, Default)]
pub struct Sorted<'a> {
    /// Events to apply, in batch order, with their index in the batch.
    pub fresh: Vec<(usize, &'a StreamEvent)>,
    /// Events to park behind an earlier dead letter of their aggregate ([`HELD_BEHIND`]).
    pub held: Vec<&'a StreamEvent>,
    /// Duplicates: at or below their aggregate's applied sequence.
    pub ignored: usize,
    /// The applied sequence of every aggregate `fresh` touches, once they are applied.
    pub sequences: BTreeMap<String, i64>,
}

/// The distinct aggregates of a batch: what a store looks up before sorting it.
pub fn aggregate_ids(batch: &[StreamEvent]) -> Vec<String> {
    batch
        .iter()
        .filter_map(|event| event.aggregate_id().map(str::to_owned))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Sorts `batch` given the aggregates that have dead letters (`parked`) and the sequence
/// applied so far per aggregate (`applied`). A value that is not an envelope fails the batch,
/// blamed on its index.
pub fn sort_batch<'a>(
    batch: &'a [StreamEvent],
    parked: &HashSet<String>,
    applied: &HashMap<String, i64>,
) -> Result<Sorted<'a>, StoreError> {
    let mut sorted = Sorted::default();
    for (index, event) in batch.iter().enumerate() {
        let aggregate = match &event.payload {
            Payload::Event(envelope) => envelope.aggregate_id.as_str(),
            Payload::Malformed { reason, .. } => {
                return Err(StoreError::Event {
                    index,
                    reason: format!("not an event envelope: {reason}"),
                })
            }
        };
        if parked.contains(aggregate) {
            sorted.held.push(event);
            continue;
        }
        let sequence = event.sequence();
        let seen = sorted
            .sequences
            .get(aggregate)
            .or_else(|| applied.get(aggregate))
            .copied()
            .unwrap_or(0);
        if sequence <= seen {
            sorted.ignored += 1;
            continue;
        }
        sorted.sequences.insert(aggregate.to_owned(), sequence);
        sorted.fresh.push((index, event));
    }
    Ok(sorted)
}

/// What every store records of a parked event: its payload as it arrived (the envelope, or the
/// unreadable value itself) and, if it could be read, which event it is.
pub(crate) struct DeadLetterFields {
    pub payload: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub sequence: Option<i64>,
}

impl DeadLetterFields {
    pub fn of(event: &StreamEvent) -> Self {
        match &event.payload {
            Payload::Event(envelope) => Self {
                payload: serde_json::to_string(envelope).unwrap_or_default(),
                event_id: Some(envelope.id.to_string()),
                event_type: Some(envelope.event_type.clone()),
                aggregate_id: Some(envelope.aggregate_id.clone()),
                sequence: Some(event.sequence()),
            },
            Payload::Malformed { raw, .. } => Self {
                payload: raw.clone(),
                event_id: None,
                event_type: None,
                aggregate_id: None,
                sequence: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::stream::source::TopicPartition;

    fn event(aggregate: &str, sequence: u64, offset: i64) -> StreamEvent {
        let raw = serde_json::json!({
            "id": uuid::Uuid::new_v4(), "type": "T", "version": "1.0",
            "aggregate_type": "Message", "aggregate_id": aggregate, "sequence": sequence,
            "occurred_at": "2026-11-23T12:00:00Z", "actor": null,
            "correlation_id": "c", "causation_id": "c", "data": {}
        });
        StreamEvent {
            partition: Arc::new(TopicPartition {
                topic: "t".to_owned(),
                partition: 0,
            }),
            offset,
            payload: StreamEvent::decode(raw.to_string().as_bytes()),
            traceparent: None,
        }
    }

    #[test]
    fn duplicates_are_ignored_held_aggregates_wait_and_the_rest_is_fresh() {
        let batch = vec![
            event("a", 1, 0),
            event("a", 2, 1),
            event("a", 2, 2),
            event("b", 3, 3),
            event("c", 1, 4),
        ];
        let parked = HashSet::from(["c".to_owned()]);
        let applied = HashMap::from([("b".to_owned(), 5)]);
        let sorted = sort_batch(&batch, &parked, &applied).map_err(|e| e.to_string());
        let Ok(sorted) = sorted else {
            panic!("{sorted:?}");
        };
        let fresh: Vec<usize> = sorted.fresh.iter().map(|(index, _)| *index).collect();
        assert_eq!(fresh, vec![0, 1]);
        assert_eq!(sorted.ignored, 2, "a#2 again, and b#3 below b's 5");
        assert_eq!(sorted.held.len(), 1);
        assert_eq!(sorted.sequences.get("a"), Some(&2));
        assert!(!sorted.sequences.contains_key("b"));
    }

    #[test]
    fn a_value_that_is_not_an_envelope_is_blamed_on_its_index() {
        let mut batch = vec![event("a", 1, 0)];
        batch.push(StreamEvent {
            offset: 1,
            payload: StreamEvent::decode(b"junk"),
            ..batch[0].clone()
        });
        let outcome = sort_batch(&batch, &HashSet::new(), &HashMap::new());
        assert!(matches!(outcome, Err(StoreError::Event { index: 1, .. })));
    }
}

/// A parked event as a store keeps it, for [`retry_in_order`].
#[derive(Debug)]
pub struct Parked {
    /// The store's id of the dead letter (increasing in parking order).
    pub id: i64,
    pub aggregate_id: Option<String>,
    pub event: StreamEvent,
}

/// How one store re-applies one parked event.
#[async_trait]
pub trait RetryParked: Send + Sync {
    /// Removes the dead letter and applies its event, in one transaction. `Some(updates)` once
    /// committed; `None` when it still fails, with nothing changed but its attempts counted.
    async fn retry_parked(&self, parked: &Parked) -> Result<Option<Vec<Update>>, StoreError>;
}

/// Re-applies `letters` (oldest first). Once one event of an aggregate still fails, the later
/// ones of that aggregate stay parked behind it, so no aggregate is applied out of order.
pub async fn retry_in_order(
    store: &dyn RetryParked,
    letters: Vec<Parked>,
) -> Result<(Retried, Vec<Update>), StoreError> {
    let mut retried = Retried::default();
    let mut updates = Vec::new();
    let mut blocked: HashSet<String> = HashSet::new();
    for parked in letters {
        if let Some(aggregate) = &parked.aggregate_id {
            if blocked.contains(aggregate) {
                retried.still_failing += 1;
                continue;
            }
        }
        match store.retry_parked(&parked).await? {
            Some(mut applied) => {
                retried.applied += 1;
                updates.append(&mut applied);
            }
            None => {
                retried.still_failing += 1;
                if let Some(aggregate) = parked.aggregate_id {
                    blocked.insert(aggregate);
                }
            }
        }
    }
    Ok((retried, updates))
}
