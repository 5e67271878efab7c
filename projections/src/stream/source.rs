//! Reading the event topics from a checkpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_kafka::read::partitions;
use aether_kafka::{KafkaConfig, KafkaError};
use aether_schemas::EventEnvelope;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// One partition of one topic, by its broker-side name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// What a message of an event topic held.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Event(Box<EventEnvelope>),
    /// A value that is not an event envelope: it is parked as a dead letter, never applied.
    Malformed {
        raw: String,
        reason: String,
    },
}

/// One message of a topic, where it was read, with its payload decoded as `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct Polled<T> {
    pub partition: Arc<TopicPartition>,
    pub offset: i64,
    pub payload: T,
    /// The message's `traceparent` header: the trace the event (or update) belongs to, whose
    /// next hop is a child of it. `None` for untraced messages and other sources.
    pub traceparent: Option<String>,
}

/// One message of an event topic, where it was read.
pub type StreamEvent = Polled<Payload>;

impl Polled<Payload> {
    pub fn envelope(&self) -> Option<&EventEnvelope> {
        match &self.payload {
            Payload::Event(envelope) => Some(envelope),
            Payload::Malformed { .. } => None,
        }
    }

    /// The aggregate it belongs to, if it could be read.
    pub fn aggregate_id(&self) -> Option<&str> {
        self.envelope().map(|e| e.aggregate_id.as_str())
    }

    /// The aggregate sequence as the stores keep it.
    pub fn sequence(&self) -> i64 {
        self.envelope()
            .map(|e| i64::try_from(e.sequence).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    /// `topic/partition@offset`: where an operator finds it on the broker.
    pub fn location(&self) -> String {
        format!("{}@{}", self.partition, self.offset)
    }

    pub fn decode(raw: &[u8]) -> Payload {
        match serde_json::from_slice::<EventEnvelope>(raw) {
            Ok(envelope) => Payload::Event(Box::new(envelope)),
            Err(error) => Payload::Malformed {
                raw: String::from_utf8_lossy(raw).into_owned(),
                reason: error.to_string(),
            },
        }
    }
}

/// The next offset to read in each partition a projector has seen. A partition it has never
/// seen is read from the beginning.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint(BTreeMap<TopicPartition, i64>);

impl Checkpoint {
    pub fn next_offset(&self, partition: &TopicPartition) -> Option<i64> {
        self.0.get(partition).copied()
    }

    pub fn set(&mut self, partition: TopicPartition, next_offset: i64) {
        self.0.insert(partition, next_offset);
    }

    /// Whether this checkpoint is at or past `other` on every topic partition `other` has
    /// read (the position in the event store a build may have started from aside).
    pub fn covers(&self, other: &Checkpoint) -> bool {
        other
            .0
            .iter()
            .filter(|(partition, _)| partition.topic != super::event_store::EVENT_STORE_TOPIC)
            .all(|(partition, offset)| self.next_offset(partition).unwrap_or(0) >= *offset)
    }

    /// This checkpoint moved past every event of `batch`.
    pub fn after(&self, batch: &[StreamEvent]) -> Checkpoint {
        let mut next = self.clone();
        for event in batch {
            let entry = next.0.entry((*event.partition).clone()).or_insert(0);
            *entry = (*entry).max(event.offset + 1);
        }
        next
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, i64)> {
        self.0
            .iter()
            .map(|(partition, offset)| (partition, *offset))
    }

    /// Events consumed from Kafka in all: the sum of next offsets (a rebuild's pass over the
    /// event store does not count).
    pub fn total(&self) -> i64 {
        self.0
            .iter()
            .filter(|(partition, _)| partition.topic != super::event_store::EVENT_STORE_TOPIC)
            .map(|(_, next)| next)
            .sum()
    }
}

/// How far a checkpoint is behind the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lag {
    /// Events on the broker the checkpoint has not passed yet.
    pub events: i64,
    /// Events on the broker in all (high watermarks summed).
    pub log_end: i64,
}

const POLL_SLICE: Duration = Duration::from_millis(100);

/// A reader of every partition of the event topics, outside any consumer group: it starts where
/// the checkpoint says and commits nothing to the broker.
pub struct KafkaSource {
    config: KafkaConfig,
    /// Replaced by a fresh consumer at every seek after the first (see [`Self::seek`]).
    consumer: Mutex<Arc<BaseConsumer>>,
    assigned: AtomicBool,
    topics: Vec<String>,
}

impl fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topics", &self.topics)
            .finish()
    }
}

impl KafkaSource {
    /// A reader of the given catalogue topics (names without the deployment prefix).
    pub fn new(config: &KafkaConfig, topics: &[&str]) -> Result<Self, KafkaError> {
        Ok(Self {
            consumer: Mutex::new(Arc::new(Self::reader(config)?)),
            config: config.clone(),
            assigned: AtomicBool::new(false),
            topics: topics.iter().map(|topic| config.topic(topic)).collect(),
        })
    }

    fn reader(config: &KafkaConfig) -> Result<BaseConsumer, KafkaError> {
        Ok(config
            .follower("aether-projector")
            .set("auto.offset.reset", "earliest")
            .create()?)
    }

    fn consumer(&self) -> Arc<BaseConsumer> {
        self.consumer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every partition of the source's topics.
    pub fn partitions(&self) -> Result<Vec<TopicPartition>, KafkaError> {
        let mut all = Vec::new();
        for topic in &self.topics {
            let count = partitions(&self.consumer(), topic)?;
            if count == 0 {
                return Err(KafkaError::Other(format!(
                    "topic {topic} does not exist: run `aether kafka init`"
                )));
            }
            all.extend((0..count).map(|partition| TopicPartition {
                topic: topic.clone(),
                partition,
            }));
        }
        Ok(all)
    }

    /// Assigns every partition, each at its checkpointed offset (or the beginning). Blocking.
    ///
    /// A seek after the first (a projector resumed, or reloading after a failed batch) assigns
    /// on a fresh consumer: librdkafka (through 2.15) can abort the process with
    /// `rd_kafka_assignment_partition_stopped: Assertion 'rktp->rktp_started' failed` when an
    /// assignment replaces one whose partitions are still stopping, which a rebuild's catch-up
    /// did now and then.
    pub fn seek(&self, checkpoint: &Checkpoint) -> Result<(), KafkaError> {
        let mut assignment = TopicPartitionList::new();
        for partition in self.partitions()? {
            let offset = match checkpoint.next_offset(&partition) {
                Some(next) => Offset::Offset(next),
                None => Offset::Beginning,
            };
            assignment.add_partition_offset(&partition.topic, partition.partition, offset)?;
        }
        let consumer = if self.assigned.swap(true, Ordering::SeqCst) {
            let fresh = Arc::new(Self::reader(&self.config)?);
            *self
                .consumer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
            fresh
        } else {
            self.consumer()
        };
        consumer.assign(&assignment)?;
        Ok(())
    }

    /// Up to `max` messages: waits up to `wait` for the first, then takes what else arrives
    /// within `linger`. Blocking: call it from a blocking thread.
    pub fn poll_batch(
        &self,
        max: usize,
        wait: Duration,
        linger: Duration,
    ) -> Result<Vec<StreamEvent>, KafkaError> {
        self.poll_raw(max, wait, linger, StreamEvent::decode)
    }

    /// As [`Self::poll_batch`], each payload read with `decode` instead of as an envelope (the
    /// updates topic carries other JSON).
    pub fn poll_raw<T>(
        &self,
        max: usize,
        wait: Duration,
        linger: Duration,
        decode: impl Fn(&[u8]) -> T,
    ) -> Result<Vec<Polled<T>>, KafkaError> {
        let consumer = self.consumer();
        let mut batch = Vec::new();
        let mut names: BTreeMap<(String, i32), Arc<TopicPartition>> = BTreeMap::new();
        let started = Instant::now();
        let mut deadline = started + wait;
        while batch.len() < max {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let Some(message) = consumer.poll((deadline - now).min(POLL_SLICE)) else {
                continue;
            };
            let message = message?;
            let partition = names
                .entry((message.topic().to_owned(), message.partition()))
                .or_insert_with(|| {
                    Arc::new(TopicPartition {
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                    })
                })
                .clone();
            batch.push(Polled {
                partition,
                offset: message.offset(),
                payload: decode(message.payload().unwrap_or_default()),
                traceparent: aether_kafka::trace::header(message.headers()),
            });
            if batch.len() == 1 {
                deadline = Instant::now() + linger;
            }
        }
        Ok(batch)
    }

    /// Where every partition ends now: a checkpoint that [`Self::seek`]s to new messages only.
    /// Blocking.
    pub fn log_ends(&self) -> Result<Checkpoint, KafkaError> {
        let partitions = self.partitions()?;
        let mut checkpoint = Checkpoint::default();
        for (partition, end) in self.offsets_at(&partitions, Offset::End)? {
            checkpoint.set(partition, end);
        }
        Ok(checkpoint)
    }

    /// How far `checkpoint` is behind the broker's high watermarks. Blocking.
    ///
    /// One `ListOffsets` request for the log ends of every partition (and one for the log
    /// starts of partitions the checkpoint has not seen), not two requests per partition: the
    /// projector asks every few seconds, in line with its batches, and on the test broker the
    /// per-partition requests cost a rebuild about a quarter of its rate.
    pub fn lag(&self, checkpoint: &Checkpoint) -> Result<Lag, KafkaError> {
        let partitions = self.partitions()?;
        let ends = self.offsets_at(&partitions, Offset::End)?;
        let unseen: Vec<TopicPartition> = partitions
            .iter()
            .filter(|partition| checkpoint.next_offset(partition).is_none())
            .cloned()
            .collect();
        let starts = if unseen.is_empty() {
            BTreeMap::new()
        } else {
            self.offsets_at(&unseen, Offset::Beginning)?
        };
        let mut lag = Lag::default();
        for partition in &partitions {
            let high = ends.get(partition).copied().ok_or_else(|| {
                KafkaError::Other(format!("no log end for {partition} in the broker's answer"))
            })?;
            let next = checkpoint
                .next_offset(partition)
                .or_else(|| starts.get(partition).copied())
                .unwrap_or(0);
            lag.events += (high - next).max(0);
            lag.log_end += high;
        }
        Ok(lag)
    }

    /// The offsets of `partitions` at `at` (`Offset::End`: the log end, `Offset::Beginning`:
    /// the log start), in one request per broker.
    fn offsets_at(
        &self,
        partitions: &[TopicPartition],
        at: Offset,
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        let mut query = TopicPartitionList::new();
        for partition in partitions {
            query.add_partition_offset(&partition.topic, partition.partition, at)?;
        }
        let answer = self
            .consumer()
            .offsets_for_times(query, Duration::from_secs(10))?;
        let mut offsets = BTreeMap::new();
        for element in answer.elements() {
            element.error()?;
            let partition = TopicPartition {
                topic: element.topic().to_owned(),
                partition: element.partition(),
            };
            match element.offset() {
                Offset::Offset(offset) => {
                    offsets.insert(partition, offset);
                }
                other => {
                    return Err(KafkaError::Other(format!(
                        "{partition}: the broker answered {other:?} for {at:?}"
                    )))
                }
            }
        }
        Ok(offsets)
    }
}

/// A standalone reader for one-off looks at the log (the operator CLI's lag column).
pub fn lag_of(
    config: &KafkaConfig,
    topics: &[&str],
    checkpoint: &Checkpoint,
) -> Result<Lag, KafkaError> {
    KafkaSource::new(config, topics)?.lag(checkpoint)
}

/// Why a source could not be read: the broker or the log is away. Never the events' fault;
/// the projector waits and tries again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

impl From<KafkaError> for SourceError {
    fn from(error: KafkaError) -> Self {
        Self(error.to_string())
    }
}

/// Where a projector reads events from: the Kafka event topics (distributed mode) or the
/// event store's own log (embedded mode). Positions are [`Checkpoint`]s in both.
#[async_trait::async_trait]
pub trait EventSource: Send + Sync + 'static {
    /// Reads on from `checkpoint` (the beginning where it names nothing).
    async fn seek(&self, checkpoint: &Checkpoint) -> Result<(), SourceError>;

    /// Up to `max` events: waits up to `wait` for the first, then takes what else arrives
    /// within `linger`.
    async fn poll_batch(
        &self,
        max: usize,
        wait: Duration,
        linger: Duration,
    ) -> Result<Vec<StreamEvent>, SourceError>;

    /// How far `checkpoint` is behind the source's end.
    async fn lag(&self, checkpoint: &Checkpoint) -> Result<Lag, SourceError>;
}

/// The event topics as an [`EventSource`]: each blocking broker call on a blocking thread.
struct KafkaEvents(Arc<KafkaSource>);

impl KafkaEvents {
    async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&KafkaSource) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, SourceError> {
        let source = self.0.clone();
        tokio::task::spawn_blocking(move || work(&source))
            .await
            .map_err(|e| SourceError(format!("kafka reader task: {e}")))?
            .map_err(SourceError::from)
    }
}

#[async_trait::async_trait]
impl EventSource for KafkaEvents {
    async fn seek(&self, checkpoint: &Checkpoint) -> Result<(), SourceError> {
        let checkpoint = checkpoint.clone();
        self.call(move |source| source.seek(&checkpoint)).await
    }

    async fn poll_batch(
        &self,
        max: usize,
        wait: Duration,
        linger: Duration,
    ) -> Result<Vec<StreamEvent>, SourceError> {
        self.call(move |source| source.poll_batch(max, wait, linger))
            .await
    }

    async fn lag(&self, checkpoint: &Checkpoint) -> Result<Lag, SourceError> {
        let checkpoint = checkpoint.clone();
        self.call(move |source| source.lag(&checkpoint)).await
    }
}

impl From<KafkaSource> for Arc<dyn EventSource> {
    fn from(source: KafkaSource) -> Self {
        Arc::new(KafkaEvents(Arc::new(source)))
    }
}

/// The pseudo-topic of the embedded mode's log: its "offset" is the event store's position.
pub const LOG_TOPIC: &str = "log";

/// The embedded mode's event store as an [`EventSource`]: one partition, offsets are log
/// positions, woken by the store's commits.
pub struct EventLogSource {
    log: Arc<dyn aether_schemas::EventLog>,
    partition: Arc<TopicPartition>,
    /// The position read up to.
    after: std::sync::Mutex<i64>,
}

impl fmt::Debug for EventLogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLogSource").finish_non_exhaustive()
    }
}

impl EventLogSource {
    pub fn new(log: Arc<dyn aether_schemas::EventLog>) -> Self {
        Self {
            log,
            partition: Arc::new(Self::partition()),
            after: std::sync::Mutex::new(0),
        }
    }

    /// The one partition of the log.
    pub fn partition() -> TopicPartition {
        TopicPartition {
            topic: LOG_TOPIC.to_owned(),
            partition: 0,
        }
    }

    /// The log position `checkpoint` has applied up to.
    pub fn position(checkpoint: &Checkpoint) -> i64 {
        checkpoint
            .next_offset(&Self::partition())
            .map_or(0, |next| next - 1)
    }

    fn after(&self) -> i64 {
        *self.after.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl EventSource for EventLogSource {
    async fn seek(&self, checkpoint: &Checkpoint) -> Result<(), SourceError> {
        *self.after.lock().unwrap_or_else(|p| p.into_inner()) = Self::position(checkpoint);
        Ok(())
    }

    async fn poll_batch(
        &self,
        max: usize,
        wait: Duration,
        _linger: Duration,
    ) -> Result<Vec<StreamEvent>, SourceError> {
        let mut head = self.log.head();
        let after = self.after();
        // Seen before reading, so a commit after the read wakes the wait below.
        head.borrow_and_update();
        let mut events = self
            .log
            .read_after(after, max)
            .await
            .map_err(|e| SourceError(e.to_string()))?;
        if events.is_empty() {
            // The wait ends early on a commit; a lapse returns an empty batch, as Kafka's does.
            let _ = tokio::time::timeout(wait, head.changed()).await;
            events = self
                .log
                .read_after(after, max)
                .await
                .map_err(|e| SourceError(e.to_string()))?;
        }
        if let Some(last) = events.last() {
            *self.after.lock().unwrap_or_else(|p| p.into_inner()) = last.position;
        }
        Ok(events
            .into_iter()
            .map(|event| StreamEvent {
                partition: self.partition.clone(),
                offset: event.position,
                payload: Payload::Event(Box::new(event.envelope)),
                traceparent: event.traceparent,
            })
            .collect())
    }

    async fn lag(&self, checkpoint: &Checkpoint) -> Result<Lag, SourceError> {
        let head = *self.log.head().borrow();
        Ok(Lag {
            events: (head - Self::position(checkpoint)).max(0),
            // As a topic's high watermark: the offset the next event gets (positions start at 1).
            log_end: if head > 0 { head + 1 } else { 0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(entries: &[(&str, i32, i64)]) -> Checkpoint {
        let mut checkpoint = Checkpoint::default();
        for (topic, partition, offset) in entries {
            checkpoint.set(
                TopicPartition {
                    topic: (*topic).to_owned(),
                    partition: *partition,
                },
                *offset,
            );
        }
        checkpoint
    }

    #[test]
    fn a_checkpoint_covers_another_only_where_it_is_at_or_past_it_on_every_partition() {
        let live = at(&[("messages", 0, 10), ("messages", 1, 4)]);
        assert!(at(&[("messages", 0, 10), ("messages", 1, 4)]).covers(&live));
        assert!(at(&[("messages", 0, 12), ("messages", 1, 9), ("users", 0, 1)]).covers(&live));
        assert!(!at(&[("messages", 0, 12), ("messages", 1, 3)]).covers(&live));
        // A partition never read counts as read from the start.
        assert!(!at(&[("messages", 0, 10)]).covers(&live));
        assert!(at(&[]).covers(&at(&[("messages", 0, 0)])));
    }
}
