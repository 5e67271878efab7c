//! Projectors over the real SQLite event store and a real SQLite read-model store, driven by the
//! command service: what readers of the read models and subscribers of the update bus see.

use std::path::PathBuf;
use std::sync::Arc;

use aether_commands::sqlite::open_sqlite;
use aether_commands::{ChatCommands, CommandContext, SqliteEventStore};
use aether_domain::{ChannelId, ChannelKind, MessageId, Role, ServerId, UserId};
use aether_projections::catalog::CatalogProjection;
use aether_projections::read::PageFrom;
use aether_projections::rows::{ChannelEventKind, ChannelRow, MessageRow};
use aether_projections::runtime::Projection;
use aether_projections::timeline::TimelineProjection;
use aether_projections::{Projector, ProjectorConfig, ReadModels, Update, UpdateBus};
use aether_schemas::EventLog;
use sqlx::sqlite::SqliteSynchronous;
use sqlx::SqlitePool;
use tempfile::TempDir;
use tokio::sync::broadcast::error::TryRecvError;

const PASSWORD: &str = "correct horse battery";

struct World {
    // Held so the directory outlives both databases.
    _dir: TempDir,
    read_path: PathBuf,
    events: SqliteEventStore,
    commands: ChatCommands<SqliteEventStore>,
    read: SqlitePool,
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

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let events = SqliteEventStore::open(&dir.path().join("events.db"))
            .await
            .expect("open event store");
        let read_path = dir.path().join("read.db");
        let read = open_read_store(&read_path).await;
        Self {
            _dir: dir,
            read_path,
            commands: ChatCommands::new(events.clone()),
            events,
            read,
            bus: UpdateBus::default(),
        }
    }

    async fn projector(&self, projection: Arc<dyn Projection>, batch_size: usize) -> Projector {
        let log: Arc<dyn EventLog> = Arc::new(self.events.clone());
        Projector::new(
            projection,
            log,
            self.read.clone(),
            self.bus.clone(),
            ProjectorConfig {
                batch_size,
                ..ProjectorConfig::default()
            },
        )
        .await
        .expect("projector")
    }

    /// The catalog and timeline projectors, as the embedded application runs them.
    async fn projectors(&self, batch_size: usize) -> [Projector; 2] {
        [
            self.projector(Arc::new(CatalogProjection), batch_size)
                .await,
            self.projector(Arc::new(TimelineProjection), batch_size)
                .await,
        ]
    }

    fn head(&self) -> i64 {
        *self.events.head().borrow()
    }

    fn read_models(&self) -> ReadModels {
        ReadModels::embedded(self.read.clone(), aether_projections::Watermarks::default())
    }

    async fn register(&self, username: &str) -> UserId {
        self.commands
            .register(&ctx(None), username, PASSWORD, None)
            .await
            .expect("register")
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
        let server = self
            .commands
            .create_server(&ctx(Some(owner)), "Guild")
            .await
            .expect("create server")
            .value
            .id;
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

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.read)
            .await
            .expect(sql)
    }

    /// Every read-model table, row by row, in a fixed order.
    async fn dump(&self) -> Vec<String> {
        const TABLES: &[(&str, &str, &str)] = &[
            (
                "messages",
                "id, channel_id, server_id, author_id, body, created_at, edited_at, deleted, \
                 channel_seq, version, edits",
                "id",
            ),
            (
                "channel_events",
                "channel_id, seq, kind, message_id",
                "channel_id, seq",
            ),
            (
                "channel_heads",
                "channel_id, last_event, last_message",
                "channel_id",
            ),
            ("users", "id, username, display_name, registered_at", "id"),
            ("servers", "id, name, owner_id, created_at", "id"),
            (
                "channels",
                "id, server_id, name, kind, private, archived, position",
                "id",
            ),
            (
                "members",
                "server_id, user_id, role, joined_at, position",
                "server_id, user_id",
            ),
            (
                "invites",
                "code, server_id, created_by, max_uses, uses, expires_at, revoked",
                "code",
            ),
            (
                "projector_versions",
                "projection, aggregate_id, sequence",
                "projection, aggregate_id",
            ),
        ];
        let mut dump = Vec::new();
        for (table, columns, order) in TABLES {
            let row = columns
                .split(", ")
                .map(|column| format!("quote({column})"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT {row} FROM {table} ORDER BY {order}"))
                    .fetch_all(&self.read)
                    .await
                    .expect(table);
            dump.extend(rows.into_iter().map(|row| format!("{table}: {row}")));
        }
        dump
    }
}

async fn open_read_store(path: &std::path::Path) -> SqlitePool {
    let read = open_sqlite(path, SqliteSynchronous::Normal)
        .await
        .expect("open read store");
    aether_projections::migrate(&read)
        .await
        .expect("read-model migrations");
    read
}

fn ctx(actor: Option<UserId>) -> CommandContext {
    CommandContext::new(actor)
}

/// Runs batches until the projector has nothing left; returns how many events it read.
async fn drain(projector: &Projector) -> usize {
    let mut total = 0;
    loop {
        match projector.run_batch().await.expect("batch") {
            0 => return total,
            n => total += n,
        }
    }
}

async fn drain_all(projectors: &[Projector]) {
    for projector in projectors {
        drain(projector).await;
    }
}

fn checkpoint(projector: &Projector) -> i64 {
    *projector.checkpoint().borrow()
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

#[tokio::test]
async fn read_models_show_the_server_its_channel_members_and_messages() {
    let world = World::new().await;
    let s = world.scenario().await;
    let projectors = world.projectors(500).await;
    drain_all(&projectors).await;
    for projector in &projectors {
        assert_eq!(checkpoint(projector), world.head(), "{}", projector.name());
    }

    let read = world.read_models();
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
        }]
    );

    let members = read.members(s.server, 0, 10).await.unwrap();
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
        world.count("SELECT uses FROM invites").await,
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
}

#[tokio::test]
async fn a_redelivered_log_changes_nothing() {
    let world = World::new().await;
    let s = world.scenario().await;
    world.edit(s.member, s.messages[1], "hi there!").await;
    world.delete(s.owner, s.messages[2]).await;
    drain_all(&world.projectors(4).await).await;
    let before = world.dump().await;
    let messages_before = world.count("SELECT COUNT(*) FROM messages").await;
    let channel_events_before = world.count("SELECT COUNT(*) FROM channel_events").await;
    assert_eq!(messages_before, 3);
    assert_eq!(channel_events_before, 5);

    // Redelivery: the checkpoints forget everything they had applied.
    let reset = sqlx::query("UPDATE projector_checkpoints SET position = 0")
        .execute(&world.read)
        .await
        .unwrap();
    assert_eq!(reset.rows_affected(), 2);
    let mut rx = world.bus.subscribe();
    let projectors = world.projectors(4).await;
    let head = world.head();
    for projector in &projectors {
        assert_eq!(checkpoint(projector), 0);
        assert_eq!(
            i64::try_from(drain(projector).await).unwrap(),
            head,
            "the whole log is delivered again"
        );
        assert_eq!(checkpoint(projector), head);
    }

    assert_eq!(
        world.count("SELECT COUNT(*) FROM messages").await,
        messages_before
    );
    assert_eq!(
        world.count("SELECT COUNT(*) FROM channel_events").await,
        channel_events_before
    );
    assert_eq!(world.dump().await, before);
    let messages = world
        .read_models()
        .messages(s.channel, None, None, 10, PageFrom::Start)
        .await
        .unwrap();
    assert_eq!(
        bodies(&messages),
        vec![Some("hello"), Some("hi there!"), None]
    );
    assert_eq!(received(&mut rx), vec![], "subscribers are not told twice");
}

#[tokio::test]
async fn a_restarted_projector_resumes_from_its_checkpoint() {
    let mut world = World::new().await;
    let s = world.scenario().await;
    drain_all(&world.projectors(2).await).await;
    let applied = world.head();
    let read = world.read_models();
    let old_messages = read
        .messages(s.channel, None, None, 10, PageFrom::Start)
        .await
        .unwrap();
    let old_events = read.channel_events_after(s.channel, 0, 100).await.unwrap();

    // Restart the read side: close the store, open the same file, build new projectors.
    world.read.close().await;
    world.read = open_read_store(&world.read_path).await;
    let projectors = world.projectors(500).await;
    for projector in &projectors {
        assert_eq!(checkpoint(projector), applied, "{}", projector.name());
        assert_eq!(projector.run_batch().await.unwrap(), 0, "nothing new yet");
    }

    let fourth = world.send(s.member, s.channel, "anyone here?").await;
    world.send(s.owner, s.channel, "yes").await;
    world.edit(s.member, fourth, "anyone around?").await;
    let head = world.head();
    assert_eq!(head - applied, 3);
    for projector in &projectors {
        assert_eq!(
            projector.run_batch().await.unwrap(),
            3,
            "exactly the new events"
        );
        assert_eq!(checkpoint(projector), head);
    }

    let read = world.read_models();
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
}

#[tokio::test]
async fn channel_changes_are_numbered_without_gaps_through_edits_and_deletes() {
    let world = World::new().await;
    let owner = world.register("olivia").await;
    let server = world
        .commands
        .create_server(&ctx(Some(owner)), "Guild")
        .await
        .unwrap()
        .value
        .id;
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
    drain_all(&world.projectors(3).await).await;

    let read = world.read_models();
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
    let (body_is_null, edits): (bool, String) =
        sqlx::query_as("SELECT body IS NULL, edits FROM messages WHERE id = ?")
            .bind(first.to_string())
            .fetch_one(&world.read)
            .await
            .unwrap();
    assert!(body_is_null, "the deleted body is gone from the database");
    assert_eq!(edits, "[]");
    assert!(
        !world.dump().await.iter().any(|row| row.contains("first")),
        "no trace of the deleted words"
    );

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
}

#[tokio::test]
async fn updates_are_published_once_per_message_event_and_only_after_commit() {
    let world = World::new().await;
    let s = world.scenario().await;
    world.edit(s.member, s.messages[1], "hi there!").await;
    world.delete(s.owner, s.messages[0]).await;
    let [catalog, timeline] = world.projectors(500).await;
    let mut rx = world.bus.subscribe();
    assert_eq!(received(&mut rx), vec![], "nothing before projecting");

    // A batch whose commit fails publishes nothing, though every event in it had been applied:
    // a deferred foreign key is only checked at COMMIT, so the failure comes at the very end.
    for statement in [
        "CREATE TABLE guard_parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE commit_guard (parent INTEGER \
         REFERENCES guard_parent (id) DEFERRABLE INITIALLY DEFERRED)",
        "CREATE TRIGGER fail_at_commit AFTER INSERT ON channel_events WHEN NEW.seq = 3 \
         BEGIN INSERT INTO commit_guard (parent) VALUES (42); END",
    ] {
        sqlx::query(statement).execute(&world.read).await.unwrap();
    }
    let failed = timeline
        .run_batch()
        .await
        .expect_err("the commit must fail");
    assert!(failed.to_string().contains("FOREIGN KEY"), "{failed}");
    assert_eq!(
        received(&mut rx),
        vec![],
        "no update from a rolled-back batch"
    );
    assert_eq!(checkpoint(&timeline), 0);
    assert_eq!(world.count("SELECT COUNT(*) FROM messages").await, 0);
    sqlx::query("DROP TRIGGER fail_at_commit")
        .execute(&world.read)
        .await
        .unwrap();

    // The retried batch commits, then publishes.
    timeline.run_batch().await.unwrap();
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
    // What was published is what a reader finds.
    let stored = world
        .read_models()
        .channel_events_after(s.channel, 0, 100)
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|e| (e.seq, e.kind)).collect::<Vec<_>>(),
        channel_updates
            .iter()
            .map(|u| (u.seq, u.kind))
            .collect::<Vec<_>>()
    );

    // The catalog announces the one membership change, and no channel update.
    drain(&catalog).await;
    assert_eq!(
        received(&mut rx),
        vec![Update::Membership {
            server_id: s.server,
            user_id: s.member,
            role: Some(Role::Member),
        }]
    );
    // Nothing new, nothing published.
    assert_eq!(timeline.run_batch().await.unwrap(), 0);
    assert_eq!(received(&mut rx), vec![]);
}
