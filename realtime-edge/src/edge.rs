//! The edge's news feed: every partition of `aether.updates.v1`, read from the moment the edge
//! starts, outside any consumer group, so every edge instance sees every update the projectors
//! publish and fans it out to its own subscribers. Nothing here asks a database for news; the
//! read models are read only to catch a subscriber up.

use std::time::Duration;

use aether_kafka::KafkaConfig;
use aether_projections::stream::{Checkpoint, KafkaSource};
use aether_projections::{Update, UpdateBus};
use aether_schemas::topics;
use tokio_util::sync::CancellationToken;

/// Longest one poll waits before the reader looks at the shutdown signal again.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// Updates taken per poll.
const POLL_MAX: usize = 1_000;
/// The longest pause between attempts while the broker is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Reads `aether.updates.v1` into `bus` until `shutdown`. A broker that goes away is waited
/// out with backoff; the reader then resumes where it stopped (no update in between is
/// skipped), so a subscriber misses nothing the projectors published meanwhile.
pub async fn run_update_feed(
    kafka: KafkaConfig,
    bus: UpdateBus,
    shutdown: CancellationToken,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || feed(&kafka, &bus, &shutdown))
        .await
        .map_err(|e| format!("the update feed stopped: {e}"))
}

fn feed(kafka: &KafkaConfig, bus: &UpdateBus, shutdown: &CancellationToken) {
    let mut position: Option<Checkpoint> = None;
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match follow(kafka, bus, shutdown, &mut position) {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, backoff_ms = backoff.as_millis() as u64, "the update feed lost the broker; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Follows the topic from `position` (or its end, the first time), keeping `position` up to
/// date, until `shutdown` or a broker error.
fn follow(
    kafka: &KafkaConfig,
    bus: &UpdateBus,
    shutdown: &CancellationToken,
    position: &mut Option<Checkpoint>,
) -> Result<(), String> {
    let source = KafkaSource::new(kafka, &[topics::UPDATES]).map_err(|e| e.to_string())?;
    let start = match position.clone() {
        Some(position) => position,
        None => source.log_ends().map_err(|e| e.to_string())?,
    };
    source.seek(&start).map_err(|e| e.to_string())?;
    *position = Some(start);
    tracing::info!("following projection updates");
    while !shutdown.is_cancelled() {
        let polled = source
            .poll_raw(POLL_MAX, POLL_WAIT, Duration::ZERO, |raw| {
                serde_json::from_slice::<Update>(raw)
            })
            .map_err(|e| e.to_string())?;
        for message in polled {
            if let Some(position) = position.as_mut() {
                position.set(message.partition.as_ref().clone(), message.offset + 1);
            }
            match message.payload {
                Ok(update) => bus.publish(update),
                // An update this edge cannot read is skipped: its subscribers catch up from
                // the read model at the next update of the same channel.
                Err(error) => {
                    tracing::warn!(%error, offset = message.offset, "an unreadable projection update")
                }
            }
        }
    }
    Ok(())
}
