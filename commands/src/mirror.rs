//! Mirrors the Kafka event topics into a local SQLite log, so that an API instance in the
//! distributed mode runs the same projectors, over the same log interface, as the embedded mode.
//!
//! Each instance reads every partition itself (no consumer group): every instance sees every
//! event, which is what its subscriptions need. Offsets are stored in the local log in the same
//! transaction as the events, so a restart resumes exactly where the log stands; a redelivered
//! event is ignored by its (aggregate, sequence).

use std::collections::HashMap;
use std::time::Duration;

use aether_kafka::backoff::Backoff;
use aether_kafka::read::{header, partitions, standalone_consumer};
use aether_kafka::KafkaConfig;
use aether_schemas::{topics, EventEnvelope};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::sqlite::{MirroredEvent, SqliteEventStore};
use crate::store::StoreError;

/// Messages written per local transaction, at most.
const BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Kafka(#[from] aether_kafka::KafkaError),
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn mirrored(message: &BorrowedMessage<'_>) -> Option<MirroredEvent> {
    let envelope: EventEnvelope = match message.payload().map(serde_json::from_slice) {
        Some(Ok(envelope)) => envelope,
        _ => {
            tracing::error!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "undecodable message skipped"
            );
            return None;
        }
    };
    Some(MirroredEvent {
        routing_key: message
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .unwrap_or_else(|| envelope.aggregate_id.clone()),
        prev_hash: header(message, "aether-prev-hash")
            .unwrap_or_default()
            .to_owned(),
        hash: header(message, "aether-hash")
            .unwrap_or_default()
            .to_owned(),
        envelope,
    })
}

/// The first and the longest pause between attempts after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `shutdown`, keeping `local` in step with the event topics. Broker and local-store
/// failures are waited out with backoff; only a failure at start-up ends it.
pub async fn run_mirror(
    local: SqliteEventStore,
    kafka: KafkaConfig,
    shutdown: CancellationToken,
) -> Result<(), MirrorError> {
    let stored: HashMap<(String, i32), i64> = local
        .mirror_offsets()
        .await?
        .into_iter()
        .map(|(topic, partition, next)| ((topic, partition), next))
        .collect();
    let counts = {
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, i32)>, MirrorError> {
            let probe = standalone_consumer(&kafka)?;
            topics::EVENT_TOPICS
                .iter()
                .map(|topic| {
                    let name = kafka.topic(topic);
                    let count = partitions(&probe, &name)?;
                    Ok((name, count))
                })
                .collect()
        })
        .await
        .map_err(|e| aether_kafka::KafkaError::Other(e.to_string()))??
    };
    let mut assignment = TopicPartitionList::new();
    for (topic, count) in &counts {
        for partition in 0..*count {
            let offset = stored
                .get(&(topic.clone(), partition))
                .map_or(Offset::Beginning, |next| Offset::Offset(*next));
            assignment.add_partition_offset(topic, partition, offset)?;
        }
    }
    // The mirror is on the read-your-writes path of every query that carries a consistency
    // token: it follows the topics live.
    let consumer: StreamConsumer = kafka.follower("aether-mirror").create()?;
    consumer.assign(&assignment)?;
    tracing::info!(partitions = assignment.count(), "mirroring the event log");
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        // A consume error (the broker restarting, a connection timing out) is transient: the
        // client reconnects by itself and the assignment resumes where it stood.
        let first = match first {
            Ok(first) => {
                backoff.reset();
                first
            }
            Err(error) => {
                tracing::warn!(%error, backoff_ms = backoff.next_wait().as_millis() as u64, "the mirror cannot read the event topics; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        let mut events = Vec::new();
        let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
        let take = |message: &BorrowedMessage<'_>,
                    events: &mut Vec<MirroredEvent>,
                    offsets: &mut HashMap<(String, i32), i64>| {
            events.extend(mirrored(message));
            offsets.insert(
                (message.topic().to_owned(), message.partition()),
                message.offset() + 1,
            );
        };
        take(&first, &mut events, &mut offsets);
        drop(first);
        while events.len() < BATCH {
            match tokio::time::timeout(Duration::from_millis(5), consumer.recv()).await {
                Ok(Ok(received)) => take(&received, &mut events, &mut offsets),
                // What was read so far is written; the next read meets the error again.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let offsets: Vec<(String, i32, i64)> = offsets
            .into_iter()
            .map(|((topic, partition), next)| (topic, partition, next))
            .collect();
        // The consumer has moved past these events: they are written, or retried, never
        // dropped.
        while let Err(error) = local.append_mirrored(&events, &offsets).await {
            tracing::warn!(%error, backoff_ms = backoff.next_wait().as_millis() as u64, "the mirror cannot write its local log; retrying");
            if !backoff.wait(&shutdown).await {
                return Ok(());
            }
        }
    }
    tracing::info!("mirror stopped");
    Ok(())
}
