//! The edge's feeds: every partition of `aether.updates.v1` (projection updates), of
//! `aether.ephemeral.v1` (typing and presence) and of `aether.identity.events.v1` (ended
//! sessions), read from the moment the instance starts,
//! outside any consumer group, so every instance sees every update and signal and fans them out
//! to its own subscribers. Nothing here asks a database for news; the read models are read only
//! to catch a subscriber up.

use std::sync::Arc;
use std::time::Duration;

use aether_kafka::KafkaConfig;
use aether_projections::stream::{Checkpoint, KafkaSource};
use aether_projections::{Update, UpdateBus};
use aether_query_api::ephemeral::{Ephemeral, Signal, SignalSink};
use aether_query_api::revocation::Revocations;
use aether_schemas::topics;
use aether_schemas::EventEnvelope;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Longest one poll waits before the reader looks at the shutdown signal again.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// Updates taken per poll.
const POLL_MAX: usize = 1_000;
/// The longest pause between attempts while the broker is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Longest an instance's start waits for its feeds to find the ends of their topics. An
/// instance whose broker is away starts anyway, and its feeds position themselves when the
/// broker answers.
pub const POSITION_WAIT: Duration = Duration::from_secs(10);

/// Told once a feed has found the end of its topic: every message published after that moment
/// reaches the feed.
pub type Positioned = oneshot::Sender<()>;

/// Reads `aether.updates.v1` into `bus` until `shutdown`. A broker that goes away is waited
/// out with backoff; the reader then resumes where it stopped (no update in between is
/// skipped), so a subscriber misses nothing the projectors published meanwhile.
pub async fn run_update_feed(
    kafka: KafkaConfig,
    bus: UpdateBus,
    positioned: Positioned,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let deliver = move |update: Update| bus.publish(update);
    run_feed(kafka, topics::UPDATES, positioned, shutdown, deliver).await
}

/// Reads `aether.ephemeral.v1` (typing and presence from every instance) into `hub`.
pub async fn run_signal_feed(
    kafka: KafkaConfig,
    hub: Arc<Ephemeral>,
    positioned: Positioned,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let deliver = move |signal: Signal| hub.receive(signal);
    run_feed(kafka, topics::EPHEMERAL, positioned, shutdown, deliver).await
}

/// How long the session-ends feed's fetches may wait (see [`KafkaConfig::follow_wait`]).
pub const REVOCATION_FOLLOW_WAIT: Duration = Duration::from_millis(250);

/// Reads `aether.identity.events.v1` (the public log of accounts and sessions) into
/// `revocations`: a session ended on any instance ends here too.
pub async fn run_revocation_feed(
    kafka: KafkaConfig,
    revocations: Arc<Revocations>,
    positioned: Positioned,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let deliver = move |event: EventEnvelope| revocations.apply(&event);
    // Session ends are rare and a fraction of a second is soon enough for them: a longer fetch
    // wait spares the broker empty fetches from every instance.
    let kafka = KafkaConfig {
        follow_wait: REVOCATION_FOLLOW_WAIT,
        ..kafka
    };
    run_feed(
        kafka,
        topics::IDENTITY_EVENTS,
        positioned,
        shutdown,
        deliver,
    )
    .await
}

/// Waits up to [`POSITION_WAIT`] for a feed of `topic` to be positioned; past that, the
/// instance goes on starting (and says so), its feed still trying.
pub async fn wait_positioned(topic: &str, positioned: oneshot::Receiver<()>) {
    match tokio::time::timeout(POSITION_WAIT, positioned).await {
        Ok(_) => {}
        Err(_) => tracing::warn!(
            topic,
            wait_s = POSITION_WAIT.as_secs(),
            "the broker has not answered yet: this instance starts without its feed, which \
             follows the topic from wherever its end is when the broker answers"
        ),
    }
}

/// Follows every partition of `topic` from its end at start-up, handing each message that
/// reads as a `T` to `deliver`, until `shutdown`.
async fn run_feed<T, F>(
    kafka: KafkaConfig,
    topic: &'static str,
    positioned: Positioned,
    shutdown: CancellationToken,
    deliver: F,
) -> Result<(), String>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T) + Send + 'static,
{
    tokio::task::spawn_blocking(move || feed(&kafka, topic, &deliver, positioned, &shutdown))
        .await
        .map_err(|e| format!("the {topic} feed stopped: {e}"))
}

/// Publishes this instance's typing and presence signals to `aether.ephemeral.v1`, keyed by
/// user, with the `traceparent` of the request that sent one, if it was traced. Fire and
/// forget: a lost signal is repeated by the next heartbeat or keystroke.
pub struct KafkaSignals {
    producer: FutureProducer,
    topic: String,
}

impl KafkaSignals {
    pub fn new(config: &KafkaConfig) -> Result<Self, aether_kafka::KafkaError> {
        Ok(Self {
            producer: config.producer()?,
            topic: config.topic(topics::EPHEMERAL),
        })
    }
}

impl SignalSink for KafkaSignals {
    fn send(&self, signal: Signal) {
        let Ok(payload) = serde_json::to_vec(&signal) else {
            return;
        };
        let key = signal.key();
        let mut record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        // A signal sent by a traced request (`startTyping`) carries its trace to every edge,
        // whose delivery of it is the trace's last hop.
        if let Some(traceparent) = aether_kafka::trace::current_traceparent() {
            record = record.headers(aether_kafka::trace::with_header(
                rdkafka::message::OwnedHeaders::new_with_capacity(1),
                Some(&traceparent),
            ));
        }
        if let Err((error, _)) = self.producer.send_result(record) {
            tracing::warn!(%error, "cannot queue a typing or presence signal");
        }
    }
}

fn feed<T: DeserializeOwned>(
    kafka: &KafkaConfig,
    topic: &str,
    deliver: &dyn Fn(T),
    positioned: Positioned,
    shutdown: &CancellationToken,
) {
    let mut position: Option<Checkpoint> = None;
    let mut positioned = Some(positioned);
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match follow(
            kafka,
            topic,
            deliver,
            shutdown,
            &mut position,
            &mut positioned,
        ) {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, topic, backoff_ms = backoff.as_millis() as u64, "a feed lost the broker; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Follows the topic from `position` (or its end, the first time), keeping `position` up to
/// date, until `shutdown` or a broker error.
fn follow<T: DeserializeOwned>(
    kafka: &KafkaConfig,
    topic: &str,
    deliver: &dyn Fn(T),
    shutdown: &CancellationToken,
    position: &mut Option<Checkpoint>,
    positioned: &mut Option<Positioned>,
) -> Result<(), String> {
    let source = KafkaSource::new(kafka, &[topic]).map_err(|e| e.to_string())?;
    let start = match position.clone() {
        Some(position) => position,
        None => source.log_ends().map_err(|e| e.to_string())?,
    };
    source.seek(&start).map_err(|e| e.to_string())?;
    *position = Some(start);
    if let Some(positioned) = positioned.take() {
        let _ = positioned.send(());
    }
    tracing::info!(topic, "following");
    while !shutdown.is_cancelled() {
        let polled = source
            .poll_raw(POLL_MAX, POLL_WAIT, Duration::ZERO, |raw| {
                serde_json::from_slice::<T>(raw)
            })
            .map_err(|e| e.to_string())?;
        for message in polled {
            if let Some(position) = position.as_mut() {
                position.set(message.partition.as_ref().clone(), message.offset + 1);
            }
            match message.payload {
                Ok(value) => match message.traceparent.as_deref() {
                    // A traced update (a projector's, continuing the request that caused it):
                    // handing it to this instance's subscribers is the trace's last hop.
                    Some(traceparent) => {
                        let span = tracing::info_span!(
                            "edge.deliver",
                            otel.name = "deliver",
                            otel.kind = "consumer",
                            topic,
                            offset = message.offset,
                        );
                        aether_kafka::trace::follow(&span, Some(traceparent));
                        span.in_scope(|| deliver(value));
                    }
                    None => deliver(value),
                },
                // A message this instance cannot read is skipped: channel subscribers catch up
                // from the read model at the next update; typing and presence repeat.
                Err(error) => {
                    tracing::warn!(%error, topic, offset = message.offset, "an unreadable message")
                }
            }
        }
    }
    Ok(())
}
