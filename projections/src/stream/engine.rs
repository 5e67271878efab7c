//! The projector loop: poll a batch, apply it with the checkpoint in one store transaction,
//! publish the updates, and set poison events aside.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_kafka::backoff::Backoff;
use aether_schemas::EventEnvelope;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::ProjectorMetrics;
use super::source::{Checkpoint, EventSource, Payload, SourceError, StreamEvent};
use super::store::{ReadStore, StoreError};
use crate::updates::Update;

/// What to do with an event that keeps failing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoisonPolicy {
    /// Park it as a dead letter and go on with the rest.
    #[default]
    Park,
    /// Stop the projector; an operator must fix or skip the event.
    Halt,
}

#[derive(Clone, Debug)]
pub struct ProjectorOptions {
    /// Events per store transaction.
    pub batch_size: usize,
    /// How long to wait for more events once the first of a batch arrived.
    pub linger: Duration,
    /// Attempts at one failing event before the poison policy applies.
    pub max_attempts: i32,
    /// First wait between attempts; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub poison: PoisonPolicy,
    /// Stop once the checkpoint has reached the log end (rebuilds and benchmarks).
    pub stop_when_caught_up: bool,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            linger: Duration::from_millis(20),
            max_attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            poison: PoisonPolicy::Park,
            stop_when_caught_up: false,
        }
    }
}

/// Where committed updates go.
pub trait UpdateSink: Send + Sync + 'static {
    fn publish(&self, updates: Vec<Update>);

    /// As [`Self::publish`], each update with the `traceparent` of the apply that made it (if
    /// its event was traced), for sinks that carry the trace on to the next hop (the updates
    /// topic); the others drop it.
    fn publish_traced(&self, updates: Vec<(Update, Option<String>)>) {
        self.publish(updates.into_iter().map(|(update, _)| update).collect());
    }
}

impl UpdateSink for crate::updates::UpdateBus {
    fn publish(&self, updates: Vec<Update>) {
        for update in updates {
            crate::updates::UpdateBus::publish(self, update);
        }
    }

    /// The embedded mode's last hop: a traced update is handed to this process's
    /// subscriptions in a `deliver` span, the child of the apply that made it.
    fn publish_traced(&self, updates: Vec<(Update, Option<String>)>) {
        for (update, traceparent) in updates {
            match traceparent {
                Some(traceparent) => {
                    let span = tracing::info_span!(
                        "bus.deliver",
                        otel.name = "deliver",
                        otel.kind = "internal",
                    );
                    aether_kafka::trace::follow(&span, Some(&traceparent));
                    span.in_scope(|| crate::updates::UpdateBus::publish(self, update));
                }
                None => crate::updates::UpdateBus::publish(self, update),
            }
        }
    }
}

/// Discards updates: for projections nobody watches live, and rebuilds.
#[derive(Debug, Default)]
pub struct NoUpdates;

impl UpdateSink for NoUpdates {
    fn publish(&self, _updates: Vec<Update>) {}
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorFailure {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("halted on event {location}: {reason}")]
    Halted { location: String, reason: String },
}

/// One version of one projection, fed from the event topics.
pub struct StreamProjector {
    store: Arc<dyn ReadStore>,
    source: Arc<dyn EventSource>,
    updates: Arc<dyn UpdateSink>,
    options: ProjectorOptions,
    metrics: Arc<ProjectorMetrics>,
    checkpoint: watch::Sender<Checkpoint>,
    /// When the newest event applied so far happened: how stale the read model is while behind.
    newest_applied: std::sync::Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for StreamProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamProjector")
            .field("store", &self.store.describe())
            .finish()
    }
}

impl StreamProjector {
    pub fn new(
        store: Arc<dyn ReadStore>,
        source: impl Into<Arc<dyn EventSource>>,
        updates: Arc<dyn UpdateSink>,
        options: ProjectorOptions,
        metrics: Arc<ProjectorMetrics>,
    ) -> Self {
        Self {
            store,
            source: source.into(),
            updates,
            options,
            metrics,
            checkpoint: watch::channel(Checkpoint::default()).0,
            newest_applied: std::sync::Mutex::new(None),
        }
    }

    /// The checkpoint after every committed batch.
    pub fn checkpoint(&self) -> watch::Receiver<Checkpoint> {
        self.checkpoint.subscribe()
    }

    pub fn metrics(&self) -> Arc<ProjectorMetrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` (or, with `stop_when_caught_up`, until the log end seen at start is
    /// applied). While `paused` holds `true`, nothing is read or written.
    pub async fn run(
        &self,
        mut paused: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectorFailure> {
        let name = self.store.describe();
        let mut backoff = Backoff::new(self.options.backoff, self.options.max_backoff);
        'reload: loop {
            let mut checkpoint = loop {
                match self.store.checkpoint().await {
                    Ok(checkpoint) => break checkpoint,
                    Err(error) => {
                        tracing::warn!(projection = %name, %error, "cannot read the checkpoint");
                        if !backoff.wait(&shutdown).await {
                            return Ok(());
                        }
                    }
                }
            };
            let source = self.source.clone();
            if self
                .read(&name, &shutdown, || source.seek(&checkpoint))
                .await
                .is_none()
            {
                return Ok(());
            }
            let target = if self.options.stop_when_caught_up {
                match self
                    .read(&name, &shutdown, || source.lag(&checkpoint))
                    .await
                {
                    Some(lag) => Some(lag.log_end),
                    None => return Ok(()),
                }
            } else {
                None
            };
            self.checkpoint.send_replace(checkpoint.clone());
            self.metrics.checkpoint(checkpoint.total());
            tracing::info!(projection = %name, events = checkpoint.total(), "projector started");
            let mut lag_checked = Instant::now() - Duration::from_secs(60);
            loop {
                if target.is_some_and(|end| checkpoint.total() >= end) {
                    self.refresh_lag(&checkpoint).await;
                    return Ok(());
                }
                if *paused.borrow_and_update() {
                    tracing::info!(projection = %name, "projector paused");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = paused.wait_for(|paused| !paused) => {
                            tracing::info!(projection = %name, "projector resumed");
                            // The store may have been reset meanwhile: start from what it holds.
                            continue 'reload;
                        }
                    }
                }
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                if lag_checked.elapsed() >= Duration::from_secs(2) {
                    self.refresh_lag(&checkpoint).await;
                    lag_checked = Instant::now();
                }
                let (max, linger) = (self.options.batch_size, self.options.linger);
                let polled = self
                    .source
                    .poll_batch(max, Duration::from_millis(250), linger)
                    .await;
                let batch = match polled {
                    Ok(batch) => batch,
                    Err(error) => {
                        // The broker went away mid-fetch: start again from what is committed.
                        tracing::warn!(projection = %name, %error, "reading the log failed; retrying");
                        if !backoff.wait(&shutdown).await {
                            return Ok(());
                        }
                        continue 'reload;
                    }
                };
                if batch.is_empty() {
                    continue;
                }
                match self.apply(&mut checkpoint, &batch, &shutdown).await? {
                    Outcome::Done => {
                        backoff.reset();
                        self.checkpoint.send_replace(checkpoint.clone());
                        self.metrics.checkpoint(checkpoint.total());
                    }
                    Outcome::Fenced => {
                        tracing::warn!(projection = %name, "checkpoint moved under us; reloading");
                        continue 'reload;
                    }
                    Outcome::Stopped => return Ok(()),
                }
            }
        }
    }

    /// Applies `batch` from `checkpoint`, splitting off and retrying a failing event, then
    /// parking it (or halting) once it has failed `max_attempts` times.
    async fn apply(
        &self,
        checkpoint: &mut Checkpoint,
        batch: &[StreamEvent],
        shutdown: &CancellationToken,
    ) -> Result<Outcome, ProjectorFailure> {
        let name = self.store.describe();
        let mut pending = batch;
        let mut window = pending.len();
        let mut attempts = 0;
        let mut backoff = Backoff::new(self.options.backoff, self.options.max_backoff);
        while !pending.is_empty() {
            let slice = &pending[..window];
            let to = checkpoint.after(slice);
            let started = Instant::now();
            // Open for the store transaction and the hand-over of its updates.
            let traced = TracedApply::open(&name, slice);
            match self.store.apply(checkpoint, slice, &to).await {
                Ok(applied) => {
                    let took = started.elapsed();
                    self.metrics.batch(applied.applied, applied.ignored, took);
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        let age_ms = slice
                            .first()
                            .and_then(StreamEvent::envelope)
                            .map(|e| (chrono::Utc::now() - e.occurred_at).num_milliseconds());
                        tracing::debug!(projection = %name, events = slice.len(), store_ms = took.as_millis() as u64, oldest_age_ms = ?age_ms, "batch applied");
                    }
                    self.metrics.parked(applied.parked);
                    if !applied.updates.is_empty() {
                        if traced.is_empty() {
                            self.updates.publish(applied.updates);
                        } else {
                            self.updates
                                .publish_traced(traced.attribute(applied.updates));
                        }
                    }
                    drop(traced);
                    self.note_applied(slice);
                    *checkpoint = to;
                    pending = &pending[window..];
                    window = pending.len();
                    attempts = 0;
                    backoff.reset();
                }
                Err(StoreError::Fenced) => return Ok(Outcome::Fenced),
                Err(StoreError::Event { index, .. }) if index > 0 && index < window => {
                    // Commit what precedes the failing event first.
                    window = index;
                }
                Err(StoreError::Event { reason, .. }) => {
                    self.metrics.failed_batch();
                    attempts += 1;
                    let event = &pending[0];
                    let deterministic = matches!(event.payload, Payload::Malformed { .. });
                    if attempts < self.options.max_attempts && !deterministic {
                        tracing::warn!(projection = %name, location = %event.location(), attempt = attempts, %reason, "event failed; retrying");
                        window = 1;
                        if !backoff.wait(shutdown).await {
                            return Ok(Outcome::Stopped);
                        }
                        continue;
                    }
                    if self.options.poison == PoisonPolicy::Halt {
                        tracing::error!(projection = %name, location = %event.location(), %reason, "poison event: halting");
                        return Err(ProjectorFailure::Halted {
                            location: event.location(),
                            reason,
                        });
                    }
                    let to = checkpoint.after(&pending[..1]);
                    match self
                        .store
                        .park(checkpoint, event, &reason, attempts, &to)
                        .await
                    {
                        Ok(()) => {
                            tracing::error!(projection = %name, location = %event.location(), %reason, "poison event parked as a dead letter");
                            self.metrics.parked(1);
                            *checkpoint = to;
                            pending = &pending[1..];
                            window = pending.len();
                            attempts = 0;
                        }
                        Err(StoreError::Fenced) => return Ok(Outcome::Fenced),
                        Err(error) => {
                            tracing::warn!(projection = %name, %error, "cannot park the event; retrying");
                            if !backoff.wait(shutdown).await {
                                return Ok(Outcome::Stopped);
                            }
                        }
                    }
                }
                Err(StoreError::Unavailable(error)) => {
                    self.metrics.failed_batch();
                    tracing::warn!(projection = %name, %error, retry_in_ms = backoff.next_wait().as_millis() as u64, "batch failed; retrying");
                    if !backoff.wait(shutdown).await {
                        return Ok(Outcome::Stopped);
                    }
                }
            }
        }
        Ok(Outcome::Done)
    }

    async fn refresh_lag(&self, checkpoint: &Checkpoint) {
        match self.source.lag(checkpoint).await {
            Ok(lag) => {
                let newest = *self
                    .newest_applied
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let seconds = match newest {
                    Some(at) if lag.events > 0 => (Utc::now() - at).num_seconds().max(0),
                    _ => 0,
                };
                self.metrics.lag(lag.events, seconds);
            }
            Err(error) => tracing::debug!(%error, "cannot read the log end"),
        }
    }

    fn note_applied(&self, slice: &[StreamEvent]) {
        let newest = slice
            .iter()
            .filter_map(|event| event.envelope().map(|e| e.occurred_at))
            .max();
        if let Some(newest) = newest {
            let mut slot = self
                .newest_applied
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *slot = Some(slot.map_or(newest, |at| at.max(newest)));
        }
    }

    /// Runs a call to the source until it succeeds, backing off between tries; `None` once
    /// shut down. The broker or the log being away is never a reason for a projector to exit.
    async fn read<'a, T, F>(
        &self,
        name: &str,
        shutdown: &CancellationToken,
        work: impl Fn() -> F,
    ) -> Option<T>
    where
        F: std::future::Future<Output = Result<T, SourceError>> + 'a,
    {
        let mut backoff = Backoff::new(self.options.backoff, self.options.max_backoff);
        loop {
            match work().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    tracing::warn!(projection = %name, %error, "the event source did not answer; retrying");
                    if !backoff.wait(shutdown).await {
                        return None;
                    }
                }
            }
        }
    }
}

enum Outcome {
    Done,
    Fenced,
    Stopped,
}

/// The "apply" spans of the traced events of one batch: each a child of its event's
/// `traceparent` (the relay's publish; in the embedded mode, the request that decided it),
/// open while the batch's store transaction runs and its updates are handed over. Untraced
/// events get none, and a batch without traced events costs nothing.
struct TracedApply<'a> {
    spans: Vec<(&'a EventEnvelope, tracing::Span)>,
}

impl<'a> TracedApply<'a> {
    fn open(projection: &str, slice: &'a [StreamEvent]) -> Self {
        let spans = slice
            .iter()
            .filter_map(|event| {
                let traceparent = event.traceparent.as_deref()?;
                let envelope = event.envelope()?;
                let span = tracing::info_span!(
                    "projector.apply",
                    otel.name = "apply",
                    otel.kind = "consumer",
                    projection,
                    event_type = %envelope.event_type,
                    location = %event.location(),
                );
                aether_kafka::trace::follow(&span, Some(traceparent));
                Some((envelope, span))
            })
            .collect();
        Self { spans }
    }

    fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Each update with the trace context of the apply span of the event it most likely came
    /// from: the first traced event of the batch about the row the update is keyed by (its
    /// aggregate, or the channel, server or conversation its data names), or the batch's only
    /// traced event. A store applies a batch as a whole, so this is a match on ids, not a
    /// record of which event wrote which row.
    fn attribute(&self, updates: Vec<Update>) -> Vec<(Update, Option<String>)> {
        let contexts: Vec<Option<String>> = self
            .spans
            .iter()
            .map(|(_, span)| span.in_scope(aether_kafka::trace::current_traceparent))
            .collect();
        updates
            .into_iter()
            .map(|update| {
                let key = update.key();
                let found = self
                    .spans
                    .iter()
                    .position(|(envelope, _)| is_about(envelope, &key))
                    .or_else(|| (self.spans.len() == 1).then_some(0));
                let traceparent = found.and_then(|index| contexts[index].clone());
                (update, traceparent)
            })
            .collect()
    }
}

/// Whether `envelope` is about the row `key` names: its aggregate, or a channel, server or
/// conversation its data names.
fn is_about(envelope: &EventEnvelope, key: &str) -> bool {
    envelope.aggregate_id == key
        || ["channel_id", "server_id", "conversation_id"]
            .iter()
            .any(|field| envelope.data.get(field).and_then(|v| v.as_str()) == Some(key))
}
