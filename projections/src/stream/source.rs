//! Reading the event topics from a checkpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
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
    consumer: BaseConsumer,
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
        let consumer = config
            .follower("aether-projector")
            .set("auto.offset.reset", "earliest")
            .create()?;
        Ok(Self {
            consumer,
            topics: topics.iter().map(|topic| config.topic(topic)).collect(),
        })
    }

    /// Every partition of the source's topics.
    pub fn partitions(&self) -> Result<Vec<TopicPartition>, KafkaError> {
        let mut all = Vec::new();
        for topic in &self.topics {
            let count = partitions(&self.consumer, topic)?;
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
    pub fn seek(&self, checkpoint: &Checkpoint) -> Result<(), KafkaError> {
        let mut assignment = TopicPartitionList::new();
        for partition in self.partitions()? {
            let offset = match checkpoint.next_offset(&partition) {
                Some(next) => Offset::Offset(next),
                None => Offset::Beginning,
            };
            assignment.add_partition_offset(&partition.topic, partition.partition, offset)?;
        }
        self.consumer.assign(&assignment)?;
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
        let mut batch = Vec::new();
        let mut names: BTreeMap<(String, i32), Arc<TopicPartition>> = BTreeMap::new();
        let started = Instant::now();
        let mut deadline = started + wait;
        while batch.len() < max {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let Some(message) = self.consumer.poll((deadline - now).min(POLL_SLICE)) else {
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
            .consumer
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
