//! The relay: publishes the PostgreSQL outbox to Kafka.
//!
//! Rows are read in position order and deleted once the broker has acknowledged them, so a row
//! whose transaction commits late (with a lower position than rows already published) is simply
//! found on a later pass: nothing is skipped. Events of one aggregate are always inserted by
//! transactions that committed one after another, so their positions — and their order on
//! Kafka — follow their sequence.
//!
//! Exactly once: the producer is idempotent within a session. Across a crash between the
//! broker's acknowledgement and the outbox delete, the rows that were handed to the producer are
//! still listed in `relay_inflight`; on start (and after a failed batch) the relay reads that
//! many messages back from the tail of every topic and drops rows whose event id is already
//! there. Only one relay publishes at a time (a PostgreSQL advisory lock); others wait as hot
//! standbys.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_kafka::read::{recent_event_ids, EVENT_ID_HEADER};
use aether_kafka::KafkaConfig;
use aether_schemas::{topics, EventEnvelope, Metadata};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The advisory-lock key that elects the publishing relay.
const RELAY_LOCK: i64 = 0x6165_7468_6572; // "aether"

#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Outbox rows published per round trip.
    pub batch_size: i64,
    /// Longest wait between retries while the broker is unreachable.
    pub max_backoff: Duration,
    /// For benchmarks: where to record each published event's command→Kafka latency. `None`
    /// (the default) records nothing.
    pub latency: Option<LatencyRecorder>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            max_backoff: Duration::from_secs(10),
            latency: None,
        }
    }
}

/// Command→Kafka latencies in microseconds, shared between the relay and whoever reads them
/// (the write-path benchmark). For each event the broker acknowledged, the relay records the
/// acknowledgement time minus the envelope's `occurred_at`, the time the command was decided.
/// Both are wall-clock readings of the same host, so this only means something when the API and
/// the relay share a clock. Clones share one list.
#[derive(Clone, Debug, Default)]
pub struct LatencyRecorder(Arc<Mutex<Vec<u32>>>);

impl LatencyRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one event acknowledged at `acked_at`; negative spans count as 0, longer than
    /// `u32::MAX` µs (71 minutes) as `u32::MAX`.
    pub fn record(&self, occurred_at: DateTime<Utc>, acked_at: DateTime<Utc>) {
        let micros = (acked_at - occurred_at)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        let micros = u32::try_from(micros.max(0)).unwrap_or(u32::MAX);
        if let Ok(mut samples) = self.0.lock() {
            samples.push(micros);
        }
    }

    /// Everything recorded since the last `take`, in the order acknowledged; empties the list.
    pub fn take(&self) -> Vec<u32> {
        self.0
            .lock()
            .map(|mut samples| std::mem::take(&mut *samples))
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event store: {0}")]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Kafka(#[from] aether_kafka::KafkaError),
    #[error("outbox row at position {position} is unreadable: {reason}")]
    Corrupt { position: i64, reason: String },
}

/// What the relay reports for readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayStatus {
    /// This instance holds the lock and publishes.
    pub active: bool,
    /// The broker acknowledged the last attempt.
    pub broker_ok: bool,
    pub published: u64,
}

struct OutboxRow {
    position: i64,
    topic: String,
    key: String,
    envelope: EventEnvelope,
    hash: String,
    prev_hash: String,
}

fn outbox_row(row: &PgRow, config: &KafkaConfig) -> Result<OutboxRow, RelayError> {
    let position: i64 = row.try_get("position")?;
    let corrupt = |reason: String| RelayError::Corrupt { position, reason };
    let aggregate_type: String = row.try_get("aggregate_type")?;
    let aggregate_id: String = row.try_get("aggregate_id")?;
    let sequence: i64 = row.try_get("sequence")?;
    let event_type: String = row.try_get("event_type")?;
    let event_version: String = row.try_get("event_version")?;
    let payload: Value = row.try_get("payload")?;
    let metadata: Value = row.try_get("metadata")?;
    let metadata = Metadata::from_value(&metadata);
    let topic = topics::topic_for(&aggregate_type)
        .ok_or_else(|| corrupt(format!("no topic for aggregate type {aggregate_type}")))?;
    let envelope = EventEnvelope::from_stored(
        &aggregate_type,
        &aggregate_id,
        u64::try_from(sequence).map_err(|e| corrupt(e.to_string()))?,
        &event_type,
        &event_version,
        payload,
        &metadata,
    );
    let key = if metadata.routing_key.is_empty() {
        aggregate_id
    } else {
        metadata.routing_key
    };
    Ok(OutboxRow {
        position,
        topic: config.topic(topic),
        key,
        envelope,
        hash: row.try_get("hash")?,
        prev_hash: row.try_get("prev_hash")?,
    })
}

/// The Kafka headers of an event: CloudEvents binding names, plus the hash chain.
fn headers(row: &OutboxRow, body_len: usize) -> OwnedHeaders {
    let envelope = &row.envelope;
    let id = envelope.id.to_string();
    let source = format!(
        "/aether/{}/{}",
        envelope.aggregate_type, envelope.aggregate_id
    );
    let time = envelope.occurred_at.to_rfc3339();
    let ce_type = format!("aether.{}.v{}", envelope.event_type, envelope.version);
    let length = body_len.to_string();
    let pairs: [(&str, &str); 8] = [
        (EVENT_ID_HEADER, &id),
        ("ce_type", &ce_type),
        ("ce_source", &source),
        ("ce_time", &time),
        ("ce_specversion", "1.0"),
        ("content-type", "application/json"),
        ("aether-hash", &row.hash),
        ("aether-prev-hash", &row.prev_hash),
    ];
    let mut headers = OwnedHeaders::new_with_capacity(pairs.len() + 1);
    for (key, value) in pairs {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers.insert(Header {
        key: "aether-body-length",
        value: Some(&length),
    })
}

/// Runs the relay until `shutdown`. Standby while another instance holds the lock.
pub async fn run_relay(
    pool: PgPool,
    kafka: KafkaConfig,
    config: RelayConfig,
    status: watch::Sender<RelayStatus>,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    let producer = kafka.producer()?;
    let mut lock_holder = pool.acquire().await?;
    loop {
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *lock_holder)
            .await?;
        if acquired {
            break;
        }
        tracing::info!("another relay is publishing; standing by");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
    status.send_modify(|s| s.active = true);
    tracing::info!("relay active");
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen("aether_outbox").await?;
    let mut published = already_published(&pool, &kafka).await?;
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        match publish_batch(&pool, &producer, &kafka, &config, &mut published).await {
            Ok(0) => {
                backoff = Duration::from_millis(100);
                status.send_modify(|s| s.broker_ok = true);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    notification = listener.recv() => {
                        if let Err(error) = notification {
                            tracing::warn!(%error, "outbox notifications interrupted; re-reading");
                        }
                    }
                }
            }
            Ok(count) => {
                backoff = Duration::from_millis(100);
                status.send_modify(|s| {
                    s.broker_ok = true;
                    s.published += count as u64;
                });
            }
            Err(error) => {
                status.send_modify(|s| s.broker_ok = false);
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "relay batch failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.max_backoff);
                // What reached the broker before the failure is read back, not sent twice.
                match already_published(&pool, &kafka).await {
                    Ok(ids) => published = ids,
                    Err(error) => tracing::warn!(%error, "cannot check in-flight rows yet"),
                }
            }
        }
    }
    let _ = producer_flush(producer).await;
    drop(lock_holder);
    tracing::info!("relay stopped");
    Ok(())
}

async fn producer_flush(producer: FutureProducer) -> Result<(), rdkafka::error::KafkaError> {
    tokio::task::spawn_blocking(move || {
        rdkafka::producer::Producer::flush(&producer, Timeout::After(Duration::from_secs(10)))
    })
    .await
    .unwrap_or(Ok(()))
}

/// The ids of in-flight rows that already reached Kafka: read back from the tail of every
/// event topic, as many messages per partition as rows were in flight.
async fn already_published(
    pool: &PgPool,
    kafka: &KafkaConfig,
) -> Result<HashSet<String>, RelayError> {
    let in_flight: i64 = sqlx::query_scalar("SELECT count(*) FROM relay_inflight")
        .fetch_one(pool)
        .await?;
    if in_flight == 0 {
        return Ok(HashSet::new());
    }
    tracing::info!(
        in_flight,
        "checking which in-flight events already reached Kafka"
    );
    let kafka = kafka.clone();
    let ids = tokio::task::spawn_blocking(move || -> Result<HashSet<String>, RelayError> {
        let mut ids = HashSet::new();
        for topic in topics::EVENT_TOPICS {
            ids.extend(recent_event_ids(&kafka, &kafka.topic(topic), in_flight)?);
        }
        Ok(ids)
    })
    .await
    .map_err(|e| RelayError::Kafka(aether_kafka::KafkaError::Other(e.to_string())))??;
    Ok(ids)
}

/// Publishes the next batch; returns how many rows left the outbox.
async fn publish_batch(
    pool: &PgPool,
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    config: &RelayConfig,
    published: &mut HashSet<String>,
) -> Result<usize, RelayError> {
    let rows = sqlx::query(
        "SELECT o.position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
         e.event_version, e.payload, e.metadata, e.hash, e.prev_hash \
         FROM outbox o JOIN events e ON e.position = o.position ORDER BY o.position LIMIT $1",
    )
    .bind(config.batch_size)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let rows = rows
        .iter()
        .map(|row| outbox_row(row, kafka))
        .collect::<Result<Vec<_>, _>>()?;
    let mut done = Vec::with_capacity(rows.len());
    let mut to_send = Vec::with_capacity(rows.len());
    for row in &rows {
        if published.remove(&row.envelope.id.to_string()) {
            done.push(row.position);
        } else {
            to_send.push(row);
        }
    }
    let in_flight: Vec<i64> = to_send.iter().map(|row| row.position).collect();
    sqlx::query(
        "INSERT INTO relay_inflight (position) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING",
    )
    .bind(&in_flight)
    .execute(pool)
    .await?;
    let mut sends = Vec::with_capacity(to_send.len());
    for row in to_send {
        let body = serde_json::to_vec(&row.envelope).map_err(|e| RelayError::Corrupt {
            position: row.position,
            reason: e.to_string(),
        })?;
        let record = FutureRecord::to(&row.topic)
            .key(row.key.as_bytes())
            .headers(headers(row, body.len()))
            .payload(&body);
        // Enqueue in order; the idempotent producer keeps that order per partition.
        let delivery = producer
            .send_result(record)
            .map_err(|(error, _)| RelayError::Kafka(error.into()))?;
        sends.push((row.position, row.envelope.occurred_at, delivery));
    }
    let outcomes = join_all(sends.into_iter().map(
        |(position, occurred_at, delivery)| async move {
            let outcome = delivery.await;
            // When the acknowledgement reached the relay, for `config.latency`.
            (position, occurred_at, Utc::now(), outcome)
        },
    ))
    .await;
    let mut failure = None;
    for (position, occurred_at, acked_at, outcome) in outcomes {
        match outcome {
            Ok(Ok(_)) => {
                if let Some(latency) = &config.latency {
                    latency.record(occurred_at, acked_at);
                }
                done.push(position);
            }
            Ok(Err((error, _))) => failure = Some(RelayError::Kafka(error.into())),
            Err(_) => {
                failure = Some(RelayError::Kafka(aether_kafka::KafkaError::Other(
                    "delivery cancelled".into(),
                )))
            }
        }
    }
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM outbox WHERE position = ANY($1)")
        .bind(&done)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM relay_inflight WHERE position = ANY($1)")
        .bind(&done)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    match failure {
        Some(error) => Err(error),
        None => Ok(done.len()),
    }
}
