//! The moderator: the model stage of moderation, run on the log after delivery.
//!
//! It is a projector like the others — the same engine, event source, checkpoint and dead
//! letters — whose store keeps nothing but that bookkeeping. "Applying" a batch of events means
//! scoring the bodies of the messages sent or edited in it with the model (one forward pass per
//! [`ModeratorConfig::max_batch`] messages) and handing each verdict to
//! [`ChatCommands::flag_message`], which records `MessageFlagged` and `MessageHidden` when the
//! score reaches the server's threshold. Only then does the checkpoint move past the batch.
//!
//! Batching is dynamic by construction: the engine hands over what the log holds as soon as
//! [`ModeratorConfig::events_per_batch`] events have arrived or [`ModeratorConfig::linger`]
//! after the first one, whichever comes first, so a quiet server scores each message within
//! milliseconds and a busy one fills whole batches.
//!
//! Redelivery (a restart before the checkpoint moved, Kafka's at-least-once) scores a message
//! again, and the second verdict records nothing: a message's review is flagged by the model at
//! most once. The command path never waits for any of this.
//!
//! Without a model (its files missing, or unreadable) the moderator still follows the log, so
//! that it does not fall hopelessly behind, but moderates nothing: each message it passes is
//! counted in `aether_moderation_unmoderated_total`, a warning is logged, and its role's
//! `/readyz` answers 503 with the reason. Delivery is never affected.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_commands::backend::EventStoreBackend;
use aether_commands::{ChatCommands, CommandContext, CommandError, ErrorCode};
use aether_domain::review::ModelVerdict;
use aether_domain::MessageId;
use aether_moderation::model::{default_model_dir, Classifier, Embedder, Head, Score};
use aether_projections::stream::engine::{
    NoUpdates, PoisonPolicy, ProjectorFailure, ProjectorOptions, StreamProjector,
};
use aether_projections::stream::source::{Checkpoint, EventSource, StreamEvent};
use aether_projections::stream::store::{Applied, DeadLetter, ReadStore, Retried, StoreError};
use aether_projections::stream::ProjectorMetrics;
use aether_projections::Update;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use metrics::Unit;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The moderator's name: its checkpoint's key (`moderator_v1`), and its projector metrics'
/// label.
pub const NAME: &str = aether_projections::stream::reactor::MODERATOR;

pub const SCORED: &str = "aether_moderation_messages_scored_total";
pub const FLAGGED: &str = "aether_moderation_flags_total";
pub const UNMODERATED: &str = "aether_moderation_unmoderated_total";
pub const BATCH_SIZE: &str = "aether_moderation_batch_size";
pub const MODEL_SECONDS: &str = "aether_moderation_model_seconds";
pub const MODEL_READY: &str = "aether_moderation_model_ready";

/// Every `aether_moderation_*` metric, described to the recorder.
pub fn describe() {
    metrics::describe_counter!(
        SCORED,
        Unit::Count,
        "Message bodies (sent or edited) the model scored."
    );
    metrics::describe_counter!(
        FLAGGED,
        Unit::Count,
        "Verdicts after which the message stands flagged by the model (a redelivered event \
         counts again; its events are recorded once)."
    );
    metrics::describe_counter!(
        UNMODERATED,
        Unit::Count,
        "Message bodies delivered without a model verdict because the model is unavailable."
    );
    metrics::describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "Messages per forward pass of the model."
    );
    metrics::describe_histogram!(
        MODEL_SECONDS,
        Unit::Seconds,
        "Time one forward pass of the model took (tokenizing, embedding, the head)."
    );
    metrics::describe_gauge!(
        MODEL_READY,
        Unit::Count,
        "1 once the model is loaded and scoring, 0 while it loads or when it cannot be used."
    );
}

/// How the moderator finds its model and batches its work.
#[derive(Clone, Debug)]
pub struct ModeratorConfig {
    /// The embedder's files (the `model/` folder `scripts/fetch-model.sh` unpacks).
    pub model_dir: PathBuf,
    /// The classifier head; the one compiled into the binary when `None`.
    pub head: Option<PathBuf>,
    /// Most messages in one forward pass of the model.
    pub max_batch: usize,
    /// Events read from the log per checkpoint transaction at most.
    pub events_per_batch: usize,
    /// How long to wait for more events once one has arrived.
    pub linger: Duration,
    /// Attempts at an event that keeps failing before it is parked (or the moderator halts).
    pub max_attempts: i32,
    pub poison: PoisonPolicy,
    /// The most of its time the model stage may spend scoring: after a forward pass of `d`
    /// it rests `d × (1 / cpu_share − 1)`. 1 (the default) never rests; 0.25 leaves a core
    /// the model shares with the API and the projectors (the embedded mode) three quarters of
    /// the time, and moderation lags by as much under a burst.
    pub cpu_share: f64,
    /// Threads a forward pass runs on; 0 (the default) uses every core. 1 leaves the other
    /// cores to delivery while the model scores.
    pub threads: usize,
}

/// The smallest [`ModeratorConfig::cpu_share`] accepted.
pub const MIN_CPU_SHARE: f64 = 0.05;

/// A [`ModeratorConfig::cpu_share`] from the command line: a number from [`MIN_CPU_SHARE`] to 1.
pub fn parse_cpu_share(text: &str) -> Result<f64, String> {
    let share: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if (MIN_CPU_SHARE..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{share} is outside {MIN_CPU_SHARE} to 1"))
    }
}

impl Default for ModeratorConfig {
    fn default() -> Self {
        Self {
            model_dir: default_model_dir(),
            head: None,
            max_batch: 16,
            events_per_batch: 64,
            linger: Duration::from_millis(20),
            max_attempts: 3,
            poison: PoisonPolicy::Park,
            cpu_share: 1.0,
            threads: 0,
        }
    }
}

/// Where the model stands.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelState {
    Loading,
    Ready { model_version: String },
    Unavailable { reason: String },
}

impl ModelState {
    /// Whether the moderator does its work, and what `/readyz` tells about it.
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        match self {
            Self::Loading => (
                false,
                serde_json::json!({ "ready": false, "reason": "loading the model" }),
            ),
            Self::Ready { model_version } => (
                true,
                serde_json::json!({ "ready": true, "modelVersion": model_version }),
            ),
            Self::Unavailable { reason } => (
                false,
                serde_json::json!({
                    "ready": false,
                    "reason": format!("the model is unavailable, messages go unmoderated: {reason}"),
                }),
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModeratorError {
    #[error("moderator store: {0}")]
    Store(#[from] StoreError),
    #[error("moderator: {0}")]
    Projector(#[from] ProjectorFailure),
}

/// Loads the model, then moderates what `source` delivers from `store`'s checkpoint until
/// `shutdown`, holding still while `paused` says so. `state` follows the model: loading,
/// ready, or unavailable with the reason.
pub async fn run(
    store: Arc<dyn ReadStore>,
    source: Arc<dyn EventSource>,
    commands: Arc<ChatCommands<EventStoreBackend>>,
    config: ModeratorConfig,
    state: watch::Sender<ModelState>,
    paused: watch::Receiver<bool>,
    shutdown: CancellationToken,
) -> Result<(), ModeratorError> {
    store.prepare().await?;
    let ready = metrics::gauge!(MODEL_READY);
    ready.set(0.0);
    state.send_replace(ModelState::Loading);
    let loading = tokio::task::spawn_blocking({
        let config = config.clone();
        move || load(&config)
    });
    let loaded = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        loaded = loading => loaded.unwrap_or_else(|error| Err(format!("loading panicked: {error}"))),
    };
    let classifier = match loaded {
        Ok(classifier) => {
            let model_version = classifier.head().model_version.clone();
            tracing::info!(%model_version, dir = %config.model_dir.display(), "moderator: model loaded");
            ready.set(1.0);
            state.send_replace(ModelState::Ready { model_version });
            Some(Arc::new(classifier))
        }
        Err(reason) => {
            tracing::error!(%reason, "moderator: the model cannot be used; messages go unmoderated");
            state.send_replace(ModelState::Unavailable { reason });
            None
        }
    };
    let moderator = ModeratorStore {
        inner: store,
        model: classifier.map(|classifier| Model {
            classifier,
            pool: pool(config.threads),
        }),
        max_batch: config.max_batch.max(1),
        cpu_share: config.cpu_share.clamp(MIN_CPU_SHARE, 1.0),
        commands,
    };
    let projector = StreamProjector::new(
        Arc::new(moderator),
        source,
        Arc::new(NoUpdates),
        ProjectorOptions {
            batch_size: config.events_per_batch.max(1),
            linger: config.linger,
            max_attempts: config.max_attempts.max(1),
            poison: config.poison,
            ..ProjectorOptions::default()
        },
        Arc::new(ProjectorMetrics::new(NAME, 1)),
    );
    let outcome = projector.run(paused, shutdown).await;
    ready.set(0.0);
    Ok(outcome?)
}

fn load(config: &ModeratorConfig) -> Result<Classifier, String> {
    let head = match &config.head {
        Some(path) => Head::load(path),
        None => Head::builtin(),
    }
    .map_err(|error| error.to_string())?;
    let embedder = Embedder::load(&config.model_dir).map_err(|error| error.to_string())?;
    let classifier = Classifier::new(embedder, head).map_err(|error| error.to_string())?;
    // The first forward pass of a process allocates its buffers and faults the weights in,
    // many times slower than the next: pay it here, before the first message waits for it.
    classifier
        .score(&["warming up"])
        .map_err(|error| error.to_string())?;
    Ok(classifier)
}

/// The moderator's store: the bookkeeping of `inner`, with the model's work done before a
/// batch is committed to it.
struct ModeratorStore {
    inner: Arc<dyn ReadStore>,
    /// `None` when the model cannot be used: messages pass unmoderated.
    model: Option<Model>,
    max_batch: usize,
    /// See [`ModeratorConfig::cpu_share`].
    cpu_share: f64,
    commands: Arc<ChatCommands<EventStoreBackend>>,
}

/// A message body of a batch to score.
struct Candidate {
    /// Its event's index in the batch, to blame it if it cannot be moderated.
    index: usize,
    message_id: MessageId,
    body: String,
}

impl Candidate {
    /// The message body `event` brings, if it is one the model judges: a message sent to or
    /// edited in a channel. Direct messages are not reviewed (they belong to no server), and
    /// an empty body says nothing.
    fn of(index: usize, event: &StreamEvent) -> Option<Self> {
        let envelope = event.envelope()?;
        if !matches!(
            envelope.event_type.as_str(),
            "MessageSent" | "MessageEdited"
        ) {
            return None;
        }
        let data = &envelope.data;
        let body = data.get("body")?.as_str()?;
        if body.trim().is_empty() {
            return None;
        }
        let message_id = MessageId::parse(data.get("message_id")?.as_str()?).ok()?;
        Some(Self {
            index,
            message_id,
            body: body.to_owned(),
        })
    }
}

impl ModeratorStore {
    /// Scores `candidates` a forward pass at a time and records each verdict.
    async fn moderate(&self, model: &Model, candidates: &[Candidate]) -> Result<(), StoreError> {
        for chunk in candidates.chunks(self.max_batch) {
            let started = Instant::now();
            let scores = model.score_chunk(chunk).await?;
            if let Some(rest) = rest_after(started.elapsed(), self.cpu_share) {
                tokio::time::sleep(rest).await;
            }
            for (candidate, score) in chunk.iter().zip(scores) {
                self.verdict(candidate, score).await?;
            }
        }
        Ok(())
    }

    async fn verdict(&self, candidate: &Candidate, score: Score) -> Result<(), StoreError> {
        let verdict = ModelVerdict {
            score: f64::from(score.score),
            model_version: score.model_version,
        };
        // The system acts: no user is the actor of a model verdict.
        let ctx = CommandContext::new(None);
        match self
            .commands
            .flag_message(&ctx, candidate.message_id, verdict)
            .await
        {
            Ok(review) => {
                if review.value.flagged {
                    metrics::counter!(FLAGGED).increment(1);
                }
                Ok(())
            }
            // Deleted since, or never in a channel: nothing to moderate.
            Err(CommandError {
                code: ErrorCode::NotFound,
                ..
            }) => Ok(()),
            Err(error) => Err(command_failure(candidate.index, error)),
        }
    }
}

/// A pool of `threads` threads for the model's forward passes; `None` (every core) for 0, or
/// when the threads cannot be started (logged).
fn pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    if threads == 0 {
        return None;
    }
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|n| format!("moderator-model-{n}"))
        .build()
    {
        Ok(pool) => Some(Arc::new(pool)),
        Err(error) => {
            tracing::warn!(%error, threads, "moderator: no pool of its own; the model uses every core");
            None
        }
    }
}

/// How long to rest after `worked`, so that work takes at most `cpu_share` of the time.
fn rest_after(worked: Duration, cpu_share: f64) -> Option<Duration> {
    if cpu_share >= 1.0 {
        return None;
    }
    Some(worked.mul_f64(1.0 / cpu_share.max(MIN_CPU_SHARE) - 1.0))
}

/// A store that cannot be reached is retried as a whole; anything else is the event's own
/// fault, retried alone and then parked.
fn command_failure(index: usize, error: CommandError) -> StoreError {
    if error.code == ErrorCode::Unavailable {
        StoreError::Unavailable(format!("recording a verdict: {error}"))
    } else {
        StoreError::Event {
            index,
            reason: format!("recording a verdict: {error}"),
        }
    }
}

/// The loaded model, and the threads its forward passes run on.
struct Model {
    classifier: Arc<Classifier>,
    /// Where forward passes run when [`ModeratorConfig::threads`] bounds them; every core
    /// when `None`.
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Model {
    /// One forward pass over `chunk`. Should a pass fail, each text is tried alone so that the
    /// one at fault is blamed (and, failing again, parked) while the others are judged.
    async fn score_chunk(&self, chunk: &[Candidate]) -> Result<Vec<Score>, StoreError> {
        let texts = chunk.iter().map(|c| c.body.clone()).collect();
        match self.forward(texts).await {
            Ok(scores) => return Ok(scores),
            Err(reason) if chunk.len() == 1 => {
                return Err(StoreError::Event {
                    index: chunk[0].index,
                    reason: format!("the model failed: {reason}"),
                })
            }
            Err(reason) => {
                tracing::warn!(%reason, messages = chunk.len(), "moderator: a batch failed; scoring its messages one by one")
            }
        }
        let mut scores = Vec::with_capacity(chunk.len());
        for candidate in chunk {
            match self.forward(vec![candidate.body.clone()]).await {
                Ok(mut one) => scores.append(&mut one),
                Err(reason) => {
                    return Err(StoreError::Event {
                        index: candidate.index,
                        reason: format!("the model failed: {reason}"),
                    })
                }
            }
        }
        Ok(scores)
    }

    /// Runs the model over `texts` on the blocking pool (it keeps a core busy for milliseconds),
    /// recording the batch's size and duration.
    async fn forward(&self, texts: Vec<String>) -> Result<Vec<Score>, String> {
        let count = texts.len();
        let (classifier, pool) = (self.classifier.clone(), self.pool.clone());
        let started = Instant::now();
        let scored = tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            // The model's matrix products split their work over the current rayon pool.
            match pool {
                Some(pool) => pool.install(|| classifier.score(&texts)),
                None => classifier.score(&texts),
            }
        })
        .await;
        metrics::histogram!(MODEL_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(BATCH_SIZE).record(count as f64);
        match scored {
            Ok(Ok(scores)) if scores.len() == count => {
                metrics::counter!(SCORED).increment(count as u64);
                Ok(scores)
            }
            Ok(Ok(scores)) => Err(format!("{} scores for {count} texts", scores.len())),
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(format!("the model panicked: {error}")),
        }
    }
}

#[async_trait]
impl ReadStore for ModeratorStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.prepare().await
    }

    async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        self.inner.checkpoint().await
    }

    async fn last_progress(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.last_progress().await
    }

    /// Moderates the batch's messages, then moves the checkpoint past it: a crash in between
    /// scores them again on restart, and the second verdicts record nothing.
    async fn apply(
        &self,
        from: &Checkpoint,
        batch: &[StreamEvent],
        to: &Checkpoint,
    ) -> Result<Applied, StoreError> {
        let candidates: Vec<Candidate> = batch
            .iter()
            .enumerate()
            .filter_map(|(index, event)| Candidate::of(index, event))
            .collect();
        if !candidates.is_empty() {
            match &self.model {
                Some(model) => self.moderate(model, &candidates).await?,
                None => {
                    metrics::counter!(UNMODERATED).increment(candidates.len() as u64);
                    tracing::warn!(
                        messages = candidates.len(),
                        "moderator: no model; messages delivered unmoderated"
                    );
                }
            }
        }
        self.inner.apply(from, batch, to).await
    }

    async fn park(
        &self,
        from: &Checkpoint,
        event: &StreamEvent,
        error: &str,
        attempts: i32,
        to: &Checkpoint,
    ) -> Result<(), StoreError> {
        self.inner.park(from, event, error, attempts, to).await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.dead_letters().await
    }

    /// Dead letters are re-tried through the bookkeeping only: an operator who wants a parked
    /// message judged again edits or reports it.
    async fn retry_dead_letters(&self) -> Result<(Retried, Vec<Update>), StoreError> {
        self.inner.retry_dead_letters().await
    }

    async fn dump(&self) -> Result<serde_json::Value, StoreError> {
        self.inner.dump().await
    }

    async fn drop_version(&self) -> Result<(), StoreError> {
        self.inner.drop_version().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_share_is_a_number_from_the_floor_to_one() {
        assert_eq!(parse_cpu_share("0.25"), Ok(0.25));
        assert_eq!(parse_cpu_share("1"), Ok(1.0));
        assert_eq!(
            parse_cpu_share(&MIN_CPU_SHARE.to_string()),
            Ok(MIN_CPU_SHARE)
        );
        for refused in ["0", "0.01", "1.5", "-1", "NaN", "half", ""] {
            assert!(parse_cpu_share(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_cpu_share_rests_in_proportion_to_the_work() {
        let worked = Duration::from_millis(40);
        assert_eq!(rest_after(worked, 1.0), None);
        assert_eq!(rest_after(worked, 0.25), Some(Duration::from_millis(120)));
        assert_eq!(rest_after(worked, 0.5), Some(Duration::from_millis(40)));
        // A share below the floor rests as the floor does: never forever.
        assert_eq!(rest_after(worked, 0.0), rest_after(worked, MIN_CPU_SHARE));
    }

    fn event(event_type: &str, data: serde_json::Value) -> StreamEvent {
        let raw = serde_json::json!({
            "id": uuid_text(), "type": event_type, "version": "1.0",
            "aggregate_type": "Message", "aggregate_id": uuid_text(), "sequence": 1,
            "occurred_at": "2026-12-07T10:00:00Z", "actor": null,
            "correlation_id": "c", "causation_id": "c", "data": data
        });
        StreamEvent {
            partition: Arc::new(aether_projections::stream::TopicPartition {
                topic: "t".to_owned(),
                partition: 0,
            }),
            offset: 0,
            payload: StreamEvent::decode(raw.to_string().as_bytes()),
            traceparent: None,
        }
    }

    fn uuid_text() -> String {
        MessageId::new().to_string()
    }

    #[test]
    fn sent_and_edited_bodies_are_judged_and_nothing_else() {
        let id = uuid_text();
        let sent = event(
            "MessageSent",
            serde_json::json!({ "message_id": id, "body": "hi" }),
        );
        let edited = event(
            "MessageEdited",
            serde_json::json!({ "message_id": id, "body": "hello" }),
        );
        let direct = event(
            "DirectMessageSent",
            serde_json::json!({ "message_id": id, "body": "hi" }),
        );
        let blank = event(
            "MessageSent",
            serde_json::json!({ "message_id": id, "body": " \n" }),
        );
        let no_id = event(
            "MessageSent",
            serde_json::json!({ "message_id": "nope", "body": "hi" }),
        );
        let junk = StreamEvent {
            payload: StreamEvent::decode(b"\xff not json"),
            ..sent.clone()
        };
        assert_eq!(
            Candidate::of(0, &sent).map(|c| c.body),
            Some("hi".to_owned())
        );
        assert_eq!(
            Candidate::of(1, &edited).map(|c| (c.index, c.body)),
            Some((1, "hello".to_owned()))
        );
        for other in [direct, blank, no_id, junk] {
            assert!(Candidate::of(0, &other).is_none());
        }
    }

    #[test]
    fn readiness_names_the_reason() {
        let (ready, details) = ModelState::Unavailable {
            reason: "no model.safetensors".to_owned(),
        }
        .readiness();
        assert!(!ready);
        assert!(details["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("no model.safetensors")));
        assert!(!ModelState::Loading.readiness().0);
        assert!(
            ModelState::Ready {
                model_version: "v".to_owned()
            }
            .readiness()
            .0
        );
    }
}
