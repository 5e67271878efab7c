//! The command service against the real SQLite event store, in a temporary directory: what a
//! user (refusals, logins) or an operator (the log, restarts, concurrent writers) would notice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aether_commands::service::UserRecord;
use aether_commands::store::{DirectoryConflict, WriteStore};
use aether_commands::{ChatCommands, CommandContext, CommandError, ErrorCode, SqliteEventStore};
use aether_domain::server::Server;
use aether_domain::user::{User, UserEvent};
use aether_domain::{ChannelId, ChannelKind, DisplayName, ServerId, UserId, Username};
use aether_schemas::{EventEnvelope, EventLog, LoggedEvent};
use chrono::Utc;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::DomainEvent;
use serde_json::Value;
use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery";
/// Long enough for any wait in these tests; reaching it means the awaited thing never happened.
const PATIENCE: Duration = Duration::from_secs(10);

type Commands = ChatCommands<SqliteEventStore>;

struct Fixture {
    // Held so the directory outlives the store.
    _dir: TempDir,
    path: PathBuf,
    commands: Arc<Commands>,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("events.db");
        let commands = Arc::new(ChatCommands::new(open_store(&path).await));
        Self {
            _dir: dir,
            path,
            commands,
        }
    }

    fn store(&self) -> &SqliteEventStore {
        self.commands.store()
    }

    async fn register(&self, username: &str) -> UserId {
        self.commands
            .register(&ctx(None), username, PASSWORD, None)
            .await
            .unwrap_or_else(|e| panic!("registering {username}: {e}"))
            .value
            .id
    }

    /// A server owned by a fresh user, with one text channel.
    async fn server_with_channel(&self, owner_name: &str) -> (UserId, ServerId, ChannelId) {
        let owner = self.register(owner_name).await;
        let server = self
            .commands
            .create_server(&ctx(Some(owner)), "Guild")
            .await
            .expect("create server")
            .value
            .id;
        let channel = self
            .commands
            .create_channel(
                &ctx(Some(owner)),
                server,
                "general",
                ChannelKind::Text,
                false,
            )
            .await
            .expect("create channel")
            .value
            .id;
        (owner, server, channel)
    }

    async fn all_events(&self) -> Vec<LoggedEvent> {
        self.store()
            .read_after(0, 10_000)
            .await
            .expect("read the log")
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.store().pool())
            .await
            .expect(sql)
    }
}

async fn open_store(path: &Path) -> SqliteEventStore {
    SqliteEventStore::open(path)
        .await
        .expect("open event store")
}

fn ctx(actor: Option<UserId>) -> CommandContext {
    CommandContext::new(actor)
}

fn code_of<T: std::fmt::Debug>(result: Result<T, CommandError>) -> ErrorCode {
    result
        .expect_err("the command should have been refused")
        .code
}

/// `(sequence, event_type, payload)` of one aggregate's events, in sequence order.
async fn aggregate_events(
    store: &SqliteEventStore,
    aggregate_type: &str,
    id: &str,
) -> Vec<(i64, String, Value)> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT sequence, event_type, payload FROM events \
         WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(id)
    .fetch_all(store.pool())
    .await
    .expect("aggregate events");
    rows.into_iter()
        .map(|(sequence, event_type, payload)| {
            (
                sequence,
                event_type,
                serde_json::from_str(&payload).expect("stored payload is JSON"),
            )
        })
        .collect()
}

fn assert_contiguous_from_one(sequences: &[i64]) {
    let expected: Vec<i64> = (1..=i64::try_from(sequences.len()).unwrap()).collect();
    assert_eq!(sequences, expected.as_slice(), "sequences must be 1..n");
}

// --- accounts ------------------------------------------------------------------------------

#[tokio::test]
async fn a_username_can_be_registered_only_once_whatever_its_case() {
    let fx = Fixture::new().await;
    let alice = fx.register("alice").await;

    for attempt in ["alice", "Alice", "  ALICE "] {
        let refused = fx
            .commands
            .register(&ctx(None), attempt, "another password", None)
            .await;
        assert_eq!(
            code_of(refused),
            ErrorCode::Conflict,
            "registering {attempt:?}"
        );
    }

    assert_eq!(
        fx.count("SELECT COUNT(*) FROM directory WHERE kind = 'username'")
            .await,
        1
    );
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM events WHERE event_type = 'UserRegistered'")
            .await,
        1
    );
    // The one account is the first one, and its password was not replaced.
    let signed_in = fx
        .commands
        .authenticate("Alice", PASSWORD)
        .await
        .expect("the original password still signs in");
    assert_eq!(signed_in.id, alice);
    assert_eq!(signed_in.username, "alice");
    assert_eq!(
        code_of(fx.commands.authenticate("alice", "another password").await),
        ErrorCode::Unauthenticated
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_simultaneous_registrations_of_one_username_exactly_one_wins() {
    let fx = Fixture::new().await;
    let register = |password: &'static str| {
        let commands = fx.commands.clone();
        tokio::spawn(async move {
            commands
                .register(&ctx(None), "bob", password, None)
                .await
                .map(|committed| committed.value)
        })
    };
    let (first, second) = tokio::join!(register("first password"), register("second password"));
    let (first, second) = (first.expect("task"), second.expect("task"));

    let (winner, winner_password, loser_password, loser): (UserRecord, _, _, _) =
        match (first, second) {
            (Ok(user), Err(e)) => (user, "first password", "second password", e),
            (Err(e), Ok(user)) => (user, "second password", "first password", e),
            (first, second) => panic!("exactly one must win: {first:?} / {second:?}"),
        };
    assert_eq!(loser.code, ErrorCode::Conflict, "{loser}");

    assert_eq!(
        fx.count("SELECT COUNT(*) FROM directory WHERE kind = 'username'")
            .await,
        1
    );
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM events WHERE event_type = 'UserRegistered'")
            .await,
        1
    );
    let signed_in = fx
        .commands
        .authenticate("bob", winner_password)
        .await
        .expect("the winner signs in");
    assert_eq!(signed_in.id, winner.id);
    assert_eq!(
        code_of(fx.commands.authenticate("bob", loser_password).await),
        ErrorCode::Unauthenticated
    );
}

/// The race the directory's primary key exists for: a registration whose look-up found the name
/// free, appended after another account took it. The store itself must refuse it, and keep
/// nothing of the refused append.
#[tokio::test]
async fn the_store_refuses_a_second_account_for_a_username_even_past_the_look_up() {
    let fx = Fixture::new().await;
    let carol = fx.register("carol").await;
    let before = fx.all_events().await;

    let impostor = UserId::new();
    let event = UserEvent::UserRegistered {
        user_id: impostor,
        username: Username::parse("carol").unwrap(),
        display_name: DisplayName::parse("Carol").unwrap(),
        password_hash: "not a hash".to_owned(),
        registered_at: Utc::now(),
    };
    let serialized = SerializedEvent {
        aggregate_id: impostor.to_string(),
        sequence: 1,
        aggregate_type: "User".to_owned(),
        event_type: event.event_type(),
        event_version: event.event_version(),
        payload: serde_json::to_value(&event).unwrap(),
        metadata: serde_json::json!({}),
    };
    let refused = fx
        .store()
        .persist::<User>(&[serialized], None)
        .await
        .expect_err("a second 'carol' must be refused");
    match refused {
        PersistenceError::UnknownError(source) => assert!(
            source.downcast_ref::<DirectoryConflict>().is_some(),
            "not a directory conflict: {source}"
        ),
        other => panic!("expected a directory conflict, got {other:?}"),
    }

    assert_eq!(
        fx.all_events().await,
        before,
        "the refused append left no event"
    );
    let signed_in = fx.commands.authenticate("carol", PASSWORD).await.unwrap();
    assert_eq!(signed_in.id, carol);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_username_are_refused_alike() {
    let fx = Fixture::new().await;
    fx.register("dave").await;

    let wrong_password = fx
        .commands
        .authenticate("dave", "not the password")
        .await
        .expect_err("wrong password");
    let unknown_user = fx
        .commands
        .authenticate("nobody", PASSWORD)
        .await
        .expect_err("unknown user");
    let malformed_user = fx
        .commands
        .authenticate("no such user!", PASSWORD)
        .await
        .expect_err("malformed username");

    for refusal in [&wrong_password, &unknown_user, &malformed_user] {
        assert_eq!(refusal.code, ErrorCode::Unauthenticated);
        assert_eq!(refusal.message, wrong_password.message);
    }
    fx.commands
        .authenticate("dave", PASSWORD)
        .await
        .expect("the right password signs in");
}

#[tokio::test]
async fn the_public_log_never_carries_a_password_hash_yet_logins_survive_a_restart() {
    let fx = Fixture::new().await;
    let erin = fx.register("erin").await;

    let stored: String = sqlx::query_scalar(
        "SELECT payload FROM events WHERE event_type = 'UserRegistered' AND aggregate_id = ?",
    )
    .bind(erin.to_string())
    .fetch_one(fx.store().pool())
    .await
    .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    let hash = stored["UserRegistered"]["password_hash"]
        .as_str()
        .expect("the store keeps the hash")
        .to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let assert_redacted = |events: &[LoggedEvent]| {
        let registered = events
            .iter()
            .find(|e| e.envelope.event_type == "UserRegistered")
            .expect("the registration is in the log");
        assert_eq!(registered.envelope.aggregate_id, erin.to_string());
        assert_eq!(registered.envelope.data["username"], "erin");
        assert!(
            registered.envelope.data.get("password_hash").is_none(),
            "{}",
            registered.envelope.data
        );
        let public = serde_json::to_string(&registered.envelope).unwrap();
        assert!(!public.contains(&hash), "the hash leaked: {public}");
        assert!(!public.contains("password_hash"), "{public}");
    };
    assert_redacted(&fx.all_events().await);

    // Restart: close everything and open the same file again.
    let Fixture {
        _dir: dir,
        path,
        commands,
    } = fx;
    commands.store().close().await;
    drop(commands);
    let commands = ChatCommands::new(open_store(&path).await);

    let signed_in = commands
        .authenticate("erin", PASSWORD)
        .await
        .expect("the account survives a restart");
    assert_eq!(signed_in.id, erin);
    assert_eq!(
        code_of(commands.authenticate("erin", "not the password").await),
        ErrorCode::Unauthenticated
    );
    assert_redacted(&commands.store().read_after(0, 100).await.unwrap());
    drop(dir);
}

// --- the log -------------------------------------------------------------------------------

#[tokio::test]
async fn the_log_is_ordered_gapless_and_its_head_follows_each_commit() {
    let fx = Fixture::new().await;
    let mut head = fx.store().head();
    assert_eq!(*head.borrow_and_update(), 0, "an empty store's head");

    // Someone waiting on the head is woken by the first commit.
    let mut waiter = fx.store().head();
    let woken = tokio::spawn(async move {
        let at = *waiter.wait_for(|at| *at > 0).await.unwrap();
        at
    });
    let owner = fx
        .commands
        .register(&ctx(None), "frank", PASSWORD, None)
        .await
        .unwrap();
    let woken_at = tokio::time::timeout(PATIENCE, woken)
        .await
        .expect("the head moved on commit")
        .unwrap();
    assert_eq!(woken_at, owner.position.log);
    assert!(head.has_changed().unwrap());
    assert_eq!(*head.borrow_and_update(), owner.position.log);

    // A workload with refusals in between: refusals append nothing and leave no holes.
    let owner = owner.value.id;
    let server = fx
        .commands
        .create_server(&ctx(Some(owner)), "Guild")
        .await
        .unwrap()
        .value
        .id;
    let channel = fx
        .commands
        .create_channel(
            &ctx(Some(owner)),
            server,
            "general",
            ChannelKind::Text,
            false,
        )
        .await
        .unwrap()
        .value
        .id;
    let outsider = fx.register("grace").await;
    assert!(fx
        .commands
        .register(&ctx(None), "frank", PASSWORD, None)
        .await
        .is_err());
    let mut last = 0;
    for i in 0..5 {
        let sent = fx
            .commands
            .send_message(&ctx(Some(owner)), channel, &format!("message {i}"))
            .await
            .unwrap();
        assert!(
            sent.position.log > last,
            "each commit moves the log forward"
        );
        last = sent.position.log;
        assert!(head.has_changed().unwrap());
        assert_eq!(*head.borrow_and_update(), sent.position.log);
        assert!(fx
            .commands
            .send_message(&ctx(Some(outsider)), channel, "let me in")
            .await
            .is_err());
        assert!(
            !head.has_changed().unwrap(),
            "a refused command must not move the head"
        );
    }

    let events = fx.all_events().await;
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert_contiguous_from_one(&positions);
    assert_eq!(
        i64::try_from(events.len()).unwrap(),
        fx.count("SELECT COUNT(*) FROM events").await
    );
    assert_eq!(*positions.last().unwrap(), last);
    assert_eq!(*head.borrow(), last);

    // Reading page by page gives the same log, and nothing after the end.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = fx.store().read_after(after, 3).await.unwrap();
        let Some(end) = page.last() else { break };
        assert!(page.len() <= 3);
        after = end.position;
        paged.extend(page);
    }
    assert_eq!(paged, events);
    assert!(fx.store().read_after(last, 10).await.unwrap().is_empty());

    // A reopened store starts its head where the log ends.
    let reopened = open_store(&fx.path).await;
    assert_eq!(*reopened.head().borrow(), last);
}

#[tokio::test]
async fn a_stored_event_keeps_its_id() {
    let fx = Fixture::new().await;
    let (owner, _, channel) = fx.server_with_channel("heidi").await;
    fx.commands
        .send_message(&ctx(Some(owner)), channel, "hello")
        .await
        .unwrap();

    let first = fx.all_events().await;
    let second = fx.all_events().await;
    assert_eq!(first.len(), 4);
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.position, b.position);
        assert_eq!(a.envelope.id, b.envelope.id, "position {}", a.position);
        assert_eq!(
            a.envelope.id,
            EventEnvelope::event_id(
                &a.envelope.aggregate_type,
                &a.envelope.aggregate_id,
                a.envelope.sequence
            )
        );
    }
    let one = fx.store().read_after(2, 1).await.unwrap();
    assert_eq!(one[0].envelope.id, first[2].envelope.id);
    let distinct: BTreeSet<_> = first.iter().map(|e| e.envelope.id).collect();
    assert_eq!(distinct.len(), first.len(), "every event has its own id");

    // After a restart, still the same ids.
    let reopened = open_store(&fx.path).await;
    let third = reopened.read_after(0, 100).await.unwrap();
    assert_eq!(
        third.iter().map(|e| e.envelope.id).collect::<Vec<_>>(),
        first.iter().map(|e| e.envelope.id).collect::<Vec<_>>()
    );
}

// --- concurrent writers --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_joins_never_lose_a_member() {
    let fx = Fixture::new().await;
    let (owner, server, _) = fx.server_with_channel("ivan").await;
    let invite = fx
        .commands
        .create_invite(&ctx(Some(owner)), server, None, None)
        .await
        .unwrap()
        .value
        .code;
    let mut joiners = Vec::new();
    for i in 0..10 {
        joiners.push(fx.register(&format!("joiner{i}")).await);
    }

    let tasks: Vec<_> = joiners
        .iter()
        .map(|&user| {
            let commands = fx.commands.clone();
            let invite = invite.clone();
            tokio::spawn(async move {
                let result = commands.join_server(&ctx(Some(user)), &invite).await;
                (user, result)
            })
        })
        .collect();
    let mut joined = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let mut tokens = Vec::new();
    for task in tasks {
        let (user, result) = task.await.expect("task");
        match result {
            Ok(committed) => {
                assert_eq!(committed.value, server);
                joined.insert(user);
                tokens.push((user, committed.position.log));
            }
            Err(e) => {
                assert_eq!(e.code, ErrorCode::Conflict, "{e}");
                refused.insert(user);
            }
        }
    }
    assert!(!joined.is_empty(), "someone must get in");

    // Every acknowledged join is in the store, exactly once, and nothing else is.
    let events = aggregate_events(fx.store(), "Server", &server.to_string()).await;
    let sequences: Vec<i64> = events.iter().map(|(s, _, _)| *s).collect();
    assert_contiguous_from_one(&sequences);
    let members_joined: Vec<UserId> = events
        .iter()
        .filter(|(_, kind, _)| kind == "MemberJoined")
        .map(|(_, _, payload)| {
            serde_json::from_value(payload["MemberJoined"]["user_id"].clone()).unwrap()
        })
        .collect();
    assert_eq!(members_joined.len(), joined.len(), "no duplicate joins");
    assert_eq!(
        members_joined.iter().copied().collect::<BTreeSet<_>>(),
        joined
    );
    let state: Server = fx.commands.load(&server.to_string()).await.unwrap();
    assert_eq!(state.members.len(), 1 + joined.len());
    assert!(refused.iter().all(|user| !state.members.contains_key(user)));

    // Each acknowledged join's consistency token covers its own event.
    let log = fx.all_events().await;
    for (user, token) in tokens {
        let own = log
            .iter()
            .find(|e| {
                e.envelope.event_type == "MemberJoined"
                    && e.envelope.data["user_id"] == user.to_string()
            })
            .expect("the join is in the log");
        assert!(own.position <= token, "token {token} before its event");
    }

    // A conflict is safe to retry.
    for user in refused {
        fx.commands
            .join_server(&ctx(Some(user)), &invite)
            .await
            .expect("a retried join succeeds");
    }
    let state: Server = fx.commands.load(&server.to_string()).await.unwrap();
    assert_eq!(state.members.len(), 1 + joiners.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_edits_of_one_message_form_one_unbroken_history() {
    let fx = Fixture::new().await;
    let (owner, _, channel) = fx.server_with_channel("judy").await;
    let message = fx
        .commands
        .send_message(&ctx(Some(owner)), channel, "original")
        .await
        .unwrap()
        .value
        .id;

    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let commands = fx.commands.clone();
            tokio::spawn(async move {
                let body = format!("edit {i}");
                let result = commands
                    .edit_message(&ctx(Some(owner)), message, &body)
                    .await;
                (body, result)
            })
        })
        .collect();
    let mut accepted = BTreeSet::new();
    for task in tasks {
        let (body, result) = task.await.expect("task");
        match result {
            Ok(committed) => {
                assert!(committed.value.version >= 2);
                accepted.insert(body);
            }
            Err(e) => assert_eq!(e.code, ErrorCode::Conflict, "{e}"),
        }
    }
    assert!(!accepted.is_empty(), "some edit must get through");

    let events = aggregate_events(fx.store(), "Message", &message.to_string()).await;
    let sequences: Vec<i64> = events.iter().map(|(s, _, _)| *s).collect();
    assert_contiguous_from_one(&sequences);
    assert_eq!(events[0].1, "MessageSent");
    let edits: Vec<&Value> = events[1..]
        .iter()
        .map(|(_, kind, payload)| {
            assert_eq!(kind, "MessageEdited");
            &payload["MessageEdited"]
        })
        .collect();
    assert_eq!(
        edits
            .iter()
            .map(|e| e["body"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<_>>(),
        accepted,
        "exactly the acknowledged edits are stored"
    );
    assert_eq!(edits.len(), accepted.len());
    // No lost update: each edit replaced the body the one before it wrote.
    let mut current = "original".to_owned();
    for edit in &edits {
        assert_eq!(edit["previous_body"], current.as_str());
        current = edit["body"].as_str().unwrap().to_owned();
    }
    let record = fx
        .commands
        .edit_message(&ctx(Some(owner)), message, &current)
        .await
        .expect("an edit to the same body is accepted as a no-op");
    assert_eq!(record.value.body.as_deref(), Some(current.as_str()));
    assert_eq!(record.value.version, i64::try_from(events.len()).unwrap());
}

// --- messages ------------------------------------------------------------------------------

#[tokio::test]
async fn messages_are_refused_to_outsiders_unknown_channels_and_overlong_bodies() {
    let fx = Fixture::new().await;
    let (owner, _, channel) = fx.server_with_channel("kim").await;
    let outsider = fx.register("mallory").await;
    let before = fx.all_events().await;

    assert_eq!(
        code_of(
            fx.commands
                .send_message(&ctx(Some(outsider)), channel, "hello")
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code_of(
            fx.commands
                .send_message(&ctx(Some(owner)), ChannelId::new(), "hello")
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        code_of(
            fx.commands
                .send_message(&ctx(Some(owner)), channel, &"x".repeat(4_001))
                .await
        ),
        ErrorCode::BadUserInput
    );
    assert_eq!(
        code_of(fx.commands.send_message(&ctx(None), channel, "hello").await),
        ErrorCode::Unauthenticated
    );
    assert_eq!(fx.all_events().await, before, "refusals append nothing");

    // The limit itself is allowed.
    let sent = fx
        .commands
        .send_message(&ctx(Some(owner)), channel, &"x".repeat(4_000))
        .await
        .expect("a 4000-character body is accepted");
    assert_eq!(sent.value.body.map(|b| b.chars().count()), Some(4_000));
    assert_eq!(sent.value.author_id, owner);
    assert_eq!(sent.value.version, 1);
}

/// A user-shaped event of aggregate `id` at `sequence`, for appends straight to the store.
/// Commands arriving together are written together (group commit), yet each keeps its own
/// outcome: every command on its own aggregate lands whole, of many racing for the same
/// sequence of one aggregate exactly one lands and the others are refused with nothing left
/// behind, and the hash chain of every aggregate still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_appends_share_commits_but_keep_their_own_outcomes() {
    let fx = Fixture::new().await;
    let store = fx.store().clone();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..100 {
        let store = store.clone();
        tasks.spawn(async move {
            let id = format!("solo-{n}");
            let events = [
                aether_test_support::probe_event(&id, 1, "a"),
                aether_test_support::probe_event(&id, 2, "b"),
            ];
            (None, store.append(&events).await)
        });
    }
    for n in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            let note = format!("racer {n}");
            let events = [
                aether_test_support::probe_event("contested", 1, &note),
                aether_test_support::probe_event("contested", 2, &note),
            ];
            (Some(note), store.append(&events).await)
        });
    }
    let mut positions = BTreeSet::new();
    let mut losers = 0;
    while let Some(joined) = tasks.join_next().await {
        let (racer, outcome) = joined.expect("task");
        match (racer, outcome) {
            (_, Ok(position)) => {
                assert!(
                    positions.insert(position),
                    "position {position} given twice"
                );
            }
            (Some(_), Err(PersistenceError::OptimisticLockError)) => losers += 1,
            (racer, Err(error)) => panic!("{racer:?} failed: {error:?}"),
        }
    }
    let contested = aggregate_events(&store, "GroupCommitProbe", "contested").await;
    assert_eq!(
        contested.len(),
        2,
        "the winner's two events, nothing of the losers"
    );
    assert_eq!(
        contested[0].2["Probed"]["note"], contested[1].2["Probed"]["note"],
        "both contested events come from one command"
    );
    assert_eq!(losers, 19, "all but one racer refused");
    assert_eq!(positions.len(), 101);
    for n in 0..100 {
        let events = aggregate_events(&store, "GroupCommitProbe", &format!("solo-{n}")).await;
        assert_eq!(events.len(), 2, "solo-{n} landed whole");
    }
    let report = aether_commands::audit::verify_chain(&store, |_| {})
        .await
        .expect("verify");
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.events_checked, 202);
}
