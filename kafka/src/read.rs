//! Reading topics back: the tail the relay checks after a crash, and whole-topic replays.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{KafkaConfig, KafkaError};

/// The CloudEvents header that carries an event's id.
pub const EVENT_ID_HEADER: &str = "ce_id";

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A consumer outside any consumer group: it reads what it is assigned and commits nothing.
pub fn standalone_consumer(config: &KafkaConfig) -> Result<BaseConsumer, KafkaError> {
    Ok(config.follower("aether-reader").create()?)
}

/// A header's value as text.
pub fn header<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
    })
}

/// The number of partitions of `topic`.
pub fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<i32, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    i32::try_from(count).map_err(|e| KafkaError::Other(e.to_string()))
}

/// Reads every partition of `topic` from `start(low, high)` up to the high watermark as it was
/// when called, handing each message to `visit`. Blocking: run it on a blocking thread.
pub fn read_until_now(
    config: &KafkaConfig,
    topic: &str,
    start: impl Fn(i64, i64) -> i64,
    visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, KafkaError> {
    read_from(config, topic, |_, low, high| start(low, high), None, visit)
}

/// Reads every partition of `topic` from `start(partition, low, high)`, handing each message
/// to `visit`: up to the high watermarks as they were when called, or, with `follow`, on as
/// new messages arrive until the flag is set. Returns how many were visited. Blocking: run it
/// on a blocking thread.
pub fn read_from(
    config: &KafkaConfig,
    topic: &str,
    start: impl Fn(i32, i64, i64) -> i64,
    follow: Option<&AtomicBool>,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, KafkaError> {
    let consumer = standalone_consumer(config)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0_i64;
    let mut ends = Vec::new();
    for partition in 0..partitions(&consumer, topic)? {
        let (low, high) = consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
        let from = start(partition, low, high).clamp(low, high);
        if from < high || follow.is_some() {
            assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
            remaining += high - from;
            ends.push((partition, high));
        }
    }
    if remaining == 0 && follow.is_none() {
        return Ok(0);
    }
    consumer.assign(&assignment)?;
    let mut read = 0_u64;
    let mut last_progress = std::time::Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(error)) => return Err(error.into()),
            Some(Ok(message)) => {
                last_progress = std::time::Instant::now();
                let end = ends
                    .iter()
                    .find(|(partition, _)| *partition == message.partition())
                    .map_or(0, |(_, high)| *high);
                if follow.is_some() || message.offset() < end {
                    visit(&message);
                    read += 1;
                }
            }
            None => {}
        }
        if let Some(stop) = follow {
            if stop.load(Ordering::Relaxed) {
                return Ok(read);
            }
            continue;
        }
        // Offsets may have gaps, so a partition is done when the consumer's position has
        // reached the end, not when a message with offset end-1 was seen.
        let positions = consumer.position()?;
        let finished = ends.iter().all(|(partition, high)| {
            positions
                .find_partition(topic, *partition)
                .and_then(|tp| match tp.offset() {
                    Offset::Offset(offset) => Some(offset >= *high),
                    _ => None,
                })
                .unwrap_or(false)
        });
        if finished {
            return Ok(read);
        }
        if last_progress.elapsed() > Duration::from_secs(30) {
            return Err(KafkaError::Other(format!(
                "{topic}: no progress for 30 s before the end was reached \
                 (ends {ends:?}, positions {positions:?})"
            )));
        }
    }
}

/// For each partition of `topic`, the offset of its first message with a timestamp at or after
/// `millis` (Unix milliseconds); a partition with none maps to `i64::MAX` (its end).
pub fn offsets_for_time(
    config: &KafkaConfig,
    topic: &str,
    millis: i64,
) -> Result<HashMap<i32, i64>, KafkaError> {
    let consumer = standalone_consumer(config)?;
    let mut query = TopicPartitionList::new();
    for partition in 0..partitions(&consumer, topic)? {
        query.add_partition_offset(topic, partition, Offset::Offset(millis))?;
    }
    let found = consumer.offsets_for_times(query, METADATA_TIMEOUT)?;
    Ok(found
        .elements()
        .iter()
        .map(|element| {
            let offset = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => i64::MAX,
            };
            (element.partition(), offset)
        })
        .collect())
}

/// The event ids among the last `per_partition` messages of each partition of `topic`.
pub fn recent_event_ids(
    config: &KafkaConfig,
    topic: &str,
    per_partition: i64,
) -> Result<HashSet<String>, KafkaError> {
    let mut ids = HashSet::new();
    read_until_now(
        config,
        topic,
        |_, high| high - per_partition,
        |message| {
            if let Some(id) = header(message, EVENT_ID_HEADER) {
                ids.insert(id.to_owned());
            }
        },
    )?;
    Ok(ids)
}
