//! The relay: publishes the PostgreSQL outbox to Kafka.
//!
//! Rows are read in position order and deleted once the broker has acknowledged them, so a row
//! whose transaction commits late (with a lower position than rows already published) is simply
//! found on a later pass: nothing is skipped. Events of one aggregate are always inserted by
//! transactions that committed one after another, so their positions — and their order on
//! Kafka — follow their sequence.
//!
//! Pipelined: up to `max_batches_in_flight` batches are with the producer at once; the next
//! batch is read and produced while earlier ones wait for their acknowledgements, and each batch's
//! rows are deleted as soon as its acknowledgements are in. The idempotent producer (at most 5
//! requests in flight per connection) keeps the produce order per partition, and so per key.
//!
//! Exactly once: the producer is idempotent within a session. Across a crash between the
//! broker's acknowledgement and the outbox delete, the rows that were handed to the producer are
//! still listed in `relay_inflight`; on start (and after a failure, once every outstanding
//! delivery has resolved) the relay reads that many messages back from the tail of every topic
//! and drops rows whose event id is already there. Only one relay publishes at a time (a
//! PostgreSQL advisory lock); others wait as hot standbys.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_kafka::backoff::Backoff;
use aether_kafka::read::{recent_event_ids, EVENT_ID_HEADER};
use aether_kafka::trace;
use aether_kafka::KafkaConfig;
use aether_schemas::{topics, EventEnvelope, Metadata};
use chrono::{DateTime, Utc};
use futures::future::{join_all, BoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
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
    /// Outbox rows read and handed to the producer at a time.
    pub batch_size: i64,
    /// Batches handed to the producer whose acknowledgements are still outstanding; the next
    /// batch is read and produced while earlier ones wait for the broker. At most
    /// `batch_size × max_batches_in_flight` rows are in flight (and listed in
    /// `relay_inflight`, so that is also what a restart reads back).
    pub max_batches_in_flight: usize,
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
            max_batches_in_flight: 4,
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
    /// The trace context of the request that decided the event, if it was traced.
    traceparent: Option<String>,
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
    let traceparent = metadata.traceparent;
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
        traceparent,
    })
}

/// The Kafka headers of an event: CloudEvents binding names, the hash chain, and the trace
/// context of `publish` (the relay's span) when the event was traced.
fn headers(row: &OutboxRow, body_len: usize, publish: Option<&tracing::Span>) -> OwnedHeaders {
    let id = row.envelope.id.to_string();
    let headers = event_headers(&row.envelope, &id, &row.hash, &row.prev_hash, body_len);
    let traceparent = publish.and_then(|span| span.in_scope(trace::current_traceparent));
    trace::with_header(headers, traceparent.as_deref())
}

/// The span of publishing one traced event: a child of the request that decided it, open
/// until the broker acknowledges the event (or the relay gives up on it). Untraced events get
/// none, so that the relay's steady work does not fill the collector with one-span traces.
fn publish_span(row: &OutboxRow) -> Option<tracing::Span> {
    let traceparent = row.traceparent.as_deref()?;
    let span = tracing::info_span!(
        "relay.publish",
        otel.name = "relay publish",
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.destination.name = %row.topic,
        event_type = %row.envelope.event_type,
        position = row.position,
    );
    trace::follow(&span, Some(traceparent));
    Some(span)
}

/// The headers the relay publishes an event with (docs/events.md): `ce_id` (`event_id`, the
/// envelope's id when the relay sends it), `ce_type`, `ce_source`, `ce_time`, `ce_specversion`,
/// `content-type`, the hash chain (`aether-hash`, `aether-prev-hash`) and the value's length.
/// Public so that benchmarks produce exactly what the relay produces.
pub fn event_headers(
    envelope: &EventEnvelope,
    event_id: &str,
    hash: &str,
    prev_hash: &str,
    body_len: usize,
) -> OwnedHeaders {
    let source = format!(
        "/aether/{}/{}",
        envelope.aggregate_type, envelope.aggregate_id
    );
    let time = envelope.occurred_at.to_rfc3339();
    let ce_type = format!("aether.{}.v{}", envelope.event_type, envelope.version);
    let length = body_len.to_string();
    let pairs: [(&str, &str); 9] = [
        (EVENT_ID_HEADER, event_id),
        ("ce_type", &ce_type),
        ("ce_source", &source),
        ("ce_time", &time),
        ("ce_specversion", "1.0"),
        ("content-type", "application/json"),
        ("aether-hash", hash),
        ("aether-prev-hash", prev_hash),
        ("aether-body-length", &length),
    ];
    let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
    for (key, value) in pairs {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
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
    let active = metrics::gauge!(crate::metrics::RELAY_ACTIVE);
    // Exported from the start, at zero, not only once this instance has published.
    metrics::counter!(crate::metrics::RELAY_PUBLISHED).increment(0);
    active.set(0.0);
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
    active.set(1.0);
    tracing::info!("relay active");
    // Only the active instance reports the outbox: a standby's numbers would be the same
    // rows counted twice.
    let sampling = shutdown.child_token();
    let sampler = sample_outbox(pool.clone(), sampling.clone());
    let publishing = async {
        let outcome =
            publish_while_active(&pool, &producer, &kafka, &config, &status, &shutdown).await;
        sampling.cancel();
        outcome
    };
    let (outcome, ()) = tokio::join!(publishing, sampler);
    active.set(0.0);
    let _ = producer_flush(producer).await;
    drop(lock_holder);
    tracing::info!("relay stopped");
    outcome
}

/// How often the active relay reads the outbox's depth and age.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Sets the outbox gauges every [`SAMPLE_EVERY`] until `stop`: how many rows wait, and how
/// old the oldest is. One indexed aggregate over a table the relay keeps short.
async fn sample_outbox(pool: PgPool, stop: CancellationToken) {
    let depth = metrics::gauge!(crate::metrics::OUTBOX_DEPTH);
    let lag = metrics::gauge!(crate::metrics::RELAY_LAG_SECONDS);
    loop {
        let sampled: Result<(i64, f64), sqlx::Error> = sqlx::query_as(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(enqueued_at)), 0)::float8 \
             FROM outbox",
        )
        .fetch_one(&pool)
        .await;
        match sampled {
            Ok((rows, age)) => {
                depth.set(rows as f64);
                lag.set(age.max(0.0));
            }
            Err(error) => tracing::debug!(%error, "cannot sample the outbox"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

/// Publishes while this instance holds the lock, until `shutdown`, retrying failures.
async fn publish_while_active(
    pool: &PgPool,
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    config: &RelayConfig,
    status: &watch::Sender<RelayStatus>,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen("aether_outbox").await?;
    let mut published = already_published(pool, kafka).await?;
    let mut backoff = Backoff::new(Duration::from_millis(100), config.max_backoff);
    let relay = Relay {
        pool,
        producer,
        kafka,
        config,
        status,
        published_total: metrics::counter!(crate::metrics::RELAY_PUBLISHED),
    };
    while !shutdown.is_cancelled() {
        let Err(error) = relay.publish(&mut listener, &mut published, shutdown).await else {
            break;
        };
        status.send_modify(|s| s.broker_ok = false);
        tracing::warn!(%error, retry_in_ms = backoff.next_wait().as_millis() as u64, "relay publishing failed");
        if !backoff.wait(shutdown).await {
            break;
        }
        // What reached the broker before the failure is read back, not sent twice.
        match already_published(pool, kafka).await {
            Ok(ids) => published = ids,
            Err(error) => tracing::warn!(%error, "cannot check in-flight rows yet"),
        }
    }
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

/// How one dispatched batch ended, once every delivery in it resolved.
struct BatchOutcome {
    /// Every position of the batch, acknowledged or not.
    positions: Vec<i64>,
    /// The positions that are on Kafka: acknowledged now, or found there after a crash.
    done: Vec<i64>,
    failure: Option<RelayError>,
}

type PendingBatch = BoxFuture<'static, BatchOutcome>;

/// The batches handed to the producer whose outbox rows are not deleted yet.
///
/// A row is *eligible* when it is in the outbox and no in-flight batch holds it. Instead of
/// remembering every row, the window remembers the positions it holds and the highest position
/// it ever dispatched (`cursor`): a row above the cursor is new; a row below the lowest held
/// position was never dispatched or has been deleted — a transaction that committed late with a
/// lower position is found there as soon as the batches around it are done. So nothing is
/// skipped and nothing is sent twice within one session.
#[derive(Default)]
struct Window {
    held: BTreeSet<i64>,
    cursor: i64,
    batches: FuturesUnordered<PendingBatch>,
}

impl Window {
    /// Rows below this position that are still in the outbox are eligible.
    fn floor(&self) -> i64 {
        self.held.first().copied().unwrap_or(i64::MAX)
    }
}

/// What one publishing session needs, borrowed from `run_relay`.
struct Relay<'a> {
    pool: &'a PgPool,
    producer: &'a FutureProducer,
    kafka: &'a KafkaConfig,
    config: &'a RelayConfig,
    status: &'a watch::Sender<RelayStatus>,
    published_total: metrics::Counter,
}

impl Relay<'_> {
    /// Publishes until `shutdown` (then drains the window and returns `Ok`) or until something
    /// fails. On failure every delivery still outstanding is awaited first, so that the
    /// read-back that follows sees everything this session will ever put on Kafka.
    async fn publish(
        &self,
        listener: &mut PgListener,
        published: &mut HashSet<String>,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let mut window = Window::default();
        let result = self
            .publish_until_failure(&mut window, listener, published, shutdown)
            .await;
        let drained = self.drain(&mut window).await;
        result.and(drained)
    }

    async fn publish_until_failure(
        &self,
        window: &mut Window,
        listener: &mut PgListener,
        published: &mut HashSet<String>,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let max_batches = self.config.max_batches_in_flight.max(1);
        loop {
            // Fill the window while there are eligible rows.
            while window.batches.len() < max_batches {
                let dispatched = self.dispatch(window, published).await?;
                if dispatched < self.config.batch_size.max(1) as usize {
                    break;
                }
            }
            if window.batches.is_empty() {
                self.status.send_modify(|s| s.broker_ok = true);
            }
            let room = window.batches.len() < max_batches;
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some(outcome) = window.batches.next() => self.complete(window, outcome).await?,
                notification = listener.recv(), if room => {
                    if let Err(error) = notification {
                        tracing::warn!(%error, "outbox notifications interrupted; re-reading");
                    }
                    // One pass reads every row committed so far: fold the queued wake-ups.
                    while listener.next_buffered().is_some() {}
                }
            }
        }
    }

    /// Waits for every batch still in flight and deletes what was acknowledged.
    async fn drain(&self, window: &mut Window) -> Result<(), RelayError> {
        let mut result = Ok(());
        while let Some(outcome) = window.batches.next().await {
            if let Err(error) = self.complete(window, outcome).await {
                result = result.and(Err(error));
            }
        }
        result
    }

    /// Reads the next eligible rows, marks them in flight and hands them to the producer;
    /// returns how many rows it took.
    async fn dispatch(
        &self,
        window: &mut Window,
        published: &mut HashSet<String>,
    ) -> Result<usize, RelayError> {
        // One statement: the rows are listed in `relay_inflight` (committed) before any of them
        // is produced, which is what the read-back after a crash relies on.
        let rows = sqlx::query(
            "WITH batch AS ( \
                 SELECT o.position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
                 e.event_version, e.payload, e.metadata, e.hash, e.prev_hash \
                 FROM outbox o JOIN events e ON e.position = o.position \
                 WHERE o.position < $1 OR o.position > $2 ORDER BY o.position LIMIT $3), \
             marked AS (INSERT INTO relay_inflight (position) SELECT position FROM batch \
                 ON CONFLICT DO NOTHING) \
             SELECT * FROM batch ORDER BY position",
        )
        .bind(window.floor())
        .bind(window.cursor)
        .bind(self.config.batch_size.max(1))
        .fetch_all(self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let rows = rows
            .iter()
            .map(|row| outbox_row(row, self.kafka))
            .collect::<Result<Vec<_>, _>>()?;
        let positions: Vec<i64> = rows.iter().map(|row| row.position).collect();
        window.held.extend(&positions);
        window.cursor = window
            .cursor
            .max(positions.iter().copied().max().unwrap_or(0));
        let mut done = Vec::new();
        let mut sends = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            if published.remove(&row.envelope.id.to_string()) {
                done.push(row.position);
                continue;
            }
            let span = publish_span(row);
            match self.produce(row, span.as_ref()) {
                Ok(delivery) => {
                    sends.push((row.position, row.envelope.occurred_at, delivery, span))
                }
                Err(error) => {
                    // Later rows must not overtake this one: stop here.
                    failure = Some(error);
                    break;
                }
            }
        }
        let latency = self.config.latency.clone();
        window.batches.push(Box::pin(async move {
            let outcomes = join_all(sends.into_iter().map(
                |(position, occurred_at, delivery, span)| async move {
                    let outcome = delivery.await;
                    // The publish span ends with the broker's answer.
                    drop(span);
                    // When the acknowledgement reached the relay, for `config.latency`.
                    (position, occurred_at, Utc::now(), outcome)
                },
            ))
            .await;
            for (position, occurred_at, acked_at, outcome) in outcomes {
                match outcome {
                    Ok(Ok(_)) => {
                        if let Some(latency) = &latency {
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
            BatchOutcome {
                positions,
                done,
                failure,
            }
        }));
        Ok(rows.len())
    }

    /// Enqueues one row; the idempotent producer keeps the enqueue order per partition.
    fn produce(
        &self,
        row: &OutboxRow,
        span: Option<&tracing::Span>,
    ) -> Result<DeliveryFuture, RelayError> {
        let body = serde_json::to_vec(&row.envelope).map_err(|e| RelayError::Corrupt {
            position: row.position,
            reason: e.to_string(),
        })?;
        let record = FutureRecord::to(&row.topic)
            .key(row.key.as_bytes())
            .headers(headers(row, body.len(), span))
            .payload(&body);
        self.producer
            .send_result(record)
            .map_err(|(error, _)| RelayError::Kafka(error.into()))
    }

    /// Deletes a finished batch's acknowledged rows; only then does the window let go of its
    /// positions (an acknowledged row still in the outbox must not look eligible).
    async fn complete(&self, window: &mut Window, outcome: BatchOutcome) -> Result<(), RelayError> {
        if !outcome.done.is_empty() {
            sqlx::query(
                "WITH unmarked AS (DELETE FROM relay_inflight WHERE position = ANY($1)) \
                 DELETE FROM outbox WHERE position = ANY($1)",
            )
            .bind(&outcome.done)
            .execute(self.pool)
            .await?;
        }
        for position in &outcome.positions {
            window.held.remove(position);
        }
        let count = outcome.done.len() as u64;
        self.published_total.increment(count);
        match outcome.failure {
            Some(error) => {
                self.status.send_modify(|s| s.published += count);
                Err(error)
            }
            None => {
                self.status.send_modify(|s| {
                    s.broker_ok = true;
                    s.published += count;
                });
                Ok(())
            }
        }
    }
}
