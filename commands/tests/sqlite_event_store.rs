//! The command service against the real SQLite event store, in a temporary directory: what a
//! user (refusals, logins) or an operator (the log, its head, restarts) would notice.
//!
//! What every write store keeps (username races, contiguous aggregates, concurrent joins and
//! edits, group-commit outcomes, the hash chain) is tested on SQLite and PostgreSQL alike in
//! `write_store_contract.rs`; this file keeps what is SQLite's own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aether_commands::{ChatCommands, CommandContext, CommandError, ErrorCode, SqliteEventStore};
use aether_domain::{ChannelId, ChannelKind, ServerId, UserId};
use aether_schemas::{EventEnvelope, EventLog, LoggedEvent};
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

fn assert_contiguous_from_one(sequences: &[i64]) {
    let expected: Vec<i64> = (1..=i64::try_from(sequences.len()).unwrap()).collect();
    assert_eq!(sequences, expected.as_slice(), "sequences must be 1..n");
}

// --- accounts ------------------------------------------------------------------------------

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

// --- moderation ----------------------------------------------------------------------------

/// The review events of the log, by type.
async fn review_events(fixture: &Fixture) -> Vec<String> {
    fixture
        .all_events()
        .await
        .into_iter()
        .filter(|event| event.envelope.aggregate_type == "MessageReview")
        .map(|event| event.envelope.event_type)
        .collect()
}

#[tokio::test]
async fn a_redelivered_verdict_gives_one_outcome_at_the_servers_threshold() {
    use aether_domain::review::ModelVerdict;
    let fixture = Fixture::new().await;
    let (owner, server, channel) = fixture.server_with_channel("owner").await;
    fixture
        .commands
        .set_moderation_threshold(&ctx(Some(owner)), server, 0.7)
        .await
        .expect("the owner sets the threshold");
    let message = fixture
        .commands
        .send_message(&ctx(Some(owner)), channel, "you are all idiots")
        .await
        .expect("sent")
        .value
        .id;
    let verdict = |score: f64| ModelVerdict {
        score,
        model_version: "test-model".to_owned(),
    };
    // Below the server's threshold (above the default 0.5): nothing.
    let below = fixture
        .commands
        .flag_message(&ctx(None), message, verdict(0.6))
        .await
        .expect("scored");
    assert!(!below.value.flagged);
    assert!(review_events(&fixture).await.is_empty());
    // At it: flagged and hidden, once, however often the event comes back.
    for _ in 0..3 {
        let flagged = fixture
            .commands
            .flag_message(&ctx(None), message, verdict(0.9))
            .await
            .expect("scored");
        assert!(flagged.value.flagged && flagged.value.hidden);
    }
    assert_eq!(
        review_events(&fixture).await,
        vec!["MessageFlagged", "MessageHidden"]
    );
    // A verdict on a message that never existed is refused, not panicked on.
    assert_eq!(
        code_of(
            fixture
                .commands
                .flag_message(&ctx(None), aether_domain::MessageId::new(), verdict(0.9))
                .await
        ),
        ErrorCode::NotFound
    );
    // Thresholds outside (0, 1] never reach the server.
    assert_eq!(
        code_of(
            fixture
                .commands
                .set_moderation_threshold(&ctx(Some(owner)), server, 1.5)
                .await
        ),
        ErrorCode::BadUserInput
    );
}
