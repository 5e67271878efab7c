//! MongoDB read-model stores: one version of one projection is a set of collections prefixed
//! `{name}_v{version}_` in one database (`timeline_v2_messages`, `timeline_v2_checkpoint`, …),
//! so a rebuild writes beside the live version and dropping a version drops its collections.
//!
//! Every batch is one multi-document transaction on a client session. Its first write moves the
//! version's single checkpoint document; MongoDB refuses a second transaction that writes the
//! same document before the first commits (a write conflict), so that document is the version's
//! write lock, the way `pg_advisory_xact_lock` is for [`super::postgres::PgStore`]. The model's
//! writes and the bookkeeping (applied sequences, parked events) then go to the server as a few
//! multi-document `insert` and `update` commands (MongoDB 4.2 or later).

pub mod timeline;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR};
use mongodb::options::{IndexOptions, ReadConcern, WriteConcern};
use mongodb::{ClientSession, Collection, Database, IndexModel};
use serde_json::Value;

use super::source::{Checkpoint, StreamEvent, TopicPartition};
use super::store::{
    aggregate_ids, retry_in_order, sort_batch, Applied, DeadLetter, DeadLetterFields, Parked,
    ReadStore, Retried, RetryParked, StoreError, HELD_BEHIND,
};
use crate::updates::Update;

pub use timeline::MongoTimelineProjection;

/// One read model kept in MongoDB.
#[async_trait]
pub trait MongoProjection: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// The model's collections (unprefixed), with their indexes and the order that makes
    /// [`ReadStore::dump`] stable.
    fn collections(&self) -> &'static [ModelCollection];

    /// Applies `events` (none a duplicate, all decodable envelopes) in order inside the batch's
    /// transaction: reads through `tx`, writes queued on `tx` (sent with the bookkeeping in one
    /// bulk write). A failure names the event at fault where it can.
    async fn apply(
        &self,
        tx: &mut MongoTx<'_>,
        events: &[(usize, &StreamEvent)],
        updates: &mut Vec<Update>,
    ) -> Result<(), StoreError>;
}

/// One collection of a read model.
#[derive(Debug)]
pub struct ModelCollection {
    pub name: &'static str,
    /// Each index's keys, in order, and whether it is unique.
    pub indexes: &'static [(&'static [(&'static str, i32)], bool)],
    /// The sort of [`ReadStore::dump`]: fields, ascending.
    pub dump_order: &'static [&'static str],
}

/// The batch's transaction as a projection sees it.
pub struct MongoTx<'a> {
    database: &'a Database,
    prefix: &'a str,
    session: &'a mut ClientSession,
    writes: Vec<Write>,
    /// The batch index of the event each write is for; `None` for bookkeeping.
    origins: Vec<Option<usize>>,
}

/// A write queued for the end of the batch, on an unprefixed collection name.
#[derive(Debug)]
enum Write {
    Insert {
        collection: String,
        document: Document,
    },
    /// `update` is an update document (`$set`, …) or a whole replacement.
    Update {
        collection: String,
        filter: Document,
        update: Document,
        upsert: bool,
    },
}

impl Write {
    fn collection(&self) -> &str {
        match self {
            Write::Insert { collection, .. } | Write::Update { collection, .. } => collection,
        }
    }

    fn is_insert(&self) -> bool {
        matches!(self, Write::Insert { .. })
    }
}

impl MongoTx<'_> {
    /// The version's collection `name`.
    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.database.collection(&format!("{}{name}", self.prefix))
    }

    /// Every document of collection `name` that matches `filter`, read in the transaction.
    pub async fn find(
        &mut self,
        name: &str,
        filter: Document,
    ) -> Result<Vec<Document>, StoreError> {
        let collection = self.collection(name);
        let mut cursor = collection
            .find(filter)
            .session(&mut *self.session)
            .await
            .map_err(unavailable)?;
        let mut found = Vec::new();
        while let Some(document) = cursor.next(self.session).await {
            found.push(document.map_err(unavailable)?);
        }
        Ok(found)
    }

    /// Queues the insert of `document` into collection `name`, for the event at batch index
    /// `origin`.
    pub fn insert(&mut self, origin: usize, name: &str, document: Document) {
        self.queue(
            Some(origin),
            Write::Insert {
                collection: name.to_owned(),
                document,
            },
        );
    }

    /// Queues an update of the document of collection `name` that `filter` matches: `update`
    /// is an update document (`$set`, …) or a whole replacement.
    pub fn update(
        &mut self,
        origin: usize,
        name: &str,
        filter: Document,
        update: Document,
        upsert: bool,
    ) {
        self.queue(
            Some(origin),
            Write::Update {
                collection: name.to_owned(),
                filter,
                update,
                upsert,
            },
        );
    }

    fn queue(&mut self, origin: Option<usize>, write: Write) {
        self.writes.push(write);
        self.origins.push(origin);
    }

    /// Sends the queued writes, in order: each run of inserts into one collection as one
    /// `insert` command, each run of updates of one collection as one `update` command (the
    /// client-level `bulkWrite` would need MongoDB 8).
    async fn flush(&mut self) -> Result<(), StoreError> {
        let writes = std::mem::take(&mut self.writes);
        let origins = std::mem::take(&mut self.origins);
        let mut start = 0;
        while start < writes.len() {
            let first = &writes[start];
            let end = writes[start..]
                .iter()
                .position(|w| {
                    w.is_insert() != first.is_insert() || w.collection() != first.collection()
                })
                .map_or(writes.len(), |run| start + run);
            let collection = format!("{}{}", self.prefix, first.collection());
            let run = &writes[start..end];
            let command = if first.is_insert() {
                let documents: Vec<&Document> = run
                    .iter()
                    .filter_map(|w| match w {
                        Write::Insert { document, .. } => Some(document),
                        Write::Update { .. } => None,
                    })
                    .collect();
                doc! { "insert": collection, "documents": documents, "ordered": true }
            } else {
                let updates: Vec<Document> = run
                    .iter()
                    .filter_map(|w| match w {
                        Write::Update {
                            filter,
                            update,
                            upsert,
                            ..
                        } => Some(doc! { "q": filter, "u": update, "upsert": upsert }),
                        Write::Insert { .. } => None,
                    })
                    .collect();
                doc! { "update": collection, "updates": updates, "ordered": true }
            };
            let reply = self
                .database
                .run_command(command)
                .session(&mut *self.session)
                .await
                .map_err(unavailable)?;
            if let Some(failure) = write_error(&reply, &origins[start..end]) {
                return Err(failure);
            }
            start = end;
        }
        Ok(())
    }
}

/// The first write error in the reply of an `insert` or `update` command, blamed on the event
/// whose write it was (`origins`: the events of the command's writes, in order).
fn write_error(reply: &Document, origins: &[Option<usize>]) -> Option<StoreError> {
    let errors = reply.get_array("writeErrors").ok()?;
    let first = errors.first()?.as_document()?;
    let at = first
        .get_i32("index")
        .ok()
        .and_then(|at| usize::try_from(at).ok());
    let reason = first
        .get_str("errmsg")
        .unwrap_or("write refused")
        .to_owned();
    Some(match at.and_then(|at| origins.get(at).copied().flatten()) {
        Some(index) => StoreError::Event { index, reason },
        None => StoreError::Unavailable(reason),
    })
}

pub fn unavailable(error: MongoError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// A stored document that does not have the shape this code writes: the event that touches it
/// cannot be applied (as a PostgreSQL column that cannot be decoded).
pub fn malformed(index: usize, what: &str, document: &Document) -> StoreError {
    StoreError::Event {
        index,
        reason: format!("the read model holds a malformed {what}: {document}"),
    }
}

/// The server code of a failed command or write, if it has one.
fn error_code(error: &MongoError) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        ErrorKind::Write(WriteFailure::WriteError(write)) => Some(write.code),
        _ => None,
    }
}

const WRITE_CONFLICT: i32 = 112;
const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_EXISTS: i32 = 48;

/// Another transaction wrote the same document first.
fn is_conflict(error: &MongoError) -> bool {
    error.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || matches!(error_code(error), Some(WRITE_CONFLICT | DUPLICATE_KEY))
}

/// The collection prefix of a version.
pub fn collection_prefix(projection: &str, version: i32) -> String {
    format!("{projection}_v{version}_")
}

const CHECKPOINT: &str = "checkpoint";
const VERSIONS: &str = "versions";
const DEAD_LETTERS: &str = "dead_letters";
/// The `_id` of the one checkpoint document.
const CHECKPOINT_ID: &str = "checkpoint";

/// A projection version in its own collections.
pub struct MongoStore {
    database: Database,
    projection: Arc<dyn MongoProjection>,
    version: i32,
    prefix: String,
}

impl MongoStore {
    pub fn new(database: Database, projection: Arc<dyn MongoProjection>, version: i32) -> Self {
        let prefix = collection_prefix(projection.name(), version);
        Self {
            database,
            projection,
            version,
            prefix,
        }
    }

    /// `{name}_v{version}_`: every collection of this version starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn collection(&self, name: &str) -> Collection<Document> {
        self.database.collection(&format!("{}{name}", self.prefix))
    }

    /// A session with a snapshot transaction started.
    async fn begin(&self) -> Result<ClientSession, StoreError> {
        let mut session = self
            .database
            .client()
            .start_session()
            .await
            .map_err(unavailable)?;
        session
            .start_transaction()
            .read_concern(ReadConcern::snapshot())
            .write_concern(WriteConcern::majority())
            .await
            .map_err(unavailable)?;
        Ok(session)
    }

    async fn commit(session: &mut ClientSession) -> Result<(), StoreError> {
        // A commit whose outcome is unknown (the driver already retried it once) is reported
        // as unavailable: the caller retries the batch, and the fence tells whether it took.
        session.commit_transaction().await.map_err(unavailable)
    }

    /// Commits the session's transaction if `outcome` is a success, aborts it otherwise.
    async fn finish<T>(
        session: &mut ClientSession,
        outcome: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match outcome {
            Ok(value) => {
                Self::commit(session).await?;
                Ok(value)
            }
            Err(error) => {
                // The server aborts it anyway when the session ends; say so now.
                let _ = session.abort_transaction().await;
                Err(error)
            }
        }
    }

    async fn stored_checkpoint(
        &self,
        session: Option<&mut ClientSession>,
    ) -> Result<Checkpoint, StoreError> {
        let collection = self.collection(CHECKPOINT);
        let find = collection.find_one(doc! { "_id": CHECKPOINT_ID });
        let found = match session {
            Some(session) => find.session(session).await,
            None => find.await,
        }
        .map_err(unavailable)?;
        let mut checkpoint = Checkpoint::default();
        let Some(found) = found else {
            return Ok(checkpoint);
        };
        let damaged = || StoreError::Unavailable(format!("malformed checkpoint document: {found}"));
        let partitions = found.get_array("partitions").map_err(|_| damaged())?;
        for entry in partitions {
            let entry = entry.as_document().ok_or_else(damaged)?;
            let topic = entry.get_str("topic").map_err(|_| damaged())?;
            let partition = entry.get_i32("partition").map_err(|_| damaged())?;
            let next = entry.get_i64("next_offset").map_err(|_| damaged())?;
            checkpoint.set(
                TopicPartition {
                    topic: topic.to_owned(),
                    partition,
                },
                next,
            );
        }
        Ok(checkpoint)
    }

    /// Checks that the stored checkpoint is `from` and moves it to `to`, as the transaction's
    /// first write: a concurrent writer of this version conflicts here, before any other work.
    async fn fence_and_move(
        &self,
        session: &mut ClientSession,
        from: &Checkpoint,
        to: &Checkpoint,
    ) -> Result<(), StoreError> {
        if self.stored_checkpoint(Some(session)).await? != *from {
            return Err(StoreError::Fenced);
        }
        let partitions: Vec<Bson> = to
            .iter()
            .map(|(partition, next)| {
                Bson::Document(doc! {
                    "topic": &partition.topic,
                    "partition": partition.partition,
                    "next_offset": next,
                })
            })
            .collect();
        let written = self
            .collection(CHECKPOINT)
            .update_one(
                doc! { "_id": CHECKPOINT_ID },
                doc! { "$set": {
                    "partitions": partitions,
                    "updated_at": mongodb::bson::DateTime::now(),
                } },
            )
            .upsert(true)
            .session(session)
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(error) if is_conflict(&error) => Err(StoreError::Fenced),
            Err(error) => Err(unavailable(error)),
        }
    }

    fn dead_letter_document(id: i64, event: &StreamEvent, error: &str, attempts: i32) -> Document {
        let fields = DeadLetterFields::of(event);
        doc! {
            "_id": id,
            "topic": &event.partition.topic,
            "partition": event.partition.partition,
            "offset": event.offset,
            "event_id": fields.event_id,
            "event_type": fields.event_type,
            "aggregate_id": fields.aggregate_id,
            "sequence": fields.sequence,
            "payload": fields.payload,
            "error": error,
            "attempts": attempts,
            "parked_at": mongodb::bson::DateTime::now(),
        }
    }

    /// The id the next dead letter gets: they are numbered in the order they were parked.
    async fn next_dead_letter_id(&self, session: &mut ClientSession) -> Result<i64, StoreError> {
        let last = self
            .collection(DEAD_LETTERS)
            .find_one(doc! {})
            .sort(doc! { "_id": -1 })
            .projection(doc! { "_id": 1 })
            .session(session)
            .await
            .map_err(unavailable)?;
        Ok(last.and_then(|last| last.get_i64("_id").ok()).unwrap_or(0) + 1)
    }

    /// Applies events that passed the duplicate and dead-letter checks, and records their
    /// sequences; everything is written by one bulk write.
    async fn apply_fresh(
        &self,
        session: &mut ClientSession,
        batch: &[StreamEvent],
        applied: &mut Applied,
        respect_parked: bool,
    ) -> Result<(), StoreError> {
        let ids = aggregate_ids(batch);
        let mut tx = MongoTx {
            database: &self.database,
            prefix: &self.prefix,
            session,
            writes: Vec::new(),
            origins: Vec::new(),
        };
        let parked: HashSet<String> = if respect_parked {
            tx.find(DEAD_LETTERS, doc! { "aggregate_id": { "$in": &ids } })
                .await?
                .into_iter()
                .filter_map(|d| d.get_str("aggregate_id").ok().map(str::to_owned))
                .collect()
        } else {
            HashSet::new()
        };
        let mut versions: HashMap<String, i64> = HashMap::new();
        for stored in tx.find(VERSIONS, doc! { "_id": { "$in": &ids } }).await? {
            if let (Ok(id), Ok(sequence)) = (stored.get_str("_id"), stored.get_i64("sequence")) {
                versions.insert(id.to_owned(), sequence);
            }
        }
        let sorted = sort_batch(batch, &parked, &versions)?;
        if !sorted.held.is_empty() {
            let mut id = self.next_dead_letter_id(tx.session).await?;
            for event in &sorted.held {
                tx.queue(
                    None,
                    Write::Insert {
                        collection: DEAD_LETTERS.to_owned(),
                        document: Self::dead_letter_document(id, event, HELD_BEHIND, 0),
                    },
                );
                id += 1;
            }
        }
        applied.parked += sorted.held.len();
        applied.ignored += sorted.ignored;
        let fresh = sorted.fresh;
        self.projection
            .apply(&mut tx, &fresh, &mut applied.updates)
            .await?;
        applied.applied += fresh.len();
        // Aggregates seen for the first time get their record inserted (cheaper than an upsert).
        let (known, new): (Vec<_>, Vec<_>) = sorted
            .sequences
            .into_iter()
            .partition(|(id, _)| versions.contains_key(id));
        for (id, sequence) in new {
            tx.queue(
                None,
                Write::Insert {
                    collection: VERSIONS.to_owned(),
                    document: doc! { "_id": id, "sequence": sequence },
                },
            );
        }
        for (id, sequence) in known {
            tx.queue(
                None,
                Write::Update {
                    collection: VERSIONS.to_owned(),
                    filter: doc! { "_id": id },
                    update: doc! { "$set": { "sequence": sequence } },
                    upsert: false,
                },
            );
        }
        tx.flush().await
    }

    async fn apply_in(
        &self,
        session: &mut ClientSession,
        from: &Checkpoint,
        batch: &[StreamEvent],
        to: &Checkpoint,
    ) -> Result<Applied, StoreError> {
        self.fence_and_move(session, from, to).await?;
        let mut applied = Applied::default();
        self.apply_fresh(session, batch, &mut applied, true).await?;
        Ok(applied)
    }

    async fn park_in(
        &self,
        session: &mut ClientSession,
        from: &Checkpoint,
        event: &StreamEvent,
        error: &str,
        attempts: i32,
        to: &Checkpoint,
    ) -> Result<(), StoreError> {
        self.fence_and_move(session, from, to).await?;
        let id = self.next_dead_letter_id(session).await?;
        self.collection(DEAD_LETTERS)
            .insert_one(Self::dead_letter_document(id, event, error, attempts))
            .session(session)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Re-applies one dead letter and removes it, in one transaction.
    async fn retry_one(
        &self,
        session: &mut ClientSession,
        id: i64,
        event: &StreamEvent,
    ) -> Result<Applied, StoreError> {
        self.collection(DEAD_LETTERS)
            .delete_one(doc! { "_id": id })
            .session(&mut *session)
            .await
            .map_err(unavailable)?;
        let mut applied = Applied::default();
        self.apply_fresh(session, std::slice::from_ref(event), &mut applied, false)
            .await?;
        Ok(applied)
    }

    /// Every collection of this version that exists.
    async fn version_collections(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .database
            .list_collection_names()
            .await
            .map_err(unavailable)?
            .into_iter()
            .filter(|name| name.starts_with(&self.prefix))
            .collect())
    }
}

fn index_model(keys: &[(&str, i32)], unique: bool) -> IndexModel {
    let mut key_doc = Document::new();
    for (field, order) in keys {
        key_doc.insert(*field, *order);
    }
    IndexModel::builder()
        .keys(key_doc)
        .options(unique.then(|| IndexOptions::builder().unique(true).build()))
        .build()
}

/// A document as JSON for a dump: an `_id` the server generated is left out (it differs
/// between two builds of the same log).
fn dump_document(mut document: Document) -> Value {
    if matches!(document.get("_id"), Some(Bson::ObjectId(_))) {
        document.remove("_id");
    }
    Bson::Document(document).into_relaxed_extjson()
}

#[async_trait]
impl RetryParked for MongoStore {
    async fn retry_parked(&self, parked: &Parked) -> Result<Option<Vec<Update>>, StoreError> {
        let mut session = self.begin().await?;
        match self.retry_one(&mut session, parked.id, &parked.event).await {
            Ok(applied) if applied.parked == 0 => {
                Self::commit(&mut session).await?;
                Ok(Some(applied.updates))
            }
            Ok(_) | Err(StoreError::Event { .. }) => {
                let _ = session.abort_transaction().await;
                // Counting attempts is best effort: the letter stays parked either way.
                let _ = self
                    .collection(DEAD_LETTERS)
                    .update_one(
                        doc! { "_id": parked.id },
                        doc! { "$inc": { "attempts": 1 } },
                    )
                    .await;
                Ok(None)
            }
            Err(other) => {
                let _ = session.abort_transaction().await;
                Err(other)
            }
        }
    }
}

#[async_trait]
impl ReadStore for MongoStore {
    fn describe(&self) -> String {
        format!("{} v{} (MongoDB)", self.projection.name(), self.version)
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        let existing: HashSet<String> = self.version_collections().await?.into_iter().collect();
        let bookkeeping = [CHECKPOINT, VERSIONS, DEAD_LETTERS];
        let model = self.projection.collections().iter().map(|c| c.name);
        for name in bookkeeping.into_iter().chain(model) {
            let full = format!("{}{name}", self.prefix);
            if existing.contains(&full) {
                continue;
            }
            match self.database.create_collection(&full).await {
                Ok(()) => {}
                // Another instance created it meanwhile.
                Err(error) if error_code(&error) == Some(NAMESPACE_EXISTS) => {}
                Err(error) => return Err(unavailable(error)),
            }
        }
        self.collection(DEAD_LETTERS)
            .create_index(index_model(&[("aggregate_id", 1)], false))
            .await
            .map_err(unavailable)?;
        for collection in self.projection.collections() {
            for (keys, unique) in collection.indexes {
                self.collection(collection.name)
                    .create_index(index_model(keys, *unique))
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        self.stored_checkpoint(None).await
    }

    async fn last_progress(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let found = self
            .collection(CHECKPOINT)
            .find_one(doc! { "_id": CHECKPOINT_ID })
            .await
            .map_err(unavailable)?;
        Ok(found
            .and_then(|document| document.get_datetime("updated_at").ok().copied())
            .and_then(|at| chrono::DateTime::from_timestamp_millis(at.timestamp_millis())))
    }

    async fn apply(
        &self,
        from: &Checkpoint,
        batch: &[StreamEvent],
        to: &Checkpoint,
    ) -> Result<Applied, StoreError> {
        let mut session = self.begin().await?;
        let outcome = self.apply_in(&mut session, from, batch, to).await;
        Self::finish(&mut session, outcome).await
    }

    async fn park(
        &self,
        from: &Checkpoint,
        event: &StreamEvent,
        error: &str,
        attempts: i32,
        to: &Checkpoint,
    ) -> Result<(), StoreError> {
        let mut session = self.begin().await?;
        let outcome = self
            .park_in(&mut session, from, event, error, attempts, to)
            .await;
        Self::finish(&mut session, outcome).await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let stored: Vec<Document> = self
            .collection(DEAD_LETTERS)
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let text = |d: &Document, field: &str| d.get_str(field).ok().map(str::to_owned);
        Ok(stored
            .iter()
            .map(|d| DeadLetter {
                location: format!(
                    "{}/{}@{}",
                    d.get_str("topic").unwrap_or_default(),
                    d.get_i32("partition").unwrap_or_default(),
                    d.get_i64("offset").unwrap_or_default()
                ),
                event_id: text(d, "event_id"),
                event_type: text(d, "event_type"),
                aggregate_id: text(d, "aggregate_id"),
                sequence: d.get_i64("sequence").ok(),
                error: text(d, "error").unwrap_or_default(),
                attempts: d.get_i32("attempts").unwrap_or_default(),
                parked_at: d
                    .get_datetime("parked_at")
                    .ok()
                    .and_then(|at| DateTime::<Utc>::from_timestamp_millis(at.timestamp_millis()))
                    .unwrap_or_default(),
            })
            .collect())
    }

    async fn retry_dead_letters(&self) -> Result<(Retried, Vec<Update>), StoreError> {
        let stored: Vec<Document> = self
            .collection(DEAD_LETTERS)
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let letters = stored
            .into_iter()
            .filter_map(|letter| {
                Some(Parked {
                    id: letter.get_i64("_id").ok()?,
                    aggregate_id: letter.get_str("aggregate_id").ok().map(str::to_owned),
                    event: StreamEvent {
                        partition: Arc::new(TopicPartition {
                            topic: letter.get_str("topic").unwrap_or_default().to_owned(),
                            partition: letter.get_i32("partition").unwrap_or_default(),
                        }),
                        offset: letter.get_i64("offset").unwrap_or_default(),
                        payload: StreamEvent::decode(
                            letter.get_str("payload").unwrap_or_default().as_bytes(),
                        ),
                        traceparent: None,
                    },
                })
            })
            .collect();
        retry_in_order(self, letters).await
    }

    async fn dump(&self) -> Result<Value, StoreError> {
        let mut dump = serde_json::Map::new();
        for collection in self.projection.collections() {
            let mut order = Document::new();
            for field in collection.dump_order {
                order.insert(*field, 1);
            }
            let documents: Vec<Document> = self
                .collection(collection.name)
                .find(doc! {})
                .sort(order)
                .await
                .map_err(unavailable)?
                .try_collect()
                .await
                .map_err(unavailable)?;
            dump.insert(
                collection.name.to_owned(),
                Value::Array(documents.into_iter().map(dump_document).collect()),
            );
        }
        Ok(Value::Object(dump))
    }

    async fn drop_version(&self) -> Result<(), StoreError> {
        for name in self.version_collections().await? {
            self.database
                .collection::<Document>(&name)
                .drop()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}
