//! The projector runtime: tail the log, apply in batches, commit read model and checkpoint
//! together, then publish updates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aether_kafka::backoff::Backoff;
use aether_schemas::{EventLog, LogError, LoggedEvent};
use async_trait::async_trait;
use chrono::Utc;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::rows::RowError;
use crate::updates::{Update, UpdateBus};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("read model store: {0}")]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Row(#[from] RowError),
    #[error("event {event_type} at position {position} could not be decoded: {reason}")]
    Decode {
        position: i64,
        event_type: String,
        reason: String,
    },
}

impl ProjectionError {
    pub fn decode(event: &LoggedEvent, error: impl std::fmt::Display) -> Self {
        Self::Decode {
            position: event.position,
            event_type: event.envelope.event_type.clone(),
            reason: error.to_string(),
        }
    }
}

/// One read model's reaction to events.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// A stable name: the checkpoint's key.
    fn name(&self) -> &'static str;

    /// `(table, query)` pairs whose rows, in the query's order, are the whole read model.
    fn tables(&self) -> &'static [(&'static str, &'static str)];

    /// The aggregate types whose events can change this read model. Events of other types
    /// only move the checkpoint: they are neither applied nor tracked for duplicates.
    fn aggregate_types(&self) -> &'static [&'static str];

    /// Applies one event inside the batch's transaction and appends the updates to publish once
    /// the transaction commits. Events the projection does not care about are simply ignored.
    async fn apply(
        &self,
        tx: &mut SqliteConnection,
        event: &LoggedEvent,
        updates: &mut Vec<Update>,
    ) -> Result<(), ProjectionError>;
}

#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// Events applied per transaction.
    pub batch_size: usize,
    /// Start paused: the projector waits for [`ProjectorControl::resume`].
    pub start_paused: bool,
    /// The longest wait between retries of a failing batch.
    pub max_backoff: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            start_paused: false,
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Runs one projection against one log and one SQLite read-model store.
pub struct Projector {
    projection: Arc<dyn Projection>,
    log: Arc<dyn EventLog>,
    store: SqlitePool,
    /// Shared by every projector writing to the same SQLite file: they take turns here rather
    /// than in SQLite's busy handler, which sleeps up to 100 ms per try.
    writer: Arc<tokio::sync::Mutex<()>>,
    bus: UpdateBus,
    config: ProjectorConfig,
    checkpoint: watch::Sender<i64>,
    paused: watch::Sender<bool>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("projection", &self.projection.name())
            .field("checkpoint", &*self.checkpoint.borrow())
            .finish()
    }
}

/// Pauses and resumes a running projector from elsewhere.
#[derive(Clone, Debug)]
pub struct ProjectorControl {
    paused: watch::Sender<bool>,
}

impl ProjectorControl {
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

pub(crate) async fn load_checkpoint(pool: &SqlitePool, name: &str) -> Result<i64, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projector_checkpoints WHERE projection = ?")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(position.unwrap_or(0))
}

impl Projector {
    /// Prepares a projector; its checkpoint is read from the store.
    pub async fn new(
        projection: Arc<dyn Projection>,
        log: Arc<dyn EventLog>,
        store: SqlitePool,
        bus: UpdateBus,
        config: ProjectorConfig,
    ) -> Result<Self, ProjectionError> {
        let checkpoint = load_checkpoint(&store, projection.name()).await?;
        let (paused, _) = watch::channel(config.start_paused);
        Ok(Self {
            projection,
            log,
            store,
            writer: Arc::default(),
            bus,
            config,
            checkpoint: watch::channel(checkpoint).0,
            paused,
        })
    }

    /// Takes turns writing with the other holders of `writer` (the projectors sharing this
    /// store's file).
    pub fn sharing_writes(mut self, writer: Arc<tokio::sync::Mutex<()>>) -> Self {
        self.writer = writer;
        self
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// The checkpoint as it moves, for read-your-writes waits and readiness.
    pub fn checkpoint(&self) -> watch::Receiver<i64> {
        self.checkpoint.subscribe()
    }

    pub fn control(&self) -> ProjectorControl {
        ProjectorControl {
            paused: self.paused.clone(),
        }
    }

    /// Runs until `shutdown` is cancelled. A failing batch is retried with exponential backoff;
    /// nothing is skipped.
    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.name();
        let mut head = self.log.head();
        let mut paused = self.paused.subscribe();
        let mut backoff = Backoff::new(Duration::from_millis(100), self.config.max_backoff);
        tracing::info!(
            projection = name,
            checkpoint = *self.checkpoint.borrow(),
            "projector started"
        );
        loop {
            if *paused.borrow_and_update() {
                tracing::info!(projection = name, "projector paused");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = paused.wait_for(|paused| !paused) => {
                        tracing::info!(projection = name, "projector resumed");
                        continue;
                    }
                }
            }
            // Mark the head as seen before reading, so a commit after the read wakes us.
            head.borrow_and_update();
            match self.run_batch().await {
                Ok(0) => {
                    backoff.reset();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = head.changed() => {}
                        _ = paused.changed() => {}
                    }
                }
                Ok(_) => backoff.reset(),
                Err(error) => {
                    tracing::error!(projection = name, %error, retry_in_ms = backoff.next_wait().as_millis() as u64, "projection batch failed");
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                }
            }
        }
        tracing::info!(
            projection = name,
            checkpoint = *self.checkpoint.borrow(),
            "projector stopped"
        );
    }

    /// Applies the next batch; returns how many events it held.
    pub async fn run_batch(&self) -> Result<usize, ProjectionError> {
        let name = self.name();
        let after = *self.checkpoint.borrow();
        let batch = self.log.read_after(after, self.config.batch_size).await?;
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        let last_position = last.position;
        // IMMEDIATE takes the write lock up front: several projectors share one SQLite file, and a
        // deferred transaction that read first could not upgrade its lock under contention.
        let _turn = self.writer.lock().await;
        let mut tx = self.store.begin_with("BEGIN IMMEDIATE").await?;
        let mut updates = Vec::new();
        let mut versions: HashMap<&str, i64> = HashMap::new();
        let relevant = self.projection.aggregate_types();
        for event in &batch {
            let envelope = &event.envelope;
            if !relevant.contains(&envelope.aggregate_type.as_str()) {
                continue;
            }
            let aggregate = envelope.aggregate_id.as_str();
            let applied = match versions.get(aggregate) {
                Some(version) => *version,
                None => applied_version(&mut tx, name, aggregate).await?,
            };
            let sequence = i64::try_from(envelope.sequence).unwrap_or(i64::MAX);
            if sequence <= applied {
                tracing::debug!(
                    projection = name,
                    aggregate,
                    sequence,
                    "duplicate event ignored"
                );
                continue;
            }
            self.projection.apply(&mut tx, event, &mut updates).await?;
            versions.insert(aggregate, sequence);
        }
        for (aggregate, sequence) in &versions {
            sqlx::query(
                "INSERT INTO projector_versions (projection, aggregate_id, sequence) VALUES (?, ?, ?) \
                 ON CONFLICT (projection, aggregate_id) DO UPDATE SET sequence = excluded.sequence",
            )
            .bind(name)
            .bind(aggregate)
            .bind(sequence)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO projector_checkpoints (projection, position, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (projection) DO UPDATE SET position = excluded.position, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(last_position)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.checkpoint.send_replace(last_position);
        for update in updates {
            self.bus.publish(update);
        }
        tracing::debug!(
            projection = name,
            events = batch.len(),
            checkpoint = last_position,
            "batch applied"
        );
        Ok(batch.len())
    }
}

async fn applied_version(
    tx: &mut SqliteConnection,
    projection: &str,
    aggregate_id: &str,
) -> Result<i64, sqlx::Error> {
    let version: Option<i64> = sqlx::query_scalar(
        "SELECT sequence FROM projector_versions WHERE projection = ? AND aggregate_id = ?",
    )
    .bind(projection)
    .bind(aggregate_id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(version.unwrap_or(0))
}

/// The checkpoints of every projector: lets a query wait until the read models have caught up
/// with a client's own write (the consistency token).
#[derive(Clone, Debug, Default)]
pub struct Watermarks {
    checkpoints: Vec<watch::Receiver<i64>>,
}

impl Watermarks {
    pub fn new(checkpoints: Vec<watch::Receiver<i64>>) -> Self {
        Self { checkpoints }
    }

    /// The lowest checkpoint: every read model has applied the log up to here.
    pub fn low(&self) -> i64 {
        self.checkpoints
            .iter()
            .map(|checkpoint| *checkpoint.borrow())
            .min()
            .unwrap_or(0)
    }

    /// Resolves once any projector's checkpoint moves (never, without projectors).
    pub async fn changed(&self) {
        if self.checkpoints.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.checkpoints.iter().map(|checkpoint| {
            let mut checkpoint = checkpoint.clone();
            Box::pin(async move {
                if checkpoint.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
        });
        futures::future::select_all(waits).await;
    }

    /// Waits until every projector has applied `position`; `false` if `timeout` passed first.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> bool {
        let all = async {
            for checkpoint in &self.checkpoints {
                let mut checkpoint = checkpoint.clone();
                if checkpoint.wait_for(|at| *at >= position).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }
}
