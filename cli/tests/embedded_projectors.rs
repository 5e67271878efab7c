//! The embedded mode's projectors: the stream engine reading the real SQLite event store's own
//! log (driven by the command service) into one SQLite file per projection version, as `aether
//! dev` runs them. What readers of the read models and subscribers of the update bus see.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aether_commands::{ChatCommands, CommandContext, SqliteEventStore};
use aether_domain::{ChannelId, ChannelKind, MessageId, Role, ServerId, UserId};
use aether_projections::catalog::CatalogProjection;
use aether_projections::projection::{Projection, ProjectionError};
use aether_projections::read::PageFrom;
use aether_projections::receipts::ReceiptsProjection;
use aether_projections::rows::{ChannelEventKind, ChannelRow, MessageRow, ServerEventKind};
use aether_projections::stream::source::{EventLogSource, EventSource};
use aether_projections::stream::sqlite::SqliteStore;
use aether_projections::stream::store::HELD_BEHIND;
use aether_projections::stream::{
    Checkpoint, ProjectorMetrics, ProjectorOptions, ReadStore, StoreError, StreamProjector,
};
use aether_projections::timeline::TimelineProjection;
use aether_projections::{ReadModels, Update, UpdateBus, Watermarks};
use aether_schemas::{EventLog, LoggedEvent};
use serde_json::{json, Value};
use sqlx::{SqliteConnection, SqlitePool};
use tempfile::TempDir;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery";

/// The longest any single wait of these tests lasts: nothing hangs.
const PATIENCE: Duration = Duration::from_secs(30);

/// The embedded mode's version of every projection.
const VERSION: i32 = 1;

struct World {
    /// The data directory: the event store and one read-model file per projection version.
    dir: TempDir,
    events: SqliteEventStore,
    commands: ChatCommands<SqliteEventStore>,
    bus: UpdateBus,
}

/// What [`World::scenario`] built.
struct Scenario {
    owner: UserId,
    member: UserId,
    server: ServerId,
    channel: ChannelId,
    /// "hello" (owner), "hi there" (member), "welcome" (owner), in that order.
    messages: Vec<MessageId>,
}

/// One projection version as the embedded application runs it: its store, and the engine
/// reading the event store's log into it.
struct Projector {
    name: &'static str,
    store: Arc<SqliteStore>,
    engine: Arc<StreamProjector>,
    metrics: Arc<ProjectorMetrics>,
}

/// What one [`Projector::drain`] read from the log.
#[derive(Debug, PartialEq, Eq)]
struct Drained {
    /// Events that changed the read model.
    applied: u64,
    /// Events the sequence guard skipped as already applied.
    ignored: u64,
}

impl Drained {
    /// Every event the log delivered.
    fn delivered(&self) -> u64 {
        self.applied + self.ignored
    }
}

impl Projector {
    /// Runs the engine until it has applied everything the log held when it started.
    async fn drain(&self) -> Drained {
        let (applied, ignored) = (self.metrics.applied_total(), self.ignored_total());
        let (_paused, paused_rx) = watch::channel(false);
        tokio::time::timeout(
            PATIENCE,
            self.engine.run(paused_rx, CancellationToken::new()),
        )
        .await
        .unwrap_or_else(|_| panic!("{} did not catch up within {PATIENCE:?}", self.name))
        .unwrap_or_else(|error| panic!("{}: {error}", self.name));
        Drained {
            applied: self.metrics.applied_total() - applied,
            ignored: self.ignored_total() - ignored,
        }
    }

    /// The log position the engine has applied up to.
    fn position(&self) -> i64 {
        EventLogSource::position(&self.engine.checkpoint().borrow())
    }

    /// The log position the store's own checkpoint says it has applied up to.
    async fn stored_position(&self) -> i64 {
        EventLogSource::position(&self.store.checkpoint().await.expect("stored checkpoint"))
    }

    fn ignored_total(&self) -> u64 {
        self.metrics.ignored_total()
    }

    fn failed_batches(&self) -> u64 {
        self.metrics.failed_batches_total()
    }
}

fn options(batch_size: usize) -> ProjectorOptions {
    ProjectorOptions {
        batch_size,
        linger: Duration::ZERO,
        backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        stop_when_caught_up: true,
        ..ProjectorOptions::default()
    }
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let events = SqliteEventStore::open(&dir.path().join("events.db"))
            .await
            .expect("open event store");
        Self {
            dir,
            commands: ChatCommands::new(events.clone()),
            events,
            bus: UpdateBus::default(),
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A projector of `projection` over its file in the data directory (created on first use),
    /// publishing on the world's bus.
    async fn projector(&self, projection: Arc<dyn Projection>, batch_size: usize) -> Projector {
        let name = projection.name();
        let store = Arc::new(SqliteStore::new(self.data_dir(), projection, VERSION));
        store.prepare().await.expect("prepare the store");
        let metrics = Arc::new(ProjectorMetrics::new(name, VERSION));
        let log: Arc<dyn EventLog> = Arc::new(self.events.clone());
        let engine = StreamProjector::new(
            store.clone(),
            Arc::new(EventLogSource::new(log)) as Arc<dyn EventSource>,
            Arc::new(self.bus.clone()),
            options(batch_size),
            metrics.clone(),
        );
        Projector {
            name,
            store,
            engine: Arc::new(engine),
            metrics,
        }
    }

    /// The catalog, receipts and timeline projectors, as the embedded application runs them.
    async fn projectors(&self, batch_size: usize) -> [Projector; 3] {
        [
            self.projector(Arc::new(CatalogProjection), batch_size)
                .await,
            self.projector(Arc::new(ReceiptsProjection), batch_size)
                .await,
            self.projector(Arc::new(TimelineProjection), batch_size)
                .await,
        ]
    }

    fn head(&self) -> i64 {
        *self.events.head().borrow()
    }

    /// The queries over the projectors' files, as the application opens them.
    async fn read_models(&self, projectors: &[Projector]) -> ReadModels {
        let checkpoints = projectors.iter().map(|p| p.engine.checkpoint()).collect();
        ReadModels::embedded(self.data_dir(), Watermarks::new(checkpoints))
            .await
            .expect("read models")
    }

    /// A connection pool on one projection's file, to look at what the store holds.
    async fn file(&self, projection: &str) -> SqlitePool {
        let path = self.data_dir().join(format!("{projection}_v{VERSION}.db"));
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(5));
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    async fn count(&self, projection: &str, sql: &str) -> i64 {
        let pool = self.file(projection).await;
        let count = sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql);
        pool.close().await;
        count
    }

    async fn register(&self, username: &str) -> UserId {
        self.commands
            .register(&ctx(None), username, PASSWORD, None)
            .await
            .expect("register")
            .value
            .id
    }

    async fn create_server(&self, owner: UserId, name: &str) -> ServerId {
        self.commands
            .create_server(&ctx(Some(owner)), name)
            .await
            .expect("create server")
            .value
            .id
    }

    async fn send(&self, author: UserId, channel: ChannelId, body: &str) -> MessageId {
        self.commands
            .send_message(&ctx(Some(author)), channel, body)
            .await
            .expect("send")
            .value
            .id
    }

    async fn edit(&self, author: UserId, message: MessageId, body: &str) {
        self.commands
            .edit_message(&ctx(Some(author)), message, body)
            .await
            .expect("edit");
    }

    async fn delete(&self, actor: UserId, message: MessageId) {
        self.commands
            .delete_message(&ctx(Some(actor)), message)
            .await
            .expect("delete");
    }

    async fn create_channel(&self, owner: UserId, server: ServerId, name: &str) -> ChannelId {
        self.commands
            .create_channel(&ctx(Some(owner)), server, name, ChannelKind::Text, false)
            .await
            .expect("create channel")
            .value
            .id
    }

    /// An owner with a server and a channel, a second member who joined by invite, and three
    /// messages.
    async fn scenario(&self) -> Scenario {
        let owner = self.register("olivia").await;
        let member = self.register("peggy").await;
        let server = self.create_server(owner, "Guild").await;
        let channel = self.create_channel(owner, server, "general").await;
        let invite = self
            .commands
            .create_invite(&ctx(Some(owner)), server, None, None)
            .await
            .expect("invite")
            .value
            .code;
        self.commands
            .join_server(&ctx(Some(member)), &invite)
            .await
            .expect("join");
        let messages = vec![
            self.send(owner, channel, "hello").await,
            self.send(member, channel, "hi there").await,
            self.send(owner, channel, "welcome").await,
        ];
        Scenario {
            owner,
            member,
            server,
            channel,
            messages,
        }
    }

    /// Everything the projectors' stores hold but their checkpoints: every read-model table row
    /// by row, the per-aggregate applied sequences and the dead letters.
    async fn dump(&self, projectors: &[Projector]) -> Value {
        let mut dump = serde_json::Map::new();
        for projector in projectors {
            let pool = self.file(projector.name).await;
            let versions: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT projection, aggregate_id, sequence FROM projector_versions \
                 ORDER BY projection, aggregate_id",
            )
            .fetch_all(&pool)
            .await
            .expect("projector_versions");
            pool.close().await;
            let dead_letters = projector.store.dead_letters().await.expect("dead letters");
            dump.insert(
                projector.name.to_owned(),
                json!({
                    "tables": projector.store.dump().await.expect("dump"),
                    "versions": versions,
                    "dead_letters": dead_letters.len(),
                }),
            );
        }
        Value::Object(dump)
    }
}

fn ctx(actor: Option<UserId>) -> CommandContext {
    CommandContext::new(actor)
}

async fn drain_all(projectors: &[Projector]) {
    for projector in projectors {
        projector.drain().await;
    }
}

fn bodies(messages: &[MessageRow]) -> Vec<Option<&str>> {
    messages.iter().map(|m| m.body.as_deref()).collect()
}

/// Everything on the bus right now.
fn received(rx: &mut tokio::sync::broadcast::Receiver<Arc<Update>>) -> Vec<Update> {
    let mut updates = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(update) => updates.push((*update).clone()),
            Err(TryRecvError::Empty) => return updates,
            Err(other) => panic!("bus: {other:?}"),
        }
    }
}

/// Waits (at most [`PATIENCE`]) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: not within {PATIENCE:?}");
}

#[tokio::test]
async fn read_models_show_the_server_its_channel_members_and_messages() {
    let world = World::new().await;
    let s = world.scenario().await;
    let projectors = world.projectors(500).await;
    drain_all(&projectors).await;
    for projector in &projectors {
        assert_eq!(projector.position(), world.head(), "{}", projector.name);
        assert_eq!(projector.stored_position().await, world.head());
    }

    let read = world.read_models(&projectors).await;
    let server = read.server(s.server).await.unwrap().expect("the server");
    assert_eq!(server.name, "Guild");
    assert_eq!(server.owner_id, s.owner);
    assert_eq!(
        read.channels(s.server).await.unwrap(),
        vec![ChannelRow {
            id: s.channel,
            server_id: s.server,
            name: "general".to_owned(),
            kind: ChannelKind::Text,
            private: false,
            archived: false,
            topic: None,
            category: None,
        }]
    );

    let (members, total) = read.members(s.server, 0, 10).await.unwrap();
    assert_eq!(total, members.len() as i64);
    assert_eq!(
        members
            .iter()
            .map(|m| (m.user_id, m.role))
            .collect::<Vec<_>>(),
        vec![(s.owner, Role::Owner), (s.member, Role::Member)],
        "members in join order"
    );
    assert_eq!(read.member_count(s.server).await.unwrap(), 2);
    assert_eq!(
        read.servers_of(s.member)
            .await
            .unwrap()
            .iter()
            .map(|server| server.id)
            .collect::<Vec<_>>(),
        vec![s.server]
    );
    assert_eq!(
        read.user(s.member).await.unwrap().expect("user").username,
        "peggy"
    );
    assert_eq!(
        world.count("catalog", "SELECT uses FROM invites").await,
        1,
        "the invite counts its one use"
    );

    let messages = read
        .messages(s.channel, None, None, 10, PageFrom::Start)
        .await
        .unwrap();
    assert_eq!(
        bodies(&messages),
        vec![Some("hello"), Some("hi there"), Some("welcome")]
    );
    assert_eq!(
        messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        s.messages
    );
    assert_eq!(
        messages.iter().map(|m| m.position).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        messages.iter().map(|m| m.author_id).collect::<Vec<_>>(),
        vec![s.owner, s.member, s.owner]
    );
    assert!(messages
        .iter()
        .all(|m| m.version == 1 && !m.deleted && m.server_id == Some(s.server)));
    let newest = read
        .messages(s.channel, None, None, 2, PageFrom::End)
        .await
        .unwrap();
    assert_eq!(bodies(&newest), vec![Some("hi there"), Some("welcome")]);
    read.close().await;
}

#[tokio::test]
async fn a_redelivered_log_changes_nothing() {
    let world = World::new().await;
    let s = world.scenario().await;
    world.edit(s.member, s.messages[1], "hi there!").await;
    world.delete(s.owner, s.messages[2]).await;
    let head = world.head();
    let projectors = world.projectors(4).await;
    drain_all(&projectors).await;
    let before = world.dump(&projectors).await;
    assert_eq!(
        world
            .count("timeline", "SELECT COUNT(*) FROM messages")
            .await,
        3
    );
    assert_eq!(
        world
            .count("timeline", "SELECT COUNT(*) FROM channel_events")
            .await,
        5
    );

    // A second writer replaying the log from the start is turned away by the checkpoint: it
    // changes nothing.
    let replay = EventLogSource::new(Arc::new(world.events.clone()));
    replay.seek(&Checkpoint::default()).await.unwrap();
    let whole_log = replay
        .poll_batch(10_000, Duration::from_secs(1), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(i64::try_from(whole_log.len()).unwrap(), head);
    for projector in &projectors {
        let stale = Checkpoint::default();
        let outcome = projector
            .store
            .apply(&stale, &whole_log, &stale.after(&whole_log))
            .await;
        assert!(
            matches!(outcome, Err(StoreError::Fenced)),
            "{}: {outcome:?}",
            projector.name
        );
    }
    assert_eq!(world.dump(&projectors).await, before);
    drop(projectors);

    // Redelivery: the checkpoints forget everything they had applied.
    for name in ["catalog", "receipts", "timeline"] {
        let pool = world.file(name).await;
        let reset = sqlx::query("DELETE FROM stream_checkpoint")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(reset.rows_affected(), 1, "{name}");
        pool.close().await;
    }
    let mut rx = world.bus.subscribe();
    let projectors = world.projectors(4).await;
    for projector in &projectors {
        assert_eq!(projector.stored_position().await, 0);
        let drained = projector.drain().await;
        assert_eq!(
            i64::try_from(drained.delivered()).unwrap(),
            head,
            "{}: the whole log is delivered again",
            projector.name
        );
        assert_eq!(
            drained.applied, 0,
            "{}: and none of it applied",
            projector.name
        );
        assert_eq!(projector.position(), head);
        assert_eq!(projector.stored_position().await, head);
    }

    assert_eq!(world.dump(&projectors).await, before);
    let read = world.read_models(&projectors).await;
    let messages = read
        .messages(s.channel, None, None, 10, PageFrom::Start)
        .await
        .unwrap();
    assert_eq!(
        bodies(&messages),
        vec![Some("hello"), Some("hi there!"), None]
    );
    assert_eq!(read.channel_head(s.channel).await.unwrap(), 5);
    read.close().await;
    assert_eq!(received(&mut rx), vec![], "subscribers are not told twice");
}

#[tokio::test]
async fn a_restarted_projector_resumes_from_its_checkpoint() {
    let world = World::new().await;
    let s = world.scenario().await;
    let projectors = world.projectors(2).await;
    drain_all(&projectors).await;
    let applied = world.head();
    let read = world.read_models(&projectors).await;
    let old_messages = read
        .messages(s.channel, None, None, 10, PageFrom::Start)
        .await
        .unwrap();
    let old_events = read.channel_events_after(s.channel, 0, 100).await.unwrap();
    read.close().await;

    // Restart the read side: drop the stores and engines, open the same files, build new ones.
    drop(projectors);
    let projectors = world.projectors(500).await;
    for projector in &projectors {
        assert_eq!(
            projector.stored_position().await,
            applied,
            "{}",
            projector.name
        );
        assert_eq!(
            projector.drain().await.delivered(),
            0,
            "{}: nothing new yet",
            projector.name
        );
        assert_eq!(projector.position(), applied);
    }

    let fourth = world.send(s.member, s.channel, "anyone here?").await;
    world.send(s.owner, s.channel, "yes").await;
    world.edit(s.member, fourth, "anyone around?").await;
    let head = world.head();
    assert_eq!(head - applied, 3);
    for projector in &projectors {
        assert_eq!(
            projector.drain().await,
            Drained {
                applied: 3,
                ignored: 0
            },
            "{}: exactly the new events",
            projector.name
        );
        assert_eq!(projector.position(), head);
    }

    let read = world.read_models(&projectors).await;
    let messages = read
        .messages(s.channel, None, None, 10, PageFrom::Start)
        .await
        .unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(
        &messages[..3],
        old_messages.as_slice(),
        "old rows untouched"
    );
    assert_eq!(
        bodies(&messages[3..]),
        vec![Some("anyone around?"), Some("yes")]
    );
    assert_eq!(
        messages.iter().map(|m| m.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let events = read.channel_events_after(s.channel, 0, 100).await.unwrap();
    assert_eq!(events.len(), old_events.len() + 3);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert_eq!(
        events[3..]
            .iter()
            .map(|e| (e.kind, e.message.id))
            .collect::<Vec<_>>(),
        vec![
            (ChannelEventKind::MessageSent, fourth),
            (ChannelEventKind::MessageSent, messages[4].id),
            (ChannelEventKind::MessageEdited, fourth),
        ]
    );
    assert_eq!(read.member_count(s.server).await.unwrap(), 2);
    read.close().await;
}

#[tokio::test]
async fn channel_changes_are_numbered_without_gaps_through_edits_and_deletes() {
    let world = World::new().await;
    let owner = world.register("olivia").await;
    let server = world.create_server(owner, "Guild").await;
    let channel = world.create_channel(owner, server, "general").await;
    let other = world.create_channel(owner, server, "random").await;

    let first = world.send(owner, channel, "first").await;
    let second = world.send(owner, channel, "second").await;
    let third = world.send(owner, channel, "third").await;
    world.edit(owner, first, "first, edited").await;
    world.edit(owner, second, "second, edited").await;
    let elsewhere = world.send(owner, other, "elsewhere").await;
    world.edit(owner, second, "second, again").await;
    world.delete(owner, first).await;
    let projectors = world.projectors(3).await;
    drain_all(&projectors).await;

    let read = world.read_models(&projectors).await;
    let events = read.channel_events_after(channel, 0, 100).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    use ChannelEventKind::{MessageDeleted, MessageEdited, MessageSent};
    assert_eq!(
        events
            .iter()
            .map(|e| (e.kind, e.message.id))
            .collect::<Vec<_>>(),
        vec![
            (MessageSent, first),
            (MessageSent, second),
            (MessageSent, third),
            (MessageEdited, first),
            (MessageEdited, second),
            (MessageEdited, second),
            (MessageDeleted, first),
        ]
    );
    assert_eq!(read.channel_head(channel).await.unwrap(), 7);
    let resumed = read.channel_events_after(channel, 4, 100).await.unwrap();
    assert_eq!(
        resumed.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    // The other channel numbers its own changes.
    let other_events = read.channel_events_after(other, 0, 100).await.unwrap();
    assert_eq!(other_events.len(), 1);
    assert_eq!(other_events[0].seq, 1);
    assert_eq!(other_events[0].message.id, elsewhere);
    assert_eq!(other_events[0].message.position, 1);
    assert_eq!(read.channel_head(other).await.unwrap(), 1);

    let messages = read
        .messages(channel, None, None, 10, PageFrom::Start)
        .await
        .unwrap();
    assert_eq!(
        messages.iter().map(|m| m.position).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "a deleted message keeps its place"
    );

    let deleted = &messages[0];
    assert_eq!(deleted.id, first);
    assert!(deleted.deleted);
    assert_eq!(deleted.body, None);
    assert!(deleted.edits.is_empty(), "{:?}", deleted.edits);
    assert_eq!(deleted.version, 3);
    let timeline = world.file("timeline").await;
    let (body_is_null, edits): (bool, String) =
        sqlx::query_as("SELECT body IS NULL, edits FROM messages WHERE id = ?")
            .bind(first.to_string())
            .fetch_one(&timeline)
            .await
            .unwrap();
    timeline.close().await;
    assert!(body_is_null, "the deleted body is gone from the database");
    assert_eq!(edits, "[]");
    let dump = world.dump(&projectors).await.to_string();
    assert!(
        dump.contains("second, again") && dump.contains("third"),
        "the dump shows the bodies it holds"
    );
    assert!(!dump.contains("first"), "no trace of the deleted words");

    let edited = &messages[1];
    assert_eq!(edited.body.as_deref(), Some("second, again"));
    assert_eq!(
        edited
            .edits
            .iter()
            .map(|e| e.body.as_str())
            .collect::<Vec<_>>(),
        vec!["second", "second, edited"]
    );
    assert!(edited.edited_at.is_some());
    assert_eq!(edited.version, 3);

    let untouched = &messages[2];
    assert_eq!(untouched.body.as_deref(), Some("third"));
    assert!(untouched.edits.is_empty());
    assert_eq!(untouched.edited_at, None);
    assert_eq!(untouched.version, 1);
    read.close().await;
}

#[tokio::test]
async fn updates_are_published_once_per_message_event_and_only_after_commit() {
    let world = World::new().await;
    let s = world.scenario().await;
    world.edit(s.member, s.messages[1], "hi there!").await;
    world.delete(s.owner, s.messages[0]).await;
    let catalog = world.projector(Arc::new(CatalogProjection), 500).await;
    let timeline = world.projector(Arc::new(TimelineProjection), 500).await;
    // The receipts' file exists too, as in the application, though nothing runs it here.
    let receipts = world.projector(Arc::new(ReceiptsProjection), 500).await;
    let mut rx = world.bus.subscribe();
    assert_eq!(received(&mut rx), vec![], "nothing before projecting");

    // A batch whose commit fails: every event in it had been applied, but a deferred foreign
    // key is only checked at COMMIT, so the failure comes at the very end.
    let file = world.file("timeline").await;
    for statement in [
        "CREATE TABLE guard_parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE commit_guard (parent INTEGER \
         REFERENCES guard_parent (id) DEFERRABLE INITIALLY DEFERRED)",
        "CREATE TRIGGER fail_at_commit AFTER INSERT ON channel_events WHEN NEW.seq = 3 \
         BEGIN INSERT INTO commit_guard (parent) VALUES (42); END",
    ] {
        sqlx::query(statement).execute(&file).await.unwrap();
    }
    let source = EventLogSource::new(Arc::new(world.events.clone()));
    source.seek(&Checkpoint::default()).await.unwrap();
    let batch = source
        .poll_batch(500, Duration::from_secs(1), Duration::ZERO)
        .await
        .unwrap();
    let start = Checkpoint::default();
    let failed = timeline
        .store
        .apply(&start, &batch, &start.after(&batch))
        .await
        .expect_err("the commit must fail");
    assert!(failed.to_string().contains("FOREIGN KEY"), "{failed}");

    // The engine retries such a batch; nothing is published while its commit fails.
    let engine = timeline.engine.clone();
    let (_paused, paused_rx) = watch::channel(false);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { engine.run(paused_rx, shutdown).await }
    });
    let _stop = shutdown.drop_guard();
    eventually("two failed commits", || timeline.failed_batches() >= 2).await;
    assert_eq!(
        received(&mut rx),
        vec![],
        "no update from a rolled-back batch"
    );
    assert_eq!(timeline.position(), 0);
    assert_eq!(timeline.stored_position().await, 0);
    assert_eq!(timeline.metrics.applied_total(), 0);
    let messages_now: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&file)
        .await
        .unwrap();
    assert_eq!(messages_now, 0);
    sqlx::query("DROP TRIGGER fail_at_commit")
        .execute(&file)
        .await
        .unwrap();
    file.close().await;

    // The retried batch commits, then publishes.
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the retried batch commits")
        .expect("projector task")
        .expect("projector");
    assert_eq!(timeline.position(), world.head());
    assert!(
        timeline.store.dead_letters().await.unwrap().is_empty(),
        "a failed commit is retried, never parked"
    );
    let updates = received(&mut rx);
    let message_events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE aggregate_type = 'Message'")
            .fetch_one(world.events.pool())
            .await
            .unwrap();
    assert_eq!(message_events, 5);
    let channel_updates: Vec<_> = updates
        .iter()
        .map(|update| match update {
            Update::Channel(row) => row,
            other => panic!("the timeline publishes channel updates only: {other:?}"),
        })
        .collect();
    assert_eq!(
        i64::try_from(channel_updates.len()).unwrap(),
        message_events,
        "one update per message event"
    );
    assert!(channel_updates.iter().all(|u| u.channel_id == s.channel));
    assert_eq!(
        channel_updates.iter().map(|u| u.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    use ChannelEventKind::{MessageDeleted, MessageEdited, MessageSent};
    assert_eq!(
        channel_updates
            .iter()
            .map(|u| (u.kind, u.message.id, u.message.body.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            (MessageSent, s.messages[0], Some("hello")),
            (MessageSent, s.messages[1], Some("hi there")),
            (MessageSent, s.messages[2], Some("welcome")),
            (MessageEdited, s.messages[1], Some("hi there!")),
            (MessageDeleted, s.messages[0], None),
        ],
        "each update carries the message as that event left it"
    );

    // The catalog announces the one membership change and the server's news (the channel, the
    // join), numbered from 1, and no channel update.
    catalog.drain().await;
    let from_catalog = received(&mut rx);
    assert_eq!(
        from_catalog
            .iter()
            .filter(|update| !matches!(update, Update::Server(_)))
            .collect::<Vec<_>>(),
        vec![&Update::Membership {
            server_id: s.server,
            user_id: s.member,
            role: Some(Role::Member),
        }]
    );
    let news: Vec<_> = from_catalog
        .iter()
        .filter_map(|update| match update {
            Update::Server(row) => Some((row.server_id, row.seq, row.kind, row.data.user_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        news,
        vec![
            (s.server, 1, ServerEventKind::ChannelCreated, None),
            (s.server, 2, ServerEventKind::MemberJoined, Some(s.member)),
        ]
    );

    // What was published is what a reader finds.
    let read = world.read_models(&[catalog, receipts, timeline]).await;
    let stored = read.channel_events_after(s.channel, 0, 100).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| (e.seq, e.kind)).collect::<Vec<_>>(),
        channel_updates
            .iter()
            .map(|u| (u.seq, u.kind))
            .collect::<Vec<_>>()
    );
    read.close().await;

    // Nothing new, nothing published.
    let timeline = world.projector(Arc::new(TimelineProjection), 500).await;
    assert_eq!(timeline.drain().await.delivered(), 0);
    assert_eq!(received(&mut rx), vec![]);
}

/// The timeline, except that it cannot apply the sending of one message.
struct Poisoned {
    timeline: TimelineProjection,
    message: MessageId,
}

const POISON: &str = "this message is poison";

// `Projection` is an `async_trait`; written out by hand, as this crate does not depend on the
// macro.
impl Projection for Poisoned {
    fn name(&self) -> &'static str {
        self.timeline.name()
    }

    fn tables(&self) -> &'static [(&'static str, &'static str)] {
        self.timeline.tables()
    }

    fn apply<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        tx: &'life1 mut SqliteConnection,
        event: &'life2 LoggedEvent,
        updates: &'life3 mut Vec<Update>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ProjectionError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        if event.envelope.aggregate_id == self.message.to_string()
            && event.envelope.event_type == "MessageSent"
        {
            return Box::pin(std::future::ready(Err(ProjectionError::decode(
                event, POISON,
            ))));
        }
        self.timeline.apply(tx, event, updates)
    }
}

#[tokio::test]
async fn a_poison_event_is_parked_as_a_dead_letter_and_the_rest_flows() {
    let world = World::new().await;
    let owner = world.register("olivia").await;
    let server = world.create_server(owner, "Guild").await;
    let channel = world.create_channel(owner, server, "general").await;
    let hello = world.send(owner, channel, "hello").await;
    let poison = world.send(owner, channel, "poison").await;
    let poison_sent_at = world.head();
    let after = world.send(owner, channel, "after").await;
    world.edit(owner, poison, "poison, edited").await;
    let edited_at = world.head();
    world.edit(owner, after, "after, edited").await;

    let mut rx = world.bus.subscribe();
    let poisoned = Poisoned {
        timeline: TimelineProjection,
        message: poison,
    };
    let projectors = [
        world.projector(Arc::new(CatalogProjection), 500).await,
        world.projector(Arc::new(ReceiptsProjection), 500).await,
        world.projector(Arc::new(poisoned), 500).await,
    ];
    drain_all(&projectors).await;
    for projector in &projectors {
        assert_eq!(projector.position(), world.head(), "{}", projector.name);
    }
    let timeline = &projectors[2];

    // The sending is parked after its attempts; the later edit of the same message waits
    // behind it, so that message is never applied out of order.
    let letters = timeline.store.dead_letters().await.unwrap();
    assert_eq!(
        letters
            .iter()
            .map(|letter| (
                letter.location.clone(),
                letter.event_type.as_deref(),
                letter.aggregate_id.clone(),
                letter.attempts,
            ))
            .collect::<Vec<_>>(),
        vec![
            (
                format!("log/0@{poison_sent_at}"),
                Some("MessageSent"),
                Some(poison.to_string()),
                ProjectorOptions::default().max_attempts,
            ),
            (
                format!("log/0@{edited_at}"),
                Some("MessageEdited"),
                Some(poison.to_string()),
                0,
            ),
        ]
    );
    assert!(letters[0].error.contains(POISON), "{}", letters[0].error);
    assert!(
        letters[0].error.contains("MessageSent"),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[1].error, HELD_BEHIND);
    assert_eq!(timeline.metrics.parked_total(), 2);
    for projector in &projectors[..2] {
        assert!(projector.store.dead_letters().await.unwrap().is_empty());
    }

    // The rest flows: readers and subscribers see every other message.
    let read = world.read_models(&projectors).await;
    let messages = read
        .messages(channel, None, None, 10, PageFrom::Start)
        .await
        .unwrap();
    assert_eq!(
        messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![hello, after]
    );
    assert_eq!(
        bodies(&messages),
        vec![Some("hello"), Some("after, edited")]
    );
    assert_eq!(read.message(poison).await.unwrap(), None);
    use ChannelEventKind::{MessageEdited, MessageSent};
    assert_eq!(
        received(&mut rx)
            .iter()
            .filter_map(|update| match update {
                Update::Channel(row) => Some((row.kind, row.message.id)),
                _ => None,
            })
            .collect::<Vec<_>>(),
        vec![
            (MessageSent, hello),
            (MessageSent, after),
            (MessageEdited, after),
        ]
    );

    // Once the projection can apply it, the parked events are applied in their order.
    let fixed = SqliteStore::new(world.data_dir(), Arc::new(TimelineProjection), VERSION);
    let (retried, updates) = fixed.retry_dead_letters().await.unwrap();
    assert_eq!((retried.applied, retried.still_failing), (2, 0));
    assert_eq!(updates.len(), 2);
    assert!(fixed.dead_letters().await.unwrap().is_empty());
    let recovered = read.message(poison).await.unwrap().expect("the message");
    assert_eq!(recovered.body.as_deref(), Some("poison, edited"));
    assert_eq!(recovered.version, 2);
    read.close().await;
}
