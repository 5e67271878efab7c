//! The timeline read model in a MongoDB-compatible server (SecantusDB in these tests; the real
//! `mongo` in production): what a batch leaves behind, duplicates, fencing, dead letters, and a
//! projector fed from the Kafka-compatible broker.
//!
//! Reads `AETHER_TEST_MONGO` (default `mongodb://127.0.0.1:27017/?directConnection=true`);
//! `scripts/test.sh` starts the server. Each test works in a database of its own and drops it.

use std::sync::Arc;

use aether_domain::message::MessageEvent;
use aether_domain::{ChannelId, MessageBody, MessageId, ServerId, UserId};
use aether_projections::rows::ChannelEventKind;
use aether_projections::stream::engine::NoUpdates;
use aether_projections::stream::mongo::{MongoStore, MongoTimelineProjection};
use aether_projections::stream::{
    Checkpoint, KafkaSource, Payload, ProjectorMetrics, ProjectorOptions, ReadStore, StoreError,
    StreamEvent, StreamProjector, TopicPartition,
};
use aether_projections::{Update, UpdateBus};
use aether_schemas::topics::MESSAGE_EVENTS;
use aether_schemas::{EventEnvelope, Metadata};
use chrono::{DateTime, Utc};
use mongodb::{Client, Database};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn mongo_url() -> String {
    std::env::var("AETHER_TEST_MONGO")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".to_owned())
}

/// A database that exists only for one test.
struct TestMongo {
    database: Database,
}

impl TestMongo {
    async fn new() -> Self {
        let client = Client::with_uri_str(mongo_url())
            .await
            .expect("MongoDB-compatible (SecantusDB) client");
        let name = format!("aether_test_{}", uuid::Uuid::new_v4().simple());
        Self {
            database: client.database(&name),
        }
    }

    async fn store(&self, version: i32) -> MongoStore {
        let store = MongoStore::new(
            self.database.clone(),
            Arc::new(MongoTimelineProjection),
            version,
        );
        store.prepare().await.expect("prepare");
        store
    }

    async fn drop(self) {
        self.database.drop().await.expect("drop the test database");
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    // Whole milliseconds, as a BSON date keeps them.
    DateTime::from_timestamp_millis(1_700_000_000_000 + seconds * 1_000 + 123).expect("time")
}

fn body(text: &str) -> MessageBody {
    MessageBody::parse(text).expect("body")
}

/// Builds the events of a few channels the way the relay publishes them.
struct Script {
    server: ServerId,
    author: UserId,
    partition: Arc<TopicPartition>,
    next_offset: i64,
    /// Each message's last sequence.
    sequences: std::collections::HashMap<MessageId, u64>,
    channels: std::collections::HashMap<MessageId, ChannelId>,
    bodies: std::collections::HashMap<MessageId, String>,
}

impl Script {
    fn new() -> Self {
        Self {
            server: ServerId::new(),
            author: UserId::new(),
            partition: Arc::new(TopicPartition {
                topic: "aether.messages.events.v1".to_owned(),
                partition: 0,
            }),
            next_offset: 0,
            sequences: Default::default(),
            channels: Default::default(),
            bodies: Default::default(),
        }
    }

    fn event(
        &mut self,
        id: MessageId,
        event: MessageEvent,
        occurred_at: DateTime<Utc>,
    ) -> StreamEvent {
        let sequence = self.sequences.entry(id).or_insert(0);
        *sequence += 1;
        let event_type = cqrs_es::DomainEvent::event_type(&event);
        let envelope = EventEnvelope::from_stored(
            "Message",
            &id.to_string(),
            *sequence,
            &event_type,
            "1.0",
            serde_json::to_value(&event).expect("event as JSON"),
            &Metadata {
                actor: Some(self.author.to_string()),
                correlation_id: "c".to_owned(),
                causation_id: "c".to_owned(),
                occurred_at,
                routing_key: event.channel_id().to_string(),
                traceparent: None,
            },
        );
        self.raw(Payload::Event(Box::new(envelope)))
    }

    fn raw(&mut self, payload: Payload) -> StreamEvent {
        let offset = self.next_offset;
        self.next_offset += 1;
        StreamEvent {
            partition: self.partition.clone(),
            offset,
            payload,
            traceparent: None,
        }
    }

    fn send(&mut self, channel: ChannelId, text: &str, when: i64) -> (MessageId, StreamEvent) {
        let id = MessageId::new();
        self.channels.insert(id, channel);
        self.bodies.insert(id, text.to_owned());
        let event = MessageEvent::MessageSent {
            message_id: id,
            channel_id: channel,
            server_id: self.server,
            author_id: self.author,
            body: body(text),
            sent_at: at(when),
            reply_to_id: None,
            thread_root_id: None,
            also_in_channel: false,
            mentions: None,
            forwarded_from: None,
        };
        (id, self.event(id, event, at(when)))
    }

    fn edit(&mut self, id: MessageId, text: &str, when: i64) -> StreamEvent {
        let previous = self.bodies.insert(id, text.to_owned()).unwrap_or_default();
        let event = MessageEvent::MessageEdited {
            message_id: id,
            channel_id: self.channels[&id],
            body: body(text),
            previous_body: body(&previous),
            edited_at: at(when),
            mentions: None,
        };
        self.event(id, event, at(when))
    }

    /// An edit of a message this script never sent (its `MessageSent` is not in the log).
    fn orphan_edit(
        &mut self,
        channel: ChannelId,
        text: &str,
        when: i64,
    ) -> (MessageId, StreamEvent) {
        let id = MessageId::new();
        self.channels.insert(id, channel);
        self.bodies.insert(id, "lost".to_owned());
        // Sequence 2: the send was sequence 1.
        self.sequences.insert(id, 1);
        (id, self.edit(id, text, when))
    }

    fn delete(&mut self, id: MessageId, when: i64) -> StreamEvent {
        let event = MessageEvent::MessageDeleted {
            message_id: id,
            channel_id: self.channels[&id],
            deleted_by: self.author,
            deleted_at: at(when),
        };
        self.event(id, event, at(when))
    }

    fn malformed(&mut self) -> StreamEvent {
        let raw = b"{\"not\": \"an envelope\"";
        self.raw(StreamEvent::decode(raw))
    }
}

/// Applies `batch` from the stored checkpoint; returns the new checkpoint.
async fn apply(
    store: &MongoStore,
    batch: &[StreamEvent],
) -> (Checkpoint, aether_projections::stream::Applied) {
    let from = store.checkpoint().await.expect("checkpoint");
    let to = from.after(batch);
    let applied = store.apply(&from, batch, &to).await.expect("apply");
    (to, applied)
}

fn messages(dump: &Value) -> Vec<Value> {
    dump["messages"].as_array().cloned().unwrap_or_default()
}

fn message(dump: &Value, id: MessageId) -> &Value {
    dump["messages"]
        .as_array()
        .and_then(|all| all.iter().find(|m| m["_id"] == json!(id.to_string())))
        .unwrap_or(&Value::Null)
}

fn date(seconds: i64) -> Value {
    json!({ "$date": at(seconds).to_rfc3339_opts(chrono::SecondsFormat::Millis, true) })
}

#[tokio::test]
async fn a_batch_leaves_messages_with_their_edit_history_and_tombstones() {
    let mongo = TestMongo::new().await;
    let store = mongo.store(1).await;
    let mut script = Script::new();
    let (general, random) = (ChannelId::new(), ChannelId::new());
    let (hello, e1) = script.send(general, "hello", 1);
    let (oops, e2) = script.send(general, "oops", 2);
    let e3 = script.edit(hello, "hello, world", 3);
    let e4 = script.edit(hello, "hello, everyone", 4);
    let e5 = script.delete(oops, 5);
    let (elsewhere, e6) = script.send(random, "elsewhere", 6);
    let batch = vec![e1, e2, e3, e4, e5, e6];

    let (to, applied) = apply(&store, &batch).await;

    assert_eq!(
        (applied.applied, applied.ignored, applied.parked),
        (6, 0, 0)
    );
    assert_eq!(store.checkpoint().await.expect("checkpoint"), to);
    let dump = store.dump().await.expect("dump");
    assert_eq!(
        *message(&dump, hello),
        json!({
            "_id": hello.to_string(),
            "channel_id": general.to_string(),
            "server_id": script.server.to_string(),
            "author_id": script.author.to_string(),
            "body": "hello, everyone",
            "created_at": date(1),
            "edited_at": date(4),
            "deleted": false,
            "channel_seq": 1,
            "version": 3,
            "edits": [
                { "body": "hello", "replaced_at": date(3) },
                { "body": "hello, world", "replaced_at": date(4) },
            ],
            "reactions": [],
            "reply_to_id": null,
            "thread_root_id": null,
            "thread_seq": null,
            "in_channel": true,
            "forwarded_from": null,
            "thread": null,
            "pinned": null,
            "moderation": null,
            "review_open": false,
        })
    );
    let tombstone = message(&dump, oops);
    assert_eq!(tombstone["deleted"], json!(true));
    assert_eq!(tombstone["body"], Value::Null);
    assert_eq!(tombstone["edits"], json!([]));
    assert_eq!(
        tombstone["channel_seq"],
        json!(2),
        "a tombstone keeps its place"
    );
    assert_eq!(tombstone["version"], json!(2));
    assert_eq!(message(&dump, elsewhere)["channel_seq"], json!(1));
    let kinds: Vec<(String, i64, String)> = dump["channel_events"]
        .as_array()
        .expect("channel events")
        .iter()
        .map(|e| {
            (
                e["channel_id"].as_str().unwrap_or_default().to_owned(),
                e["seq"].as_i64().unwrap_or_default(),
                e["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .filter(|(channel, _, _)| *channel == general.to_string())
        .collect();
    let general_id = general.to_string();
    assert_eq!(
        kinds,
        vec![
            (general_id.clone(), 1, "MessageSent".to_owned()),
            (general_id.clone(), 2, "MessageSent".to_owned()),
            (general_id.clone(), 3, "MessageEdited".to_owned()),
            (general_id.clone(), 4, "MessageEdited".to_owned()),
            (general_id.clone(), 5, "MessageDeleted".to_owned()),
        ]
    );
    let heads = dump["channel_heads"].as_array().expect("heads");
    let head = heads
        .iter()
        .find(|h| h["_id"] == json!(general_id))
        .expect("general's head");
    assert_eq!(
        (head["last_event"].clone(), head["last_message"].clone()),
        (json!(5), json!(2))
    );

    // What the realtime edge is told: each change as it happened, numbered per channel.
    let told: Vec<(ChannelId, i64, ChannelEventKind, i64, Option<String>)> = applied
        .updates
        .iter()
        .map(|update| match update {
            Update::Channel(row) => (
                row.channel_id,
                row.seq,
                row.kind,
                row.message.version,
                row.message.body.clone(),
            ),
            other => panic!("unexpected update {other:?}"),
        })
        .collect();
    assert_eq!(
        told,
        vec![
            (
                general,
                1,
                ChannelEventKind::MessageSent,
                1,
                Some("hello".into())
            ),
            (
                general,
                2,
                ChannelEventKind::MessageSent,
                1,
                Some("oops".into())
            ),
            (
                general,
                3,
                ChannelEventKind::MessageEdited,
                2,
                Some("hello, world".into())
            ),
            (
                general,
                4,
                ChannelEventKind::MessageEdited,
                3,
                Some("hello, everyone".into())
            ),
            (general, 5, ChannelEventKind::MessageDeleted, 2, None),
            (
                random,
                1,
                ChannelEventKind::MessageSent,
                1,
                Some("elsewhere".into())
            ),
        ]
    );
    let Update::Channel(first_edit) = &applied.updates[2] else {
        panic!("not a channel update");
    };
    assert_eq!(first_edit.message.edits.len(), 1);
    assert_eq!(first_edit.message.position, 1);
    assert_eq!(first_edit.message.created_at, at(1));

    // The same events again (a redelivery after a crash): nothing changes, nothing is told.
    let (_, again) = apply(&store, &batch).await;
    assert_eq!((again.applied, again.ignored), (0, 6));
    assert!(again.updates.is_empty());
    assert_eq!(store.dump().await.expect("dump"), dump);

    // Batch boundaries do not matter: a second version built in three batches is the same.
    let other = mongo.store(2).await;
    for part in [&batch[..1], &batch[..4], &batch[3..]] {
        apply(&other, part).await;
    }
    assert_eq!(other.dump().await.expect("dump"), dump);
    assert_eq!(messages(&dump).len(), 3);

    mongo.drop().await;
}

#[tokio::test]
async fn an_apply_from_a_stale_checkpoint_is_refused_and_changes_nothing() {
    let mongo = TestMongo::new().await;
    let store = mongo.store(1).await;
    let mut script = Script::new();
    let channel = ChannelId::new();
    let (_, first) = script.send(channel, "first", 1);
    let (moved_to, _) = apply(&store, &[first]).await;
    let before = store.dump().await.expect("dump");

    let (_, second) = script.send(channel, "second", 2);
    let stale = Checkpoint::default();
    let refused = store
        .apply(
            &stale,
            std::slice::from_ref(&second),
            &stale.after(std::slice::from_ref(&second)),
        )
        .await;

    assert!(matches!(refused, Err(StoreError::Fenced)), "{refused:?}");
    assert_eq!(store.dump().await.expect("dump"), before);
    assert_eq!(store.checkpoint().await.expect("checkpoint"), moved_to);
    let parked = store
        .park(
            &stale,
            &second,
            "test",
            1,
            &stale.after(std::slice::from_ref(&second)),
        )
        .await;
    assert!(matches!(parked, Err(StoreError::Fenced)), "{parked:?}");
    assert!(store.dead_letters().await.expect("dead letters").is_empty());

    mongo.drop().await;
}

#[tokio::test]
async fn two_writers_from_the_same_checkpoint_never_both_commit() {
    let mongo = TestMongo::new().await;
    let store = Arc::new(mongo.store(1).await);
    let mut script = Script::new();
    let channel = ChannelId::new();
    for round in 0..5 {
        let from = store.checkpoint().await.expect("checkpoint");
        let (_, left) = script.send(channel, "left", round);
        let (_, right) = script.send(channel, "right", round);
        let tasks = [left, right].map(|event| {
            let store = store.clone();
            let from = from.clone();
            tokio::spawn(async move {
                let to = from.after(std::slice::from_ref(&event));
                store.apply(&from, &[event], &to).await
            })
        });
        let mut committed = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => committed += 1,
                Err(StoreError::Fenced | StoreError::Unavailable(_)) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(committed <= 1, "round {round}: both writers committed");
        let dump = store.dump().await.expect("dump");
        let last = dump["channel_heads"][0]["last_message"]
            .as_i64()
            .unwrap_or(0);
        assert_eq!(
            usize::try_from(last).unwrap_or(0),
            messages(&dump).len(),
            "the counters and the messages agree"
        );
    }
    mongo.drop().await;
}

#[tokio::test]
async fn a_writer_in_the_middle_of_a_batch_fences_out_the_other() {
    let mongo = TestMongo::new().await;
    let store = mongo.store(1).await;
    let mut script = Script::new();
    let channel = ChannelId::new();
    let (_, first) = script.send(channel, "first", 1);
    let (from, _) = apply(&store, &[first]).await;

    // Another instance is mid-batch: its transaction has moved the checkpoint document but
    // not committed yet.
    let checkpoints = mongo
        .database
        .collection::<mongodb::bson::Document>("timeline_v1_checkpoint");
    let mut other = mongo
        .database
        .client()
        .start_session()
        .await
        .expect("session");
    other.start_transaction().await.expect("transaction");
    checkpoints
        .update_one(
            mongodb::bson::doc! { "_id": "checkpoint" },
            mongodb::bson::doc! { "$set": { "updated_at": mongodb::bson::DateTime::now() } },
        )
        .session(&mut other)
        .await
        .expect("the other instance's write");

    let (_, second) = script.send(channel, "second", 2);
    let batch = [second];
    let refused = store.apply(&from, &batch, &from.after(&batch)).await;
    assert!(matches!(refused, Err(StoreError::Fenced)), "{refused:?}");

    // Once the other instance is gone, the batch goes through.
    other.abort_transaction().await.expect("abort");
    let applied = store
        .apply(&from, &batch, &from.after(&batch))
        .await
        .expect("apply");
    assert_eq!(applied.applied, 1);
    assert_eq!(messages(&store.dump().await.expect("dump")).len(), 2);

    mongo.drop().await;
}

#[tokio::test]
async fn a_write_the_read_model_refuses_names_its_event_and_undoes_the_batch() {
    let mongo = TestMongo::new().await;
    let store = mongo.store(1).await;
    let mut script = Script::new();
    let (general, random) = (ChannelId::new(), ChannelId::new());
    // A damaged read model: a change numbered 1 in `random` that no counter knows about.
    mongo
        .database
        .collection::<mongodb::bson::Document>("timeline_v1_channel_events")
        .insert_one(mongodb::bson::doc! {
            "channel_id": random.to_string(), "seq": 1_i64, "kind": "MessageSent",
            "message_id": "damaged",
        })
        .await
        .expect("insert");
    let before = store.dump().await.expect("dump");
    let (_, fine) = script.send(general, "fine", 1);
    let (_, clashing) = script.send(random, "clashing", 2);
    let batch = [fine, clashing];
    let from = store.checkpoint().await.expect("checkpoint");

    let refused = store.apply(&from, &batch, &from.after(&batch)).await;

    assert!(
        matches!(refused, Err(StoreError::Event { index: 1, .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.dump().await.expect("dump"),
        before,
        "nothing of the batch stayed"
    );
    assert_eq!(store.checkpoint().await.expect("checkpoint"), from);

    mongo.drop().await;
}

#[tokio::test]
async fn a_poison_event_is_parked_and_holds_back_its_aggregate_only() {
    let mongo = TestMongo::new().await;
    let store = mongo.store(1).await;
    let mut script = Script::new();
    let channel = ChannelId::new();
    let (kept, sent) = script.send(channel, "kept", 1);
    apply(&store, &[sent]).await;

    // An undecodable message: refused, then parked by the projector.
    let garbage = script.malformed();
    let from = store.checkpoint().await.expect("checkpoint");
    let refused = store
        .apply(
            &from,
            std::slice::from_ref(&garbage),
            &from.after(std::slice::from_ref(&garbage)),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Event { index: 0, .. })),
        "{refused:?}"
    );
    store
        .park(
            &from,
            &garbage,
            "not an event envelope",
            3,
            &from.after(std::slice::from_ref(&garbage)),
        )
        .await
        .expect("park");

    // An edit whose message never reached the read model: the batch is refused as a whole,
    // naming the event at fault.
    let before = store.dump().await.expect("dump");
    let (_, bystander) = script.send(channel, "bystander", 2);
    let (orphan, edit) = script.orphan_edit(channel, "edited", 3);
    let from = store.checkpoint().await.expect("checkpoint");
    let batch = [bystander.clone(), edit.clone()];
    let refused = store.apply(&from, &batch, &from.after(&batch)).await;
    assert!(
        matches!(refused, Err(StoreError::Event { index: 1, .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.dump().await.expect("dump"),
        before,
        "nothing of the batch was applied"
    );
    apply(&store, &[bystander]).await;
    let from = store.checkpoint().await.expect("checkpoint");
    store
        .park(
            &from,
            &edit,
            "message is not in the timeline",
            3,
            &from.after(std::slice::from_ref(&edit)),
        )
        .await
        .expect("park");

    // Later events of the orphan's aggregate queue up behind it; others flow.
    let later = script.delete(orphan, 4);
    let other = script.edit(kept, "kept, edited", 5);
    let (_, applied) = apply(&store, &[later, other]).await;
    assert_eq!((applied.applied, applied.parked), (1, 1));
    let dump = store.dump().await.expect("dump");
    assert_eq!(message(&dump, kept)["body"], json!("kept, edited"));
    assert_eq!(*message(&dump, orphan), Value::Null);

    let letters = store.dead_letters().await.expect("dead letters");
    let summary: Vec<(Option<String>, Option<i64>, i32)> = letters
        .iter()
        .map(|l| (l.aggregate_id.clone(), l.sequence, l.attempts))
        .collect();
    assert_eq!(
        summary,
        vec![
            (None, None, 3),
            (Some(orphan.to_string()), Some(2), 3),
            (Some(orphan.to_string()), Some(3), 0),
        ]
    );
    assert!(
        letters[0].location.ends_with("/0@1"),
        "{}",
        letters[0].location
    );

    // Retrying changes nothing while the cause remains.
    let (retried, updates) = store.retry_dead_letters().await.expect("retry");
    assert_eq!((retried.applied, retried.still_failing), (0, 3));
    assert!(updates.is_empty());
    let attempts: Vec<i32> = store
        .dead_letters()
        .await
        .expect("dead letters")
        .iter()
        .map(|l| l.attempts)
        .collect();
    assert_eq!(attempts, vec![4, 4, 0]);
    assert_eq!(store.dump().await.expect("dump"), dump);

    mongo.drop().await;
}

#[tokio::test]
async fn retrying_dead_letters_applies_them_in_order_once_the_cause_is_gone() {
    let mongo = TestMongo::new().await;
    let store = mongo.store(1).await;
    let mut script = Script::new();
    let channel = ChannelId::new();
    // The store failed on this send until the projector gave up (an outage, say).
    let (late, sent) = script.send(channel, "late", 1);
    let from = store.checkpoint().await.expect("checkpoint");
    store
        .park(
            &from,
            &sent,
            "read model unavailable",
            3,
            &from.after(std::slice::from_ref(&sent)),
        )
        .await
        .expect("park");
    let edit = script.edit(late, "late, edited", 2);
    let (early, other) = script.send(channel, "early", 3);
    let (_, applied) = apply(&store, &[edit, other]).await;
    assert_eq!((applied.applied, applied.parked), (1, 1));

    let (retried, updates) = store.retry_dead_letters().await.expect("retry");

    assert_eq!((retried.applied, retried.still_failing), (2, 0));
    assert!(store.dead_letters().await.expect("dead letters").is_empty());
    let told: Vec<(i64, ChannelEventKind)> = updates
        .iter()
        .filter_map(|u| match u {
            Update::Channel(row) => Some((row.seq, row.kind)),
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        vec![
            (2, ChannelEventKind::MessageSent),
            (3, ChannelEventKind::MessageEdited)
        ]
    );
    let dump = store.dump().await.expect("dump");
    assert_eq!(message(&dump, early)["channel_seq"], json!(1));
    assert_eq!(message(&dump, late)["channel_seq"], json!(2));
    assert_eq!(message(&dump, late)["body"], json!("late, edited"));
    assert_eq!(message(&dump, late)["edits"][0]["body"], json!("late"));

    // The aggregate is no longer held back.
    let gone = script.delete(late, 4);
    let (_, applied) = apply(&store, &[gone]).await;
    assert_eq!((applied.applied, applied.parked), (1, 0));

    mongo.drop().await;
}

#[tokio::test]
async fn a_version_lives_in_its_own_collections_until_dropped() {
    let mongo = TestMongo::new().await;
    let live = mongo.store(1).await;
    let rebuild = mongo.store(2).await;
    // Preparing twice is harmless.
    rebuild.prepare().await.expect("prepare again");
    let mut script = Script::new();
    let (_, sent) = script.send(ChannelId::new(), "only in v1", 1);
    apply(&live, &[sent]).await;

    assert_eq!(messages(&rebuild.dump().await.expect("dump")).len(), 0);
    rebuild.drop_version().await.expect("drop v2");
    let names = mongo
        .database
        .list_collection_names()
        .await
        .expect("collections");
    assert!(
        names.iter().all(|name| !name.starts_with("timeline_v2_")),
        "{names:?}"
    );
    assert!(
        names.contains(&"timeline_v1_messages".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"timeline_v1_checkpoint".to_owned()),
        "{names:?}"
    );
    assert_eq!(messages(&live.dump().await.expect("dump")).len(), 1);

    mongo.drop().await;
}

/// Publishes `events` to the messages topic as the relay does: the envelope as JSON, keyed by
/// channel (garbage keyed by `stray`).
async fn publish(config: &aether_kafka::KafkaConfig, events: &[StreamEvent]) {
    let producer = config.producer().expect("producer");
    let topic = config.topic(MESSAGE_EVENTS);
    for event in events {
        let (key, body) = match &event.payload {
            Payload::Event(envelope) => (
                envelope.data["channel_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                serde_json::to_vec(envelope).expect("envelope as JSON"),
            ),
            Payload::Malformed { raw, .. } => ("stray".to_owned(), raw.clone().into_bytes()),
        };
        producer
            .send(
                FutureRecord::to(&topic).key(key.as_bytes()).payload(&body),
                Timeout::Never,
            )
            .await
            .map_err(|(error, _)| error)
            .expect("publish");
    }
}

async fn run_until_caught_up(
    store: Arc<MongoStore>,
    config: &aether_kafka::KafkaConfig,
    updates: Arc<dyn aether_projections::stream::engine::UpdateSink>,
) -> Checkpoint {
    let source = KafkaSource::new(config, &[MESSAGE_EVENTS]).expect("source");
    let projector = StreamProjector::new(
        store,
        source,
        updates,
        ProjectorOptions {
            batch_size: 50,
            stop_when_caught_up: true,
            ..ProjectorOptions::default()
        },
        Arc::new(ProjectorMetrics::new("timeline", 1)),
    );
    let checkpoint = projector.checkpoint();
    let (_pause, paused) = watch::channel(false);
    projector
        .run(paused, CancellationToken::new())
        .await
        .expect("projector run");
    let reached = checkpoint.borrow().clone();
    reached
}

#[tokio::test]
async fn a_projector_builds_the_timeline_from_the_broker_and_resumes_where_it_stopped() {
    let mongo = TestMongo::new().await;
    let store = Arc::new(mongo.store(1).await);
    let config = aether_test_support::kafka_config(2);
    aether_kafka::admin::init_topics(&config)
        .await
        .expect("create topics");
    let mut script = Script::new();
    let channels = [ChannelId::new(), ChannelId::new(), ChannelId::new()];
    let mut events = Vec::new();
    let mut sent = Vec::new();
    for n in 0..60 {
        let channel = channels[n % channels.len()];
        let (id, event) = script.send(channel, &format!("message {n}"), n as i64);
        events.push(event);
        sent.push(id);
    }
    events.push(script.edit(sent[0], "message 0, edited", 100));
    events.push(script.delete(sent[1], 101));
    events.push(script.malformed());
    publish(&config, &events).await;
    let bus = UpdateBus::default();
    let mut told = bus.subscribe();

    let reached = run_until_caught_up(store.clone(), &config, Arc::new(bus.clone())).await;

    assert_eq!(reached.total(), events.len() as i64);
    assert_eq!(store.checkpoint().await.expect("checkpoint"), reached);
    let dump = store.dump().await.expect("dump");
    assert_eq!(messages(&dump).len(), 60);
    assert_eq!(message(&dump, sent[0])["body"], json!("message 0, edited"));
    assert_eq!(message(&dump, sent[1])["deleted"], json!(true));
    // Each channel's messages are numbered in the order they were sent.
    for channel in channels {
        let positions: Vec<(i64, String)> = messages(&dump)
            .iter()
            .filter(|m| m["channel_id"] == json!(channel.to_string()))
            .map(|m| {
                let id = m["_id"].as_str().unwrap_or_default().to_owned();
                (m["channel_seq"].as_i64().unwrap_or_default(), id)
            })
            .collect();
        let in_sent_order: Vec<String> = sent
            .iter()
            .filter(|id| script.channels[id] == channel)
            .map(|id| id.to_string())
            .collect();
        assert_eq!(
            positions
                .iter()
                .map(|(_, id)| id.clone())
                .collect::<Vec<_>>(),
            in_sent_order
        );
        assert_eq!(
            positions.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<i64>>()
        );
    }
    let letters = store.dead_letters().await.expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].aggregate_id, None);
    let mut updates = 0;
    while told.try_recv().is_ok() {
        updates += 1;
    }
    assert_eq!(updates, 62, "one update per applied message event");

    // A restart resumes from the stored checkpoint: nothing is applied twice.
    let again = run_until_caught_up(store.clone(), &config, Arc::new(NoUpdates)).await;
    assert_eq!(again, reached);
    assert_eq!(store.dump().await.expect("dump"), dump);

    mongo.drop().await;
}
