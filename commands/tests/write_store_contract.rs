//! The contract every write-side event store keeps, run against each backend on its real
//! storage: the embedded SQLite store in a temporary directory and the PostgreSQL store in a
//! database of its own. One body per behaviour, driven through the command service over
//! [`EventStoreBackend`], instantiated per backend by [`contract!`]. Whatever the store:
//!
//! - of simultaneous registrations of one username, whatever their case, exactly one wins; the
//!   store itself refuses a taken name even past the service's look-up, and keeps nothing of it;
//! - every acknowledged command's token names a stored row; each aggregate's events are
//!   numbered 1..n in log order, the log has no duplicates, and refusals append nothing;
//! - simultaneous raw appends keep their own outcomes: of racers for one sequence exactly one
//!   lands, whole, and the others leave nothing behind;
//! - simultaneous joins lose no member, and the server's events stay contiguous;
//! - simultaneous edits of one message form one unbroken history;
//! - every aggregate's hash chain recomputes, and a rewritten, rehashed or removed row is found.
//!
//! Where the backends differ by design, the harness says how: SQLite's log positions are dense
//! (1..n) and PostgreSQL's only increasing; SQLite refuses a taken name as a directory conflict,
//! PostgreSQL as a lost race. What only one backend has (SQLite's head watch and restarts,
//! PostgreSQL's outbox and shared transactions) stays in `sqlite_event_store.rs` and
//! `postgres_event_store.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use aether_commands::audit::verify_chain;
use aether_commands::backend::EventStoreBackend;
use aether_commands::postgres::PgEventStore;
use aether_commands::service::{MessageRecord, UserRecord};
use aether_commands::store::{ChainCursor, DirectoryConflict, DirectoryKind, WriteStore, Written};
use aether_commands::{
    ChatCommands, CommandContext, CommandError, Committed, ErrorCode, SqliteEventStore,
};
use aether_domain::server::Server;
use aether_domain::user::{User, UserEvent};
use aether_domain::{ChannelId, ChannelKind, DisplayName, MessageId, ServerId, UserId, Username};
use aether_schemas::audit::{ChainBreak, ChainLink};
use aether_schemas::{EventEnvelope, EventLog, LoggedEvent, Metadata};
use aether_test_support::{probe_event, TestDatabase};
use chrono::Utc;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::DomainEvent;
use futures::FutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::time::error::Elapsed;

const PASSWORD: &str = "correct horse battery";
/// The most any one contract test may take; reaching it means something hung.
const LIMIT: Duration = Duration::from_secs(120);
/// How long cleaning up may wait for a test's leftover connections.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);
/// Attempts at a command refused only because a simultaneous one got there first.
const RETRIES: usize = 5;

type Commands = ChatCommands<EventStoreBackend>;

// --- the backends --------------------------------------------------------------------------

/// One backend's store behind the command service, with the few backend-specific things the
/// contract needs: reading the whole log, and rewriting or removing a row as an attacker with
/// database access could.
struct Harness {
    commands: Arc<Commands>,
    // Held so the directory outlives the SQLite store.
    _dir: Option<TempDir>,
    db: Option<TestDatabase>,
}

impl Harness {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteEventStore::open(&dir.path().join("events.db"))
            .await
            .expect("open the SQLite event store");
        Self {
            commands: Arc::new(ChatCommands::new(EventStoreBackend::Sqlite(store))),
            _dir: Some(dir),
            db: None,
        }
    }

    async fn postgres() -> Self {
        let db = TestDatabase::create()
            .await
            .expect("a test database (is PostgreSQL running? see scripts/test.sh)");
        let store = PgEventStore::from_pool(db.pool().await.expect("connect"));
        store.migrate().await.expect("migrate");
        Self {
            commands: Arc::new(ChatCommands::new(EventStoreBackend::Postgres(store))),
            _dir: None,
            db: Some(db),
        }
    }

    /// Closes the store and drops its database, whatever the test's outcome (so that a failing
    /// test leaves nothing behind), then reports that outcome.
    async fn finish(self, outcome: std::thread::Result<Result<(), Elapsed>>) {
        let close = async {
            match self.store() {
                EventStoreBackend::Sqlite(store) => store.close().await,
                EventStoreBackend::Postgres(store) => store.pool().close().await,
            }
        };
        // A test cut short may leave tasks holding connections: do not wait for them forever.
        let _ = tokio::time::timeout(CLOSE_PATIENCE, close).await;
        if let Some(db) = self.db {
            db.drop_database().await.expect("drop the test database");
        }
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the test did not finish within {LIMIT:?}"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    fn store(&self) -> &EventStoreBackend {
        self.commands.store()
    }

    /// Every stored event in log order, as projectors see it: SQLite's own log
    /// (`EventLog::read_after`), PostgreSQL's `events` table by position.
    async fn log(&self) -> Vec<LoggedEvent> {
        match self.store() {
            EventStoreBackend::Sqlite(store) => {
                let mut log = Vec::new();
                loop {
                    let after = log.last().map_or(0, |e: &LoggedEvent| e.position);
                    let page = store.read_after(after, 500).await.expect("read the log");
                    if page.is_empty() {
                        return log;
                    }
                    log.extend(page);
                }
            }
            EventStoreBackend::Postgres(store) => {
                type Row = (i64, String, String, i64, String, String, String, String);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT position, aggregate_type, aggregate_id, sequence, event_type, \
                     event_version, payload::text, metadata::text FROM events ORDER BY position",
                )
                .fetch_all(store.pool())
                .await
                .expect("read the events table");
                rows.into_iter()
                    .map(
                        |(position, kind, id, sequence, event_type, version, payload, metadata)| {
                            let metadata =
                                Metadata::from_value(&serde_json::from_str(&metadata).unwrap());
                            LoggedEvent {
                                position,
                                routing_key: metadata.routing_key.clone(),
                                envelope: EventEnvelope::from_stored(
                                    &kind,
                                    &id,
                                    u64::try_from(sequence).unwrap(),
                                    &event_type,
                                    &version,
                                    serde_json::from_str(&payload).unwrap(),
                                    &metadata,
                                ),
                                traceparent: metadata.traceparent.clone(),
                            }
                        },
                    )
                    .collect()
            }
        }
    }

    /// Overwrites one stored row's payload text and hash.
    async fn rewrite(&self, link: &ChainLink, payload: &str, hash: &str) {
        let changed = match self.store() {
            EventStoreBackend::Sqlite(store) => sqlx::query(
                "UPDATE events SET payload = ?, hash = ? \
                 WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = ?",
            )
            .bind(payload)
            .bind(hash)
            .bind(&link.aggregate_type)
            .bind(&link.aggregate_id)
            .bind(link.sequence)
            .execute(store.pool())
            .await
            .map(|done| done.rows_affected()),
            EventStoreBackend::Postgres(store) => sqlx::query(
                "UPDATE events SET payload = $1::text::json, hash = $2 \
                 WHERE aggregate_type = $3 AND aggregate_id = $4 AND sequence = $5",
            )
            .bind(payload)
            .bind(hash)
            .bind(&link.aggregate_type)
            .bind(&link.aggregate_id)
            .bind(link.sequence)
            .execute(store.pool())
            .await
            .map(|done| done.rows_affected()),
        };
        assert_eq!(changed.expect("rewrite a row"), 1);
    }

    /// Deletes one stored row.
    async fn remove(&self, link: &ChainLink) {
        let removed = match self.store() {
            EventStoreBackend::Sqlite(store) => sqlx::query(
                "DELETE FROM events WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = ?",
            )
            .bind(&link.aggregate_type)
            .bind(&link.aggregate_id)
            .bind(link.sequence)
            .execute(store.pool())
            .await
            .map(|done| done.rows_affected()),
            EventStoreBackend::Postgres(store) => sqlx::query(
                "DELETE FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
            )
            .bind(&link.aggregate_type)
            .bind(&link.aggregate_id)
            .bind(link.sequence)
            .execute(store.pool())
            .await
            .map(|done| done.rows_affected()),
        };
        assert_eq!(removed.expect("remove a row"), 1);
    }

    /// How this backend refuses an append that would give a taken username a second account:
    /// SQLite says so (a directory conflict, not retried), PostgreSQL reports a lost race (any
    /// unique violation, as postgres-es does), which the service retries and then refuses.
    fn is_taken_name_refusal(&self, error: &PersistenceError) -> bool {
        match (self.store(), error) {
            (EventStoreBackend::Sqlite(_), PersistenceError::UnknownError(source)) => {
                source.downcast_ref::<DirectoryConflict>().is_some()
            }
            (EventStoreBackend::Postgres(_), PersistenceError::OptimisticLockError) => true,
            _ => false,
        }
    }

    /// Whether log positions are dense (1..n). SQLite assigns them inside its single writer's
    /// transaction, so a refused append gives its positions back; PostgreSQL's `bigserial` does
    /// not, so a lost race leaves a hole (positions there are only unique and increasing).
    fn has_dense_positions(&self) -> bool {
        matches!(self.store(), EventStoreBackend::Sqlite(_))
    }

    /// The whole hash chain, walked through the store's audit API in small pages.
    async fn chain(&self) -> Vec<ChainLink> {
        let mut links: Vec<ChainLink> = Vec::new();
        loop {
            let after = links.last().map(ChainCursor::from);
            let page = self.store().chain_page(after, 7).await.expect("chain page");
            assert!(page.len() <= 7);
            if page.is_empty() {
                return links;
            }
            links.extend(page);
        }
    }

    async fn register(&self, username: &str) -> UserId {
        self.commands
            .register(&ctx(None), username, PASSWORD, None)
            .await
            .unwrap_or_else(|e| panic!("registering {username}: {e}"))
            .value
            .id
    }
}

/// Runs one contract test, at most for [`LIMIT`], catching its panic so that its store can be
/// cleaned up before the panic is passed on.
async fn bounded(test: impl Future<Output = ()>) -> std::thread::Result<Result<(), Elapsed>> {
    AssertUnwindSafe(tokio::time::timeout(LIMIT, test))
        .catch_unwind()
        .await
}

/// Runs each named contract test against every backend, each in a fresh store and bounded by
/// [`LIMIT`]: `sqlite::<name>` and `postgres::<name>`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let harness = super::Harness::sqlite().await;
                    let outcome = super::bounded(super::$name(&harness)).await;
                    harness.finish(outcome).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let harness = super::Harness::postgres().await;
                    let outcome = super::bounded(super::$name(&harness)).await;
                    harness.finish(outcome).await;
                }
            )*
        }
    };
}

contract!(
    of_simultaneous_registrations_of_one_username_in_any_case_exactly_one_wins,
    the_store_refuses_a_taken_username_even_past_the_look_up,
    the_log_is_contiguous_per_aggregate_and_names_every_acknowledged_command,
    simultaneous_raw_appends_keep_their_own_outcomes,
    simultaneous_joins_never_lose_a_member,
    simultaneous_edits_of_one_message_form_one_unbroken_history,
    every_hash_chain_verifies_and_tampering_is_found,
);

// --- helpers -------------------------------------------------------------------------------

fn ctx(actor: Option<UserId>) -> CommandContext {
    CommandContext::new(actor)
}

fn code_of<T: std::fmt::Debug>(result: Result<T, CommandError>) -> ErrorCode {
    result
        .expect_err("the command should have been refused")
        .code
}

fn assert_contiguous_from_one(what: &str, sequences: &[i64]) {
    let expected: Vec<i64> = (1..=i64::try_from(sequences.len()).unwrap()).collect();
    assert_eq!(
        sequences,
        expected.as_slice(),
        "{what}: sequences must be 1..n"
    );
}

/// Each aggregate's events, in log order.
fn by_aggregate(log: &[LoggedEvent]) -> BTreeMap<(String, String), Vec<&LoggedEvent>> {
    let mut aggregates: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for event in log {
        let key = (
            event.envelope.aggregate_type.clone(),
            event.envelope.aggregate_id.clone(),
        );
        aggregates.entry(key).or_default().push(event);
    }
    aggregates
}

fn events_of<'a>(log: &'a [LoggedEvent], aggregate_type: &str, id: &str) -> Vec<&'a LoggedEvent> {
    log.iter()
        .filter(|e| e.envelope.aggregate_type == aggregate_type && e.envelope.aggregate_id == id)
        .collect()
}

fn sequences(events: &[&LoggedEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| i64::try_from(e.envelope.sequence).unwrap())
        .collect()
}

/// The log is well formed: positions unique and increasing (dense where the backend promises
/// it), each aggregate numbered 1..n in log order, and the audit walk sees the same events.
async fn assert_log_is_well_formed(h: &Harness, log: &[LoggedEvent]) {
    let positions: Vec<i64> = log.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "log positions must be unique and increasing: {positions:?}"
    );
    if h.has_dense_positions() {
        assert_contiguous_from_one("log positions", &positions);
    }
    for ((kind, id), events) in by_aggregate(log) {
        assert_contiguous_from_one(&format!("{kind} {id}"), &sequences(&events));
    }
    let walked: Vec<(String, String, i64)> = h
        .chain()
        .await
        .into_iter()
        .map(|link| (link.aggregate_type, link.aggregate_id, link.sequence))
        .collect();
    let logged: BTreeSet<(String, String, i64)> = log
        .iter()
        .map(|e| {
            (
                e.envelope.aggregate_type.clone(),
                e.envelope.aggregate_id.clone(),
                i64::try_from(e.envelope.sequence).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        walked.len(),
        log.len(),
        "the audit walk sees every event once"
    );
    assert_eq!(walked.into_iter().collect::<BTreeSet<_>>(), logged);
}

/// An acknowledged command's token names a stored row: the event it names is at the log
/// position it carries.
fn assert_token_names_a_stored_row(log: &[LoggedEvent], written: &Written) {
    let row = log
        .iter()
        .find(|e| e.position == written.log)
        .unwrap_or_else(|| panic!("no event at position {} ({written:?})", written.log));
    assert_eq!(
        (
            row.envelope.aggregate_type.as_str(),
            row.envelope.aggregate_id.as_str(),
            i64::try_from(row.envelope.sequence).unwrap(),
        ),
        (
            written.event.aggregate_type.as_str(),
            written.event.aggregate_id.as_str(),
            written.event.sequence,
        ),
        "the token {} names the row at its position",
        written.event.token()
    );
}

/// Runs `attempt` until it is not refused for a lost race, at most [`RETRIES`] times.
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, CommandError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CommandError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if e.code == ErrorCode::Conflict && tries < RETRIES => continue,
            result => return result,
        }
    }
}

/// A server owned by a fresh user, with one text channel and an invite.
async fn server_with_channel(
    h: &Harness,
    owner_name: &str,
) -> (UserId, ServerId, ChannelId, String) {
    let owner = h.register(owner_name).await;
    let server = h
        .commands
        .create_server(&ctx(Some(owner)), "Guild")
        .await
        .expect("create server")
        .value
        .id;
    let channel = h
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
    let invite = h
        .commands
        .create_invite(&ctx(Some(owner)), server, None, None)
        .await
        .expect("create invite")
        .value
        .code;
    (owner, server, channel, invite)
}

// --- accounts ------------------------------------------------------------------------------

async fn of_simultaneous_registrations_of_one_username_in_any_case_exactly_one_wins(h: &Harness) {
    let spellings = [
        "grace", "Grace", "GRACE", "gRACE", " grace ", "GrAcE", "graCE", "gracE",
    ];
    let tasks: Vec<_> = spellings
        .into_iter()
        .enumerate()
        .map(|(n, spelling)| {
            let commands = h.commands.clone();
            let password = format!("password number {n}");
            tokio::spawn(async move {
                let result = commands
                    .register(&ctx(None), spelling, &password, None)
                    .await
                    .map(|committed| committed.value);
                (password, result)
            })
        })
        .collect();
    let mut winners: Vec<(String, UserRecord)> = Vec::new();
    let mut losers = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            (password, Ok(user)) => winners.push((password, user)),
            (password, Err(e)) => {
                assert_eq!(e.code, ErrorCode::Conflict, "{e}");
                losers.push(password);
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one must win: {winners:?}");
    assert_eq!(losers.len(), spellings.len() - 1);
    let (winner_password, winner) = winners.remove(0);
    assert_eq!(winner.username, "grace");

    // One account, one event, one directory entry: the winner's.
    let log = h.log().await;
    assert_eq!(log.len(), 1, "only the winner's registration is stored");
    assert_eq!(log[0].envelope.event_type, "UserRegistered");
    assert_eq!(log[0].envelope.aggregate_id, winner.id.to_string());
    assert_eq!(
        h.store()
            .lookup(DirectoryKind::Username, "grace")
            .await
            .unwrap(),
        Some(winner.id.to_string())
    );

    // The winner signs in, in any case; no loser's password does.
    let signed_in = h
        .commands
        .authenticate("GRACE", &winner_password)
        .await
        .expect("the winner signs in");
    assert_eq!(signed_in.id, winner.id);
    for password in &losers {
        assert_eq!(
            code_of(h.commands.authenticate("grace", password).await),
            ErrorCode::Unauthenticated
        );
    }

    // Later attempts are refused too, and append nothing. (Failed sign-ins are recorded.)
    let log = h.log().await;
    for attempt in ["grace", "Grace", "  GRACE "] {
        let refused = h
            .commands
            .register(&ctx(None), attempt, "another password", None)
            .await;
        assert_eq!(
            code_of(refused),
            ErrorCode::Conflict,
            "registering {attempt:?}"
        );
    }
    assert_eq!(h.log().await, log, "refused registrations append nothing");
    assert_eq!(
        code_of(h.commands.authenticate("grace", "another password").await),
        ErrorCode::Unauthenticated
    );
}

/// The race the directory's unique key exists for: a registration whose look-up found the name
/// free, appended after another account took it. The store itself must refuse it and keep
/// nothing of the refused append.
async fn the_store_refuses_a_taken_username_even_past_the_look_up(h: &Harness) {
    let carol = h.register("carol").await;
    let before = h.log().await;

    let impostor = UserId::new();
    let event = UserEvent::UserRegistered {
        user_id: impostor,
        username: Username::parse("Carol").unwrap(),
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
    let refused = h
        .store()
        .persist::<User>(std::slice::from_ref(&serialized), None)
        .await
        .expect_err("a second 'carol' must be refused");
    assert!(h.is_taken_name_refusal(&refused), "{refused:?}");
    // The store's own append (the service's path for most commands) refuses it as well.
    let refused = h
        .store()
        .append(&[serialized])
        .await
        .expect_err("a second 'carol' must be refused");
    assert!(h.is_taken_name_refusal(&refused), "{refused:?}");

    assert_eq!(h.log().await, before, "the refused appends left no event");
    assert_eq!(
        h.store()
            .lookup(DirectoryKind::Username, "carol")
            .await
            .unwrap(),
        Some(carol.to_string())
    );
    let signed_in = h.commands.authenticate("carol", PASSWORD).await.unwrap();
    assert_eq!(signed_in.id, carol);
    let report = verify_chain(h.store(), |_| {}).await.expect("verify");
    assert!(report.is_intact(), "{:?}", report.breaks);
}

// --- the log -------------------------------------------------------------------------------

async fn the_log_is_contiguous_per_aggregate_and_names_every_acknowledged_command(h: &Harness) {
    let empty = h.log().await;
    assert!(empty.is_empty(), "a new store's log is empty");
    let mut acknowledged: Vec<Written> = Vec::new();
    let (owner, server, channel, invite) = server_with_channel(h, "olga").await;

    // Members register one after the other, then join at once.
    let mut members = Vec::new();
    for n in 0..4 {
        let registered = h
            .commands
            .register(&ctx(None), &format!("member{n}"), PASSWORD, None)
            .await
            .unwrap();
        acknowledged.push(registered.position);
        members.push(registered.value.id);
    }
    let joins: Vec<_> = members
        .iter()
        .map(|&member| {
            let commands = h.commands.clone();
            let invite = invite.clone();
            tokio::spawn(async move {
                let (commands, invite) = (&*commands, invite.as_str());
                retrying(|| async move { commands.join_server(&ctx(Some(member)), invite).await })
                    .await
            })
        })
        .collect();
    for join in joins {
        acknowledged.push(join.await.expect("task").expect("join").position);
    }

    // Refusals in between append nothing.
    let outsider = h.register("outsider").await;
    let before = h.log().await;
    assert_eq!(
        code_of(
            h.commands
                .register(&ctx(None), "OLGA", PASSWORD, None)
                .await
        ),
        ErrorCode::Conflict
    );
    assert_eq!(
        code_of(
            h.commands
                .send_message(&ctx(Some(outsider)), channel, "let me in")
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code_of(
            h.commands
                .send_message(&ctx(Some(owner)), ChannelId::new(), "nowhere")
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(h.log().await, before, "refusals append nothing");

    // Everyone writes at once, then edits one message at once.
    let authors: Vec<UserId> = std::iter::once(owner)
        .chain(members.iter().copied())
        .collect();
    let sends: Vec<_> = authors
        .iter()
        .flat_map(|&author| (0..3).map(move |n| (author, n)))
        .map(|(author, n)| {
            let commands = h.commands.clone();
            tokio::spawn(async move {
                commands
                    .send_message(&ctx(Some(author)), channel, &format!("message {n}"))
                    .await
            })
        })
        .collect();
    let mut sent: Vec<Committed<MessageRecord>> = Vec::new();
    for send in sends {
        sent.push(send.await.expect("task").expect("send"));
    }
    let mut message_positions = BTreeSet::new();
    for committed in &sent {
        assert_eq!(committed.position.event.sequence, 1);
        assert!(
            message_positions.insert(committed.position.log),
            "two commands told the same position"
        );
    }
    let first: MessageId = sent[0].value.id;
    let author = sent[0].value.author_id;
    let edits: Vec<_> = (0..4)
        .map(|n| {
            let commands = h.commands.clone();
            tokio::spawn(async move {
                let commands = &*commands;
                let body = format!("edit {n}");
                let body = body.as_str();
                retrying(
                    || async move { commands.edit_message(&ctx(Some(author)), first, body).await },
                )
                .await
            })
        })
        .collect();
    for edit in edits {
        acknowledged.push(edit.await.expect("task").expect("edit").position);
    }
    acknowledged.extend(sent.into_iter().map(|committed| committed.position));

    let log = h.log().await;
    assert_eq!(
        log.len(),
        1 + 3 + 4 + 4 + 1 + 15 + 4,
        "exactly the acknowledged commands' events"
    );
    assert_log_is_well_formed(h, &log).await;
    for written in &acknowledged {
        assert_token_names_a_stored_row(&log, written);
    }
    let server_events = events_of(&log, "Server", &server.to_string());
    assert_eq!(sequences(&server_events), (1..=7).collect::<Vec<i64>>());
    let first_events = events_of(&log, "Message", &first.to_string());
    assert_eq!(sequences(&first_events), (1..=5).collect::<Vec<i64>>());
    // The newest position of each aggregate is what the store reports for it.
    for ((kind, id), events) in by_aggregate(&log) {
        let newest = events.last().unwrap();
        let position = h.store().position_of(&kind, &id).await.unwrap();
        assert_eq!(
            (position.log, position.sequence),
            (
                newest.position,
                i64::try_from(newest.envelope.sequence).unwrap()
            ),
            "{kind} {id}"
        );
    }
    let none = h.store().position_of("Server", "no-such-server").await;
    assert_eq!(none.unwrap(), Default::default());
}

/// Commands arriving together may be written together (group commit), yet each keeps its own
/// outcome: every append on its own aggregate lands whole, of many racing for the same
/// sequences of one aggregate exactly one lands and the others are refused with nothing left
/// behind.
async fn simultaneous_raw_appends_keep_their_own_outcomes(h: &Harness) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..100 {
        let store = h.store().clone();
        tasks.spawn(async move {
            let id = format!("solo-{n}");
            let events = [probe_event(&id, 1, "a"), probe_event(&id, 2, "b")];
            (None, store.append(&events).await)
        });
    }
    for n in 0..20 {
        let store = h.store().clone();
        tasks.spawn(async move {
            let note = format!("racer {n}");
            let events = [
                probe_event("contested", 1, &note),
                probe_event("contested", 2, &note),
            ];
            (Some(note), store.append(&events).await)
        });
    }
    let mut positions = BTreeSet::new();
    let mut winner = None;
    let mut losers = 0;
    while let Some(joined) = tasks.join_next().await {
        let (racer, outcome) = joined.expect("task");
        match (racer, outcome) {
            (racer, Ok(position)) => {
                assert!(
                    positions.insert(position),
                    "position {position} given twice"
                );
                if racer.is_some() {
                    assert!(winner.is_none(), "two racers won");
                    winner = racer.map(|note| (note, position));
                }
            }
            (Some(_), Err(PersistenceError::OptimisticLockError)) => losers += 1,
            (racer, Err(error)) => panic!("{racer:?} failed: {error:?}"),
        }
    }
    assert_eq!(losers, 19, "all but one racer refused");
    assert_eq!(positions.len(), 101);
    let (winner_note, winner_position) = winner.expect("one racer won");

    let log = h.log().await;
    assert_eq!(
        log.len(),
        202,
        "every landed command whole, nothing of the losers"
    );
    assert_log_is_well_formed(h, &log).await;
    let contested = events_of(&log, "GroupCommitProbe", "contested");
    assert_eq!(contested.len(), 2, "the winner's two events");
    for event in &contested {
        assert_eq!(event.envelope.data["note"], winner_note.as_str());
    }
    assert_eq!(contested[1].position, winner_position);
    // Each append is told the position of its own last event.
    let last_events: BTreeSet<i64> = log
        .iter()
        .filter(|e| e.envelope.sequence == 2)
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, last_events);
    for n in 0..100 {
        let events = events_of(&log, "GroupCommitProbe", &format!("solo-{n}"));
        assert_eq!(sequences(&events), [1, 2], "solo-{n} landed whole");
    }
    let report = verify_chain(h.store(), |_| {}).await.expect("verify");
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.events_checked, 202);
    assert_eq!(report.aggregates_checked, 101);
}

// --- concurrent writers --------------------------------------------------------------------

async fn simultaneous_joins_never_lose_a_member(h: &Harness) {
    let (_, server, _, invite) = server_with_channel(h, "ivan").await;
    let mut joiners = Vec::new();
    for n in 0..10 {
        joiners.push(h.register(&format!("joiner{n}")).await);
    }

    let tasks: Vec<_> = joiners
        .iter()
        .map(|&user| {
            let commands = h.commands.clone();
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
                tokens.push((user, committed.position));
            }
            Err(e) => {
                // Only a lost race (after the service's own retries) may refuse a join.
                assert_eq!(e.code, ErrorCode::Conflict, "{e}");
                refused.insert(user);
            }
        }
    }
    assert!(!joined.is_empty(), "someone must get in");

    // Every acknowledged join is stored exactly once, and no refused one is.
    let log = h.log().await;
    let events = events_of(&log, "Server", &server.to_string());
    assert_contiguous_from_one("the server", &sequences(&events));
    let members_joined: Vec<UserId> = events
        .iter()
        .filter(|e| e.envelope.event_type == "MemberJoined")
        .map(|e| serde_json::from_value(e.envelope.data["user_id"].clone()).unwrap())
        .collect();
    assert_eq!(members_joined.len(), joined.len(), "no duplicate joins");
    assert_eq!(
        members_joined.iter().copied().collect::<BTreeSet<_>>(),
        joined
    );
    let state: Server = h.commands.load(&server.to_string()).await.unwrap();
    assert_eq!(state.members.len(), 1 + joined.len());
    assert!(refused.iter().all(|user| !state.members.contains_key(user)));

    // Each acknowledged join's token names a stored row at or after its own event.
    for (user, token) in tokens {
        assert_token_names_a_stored_row(&log, &token);
        let own = events
            .iter()
            .find(|e| {
                e.envelope.event_type == "MemberJoined"
                    && e.envelope.data["user_id"] == user.to_string()
            })
            .expect("the join is stored");
        assert!(
            own.position <= token.log,
            "token {token:?} before its event"
        );
    }

    // A refused join is safe to retry; afterwards everyone is in.
    let (commands, code) = (&*h.commands, invite.as_str());
    for user in refused {
        retrying(|| async move { commands.join_server(&ctx(Some(user)), code).await })
            .await
            .expect("a retried join succeeds");
    }
    let state: Server = h.commands.load(&server.to_string()).await.unwrap();
    assert_eq!(
        state.members.keys().copied().collect::<BTreeSet<_>>(),
        joiners
            .iter()
            .copied()
            .chain(state.owner)
            .collect::<BTreeSet<_>>()
    );
    let log = h.log().await;
    let events = events_of(&log, "Server", &server.to_string());
    // Created, channel, invite, then one join per joiner.
    assert_eq!(sequences(&events), (1..=13).collect::<Vec<i64>>());
    assert_log_is_well_formed(h, &log).await;
}

async fn simultaneous_edits_of_one_message_form_one_unbroken_history(h: &Harness) {
    let (owner, _, channel, _) = server_with_channel(h, "judy").await;
    let message = h
        .commands
        .send_message(&ctx(Some(owner)), channel, "original")
        .await
        .unwrap()
        .value
        .id;

    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let commands = h.commands.clone();
            tokio::spawn(async move {
                let body = format!("edit {n}");
                let result = commands
                    .edit_message(&ctx(Some(owner)), message, &body)
                    .await;
                (body, result)
            })
        })
        .collect();
    let mut accepted = BTreeMap::new();
    for task in tasks {
        let (body, result) = task.await.expect("task");
        match result {
            Ok(committed) => {
                assert!(committed.value.version >= 2);
                assert_eq!(committed.value.body.as_deref(), Some(body.as_str()));
                accepted.insert(body, committed.value.version);
            }
            Err(e) => assert_eq!(e.code, ErrorCode::Conflict, "{e}"),
        }
    }
    assert!(!accepted.is_empty(), "some edit must get through");

    let log = h.log().await;
    let events = events_of(&log, "Message", &message.to_string());
    assert_contiguous_from_one("the message", &sequences(&events));
    assert_eq!(events[0].envelope.event_type, "MessageSent");
    let edits: Vec<&Value> = events[1..]
        .iter()
        .map(|e| {
            assert_eq!(e.envelope.event_type, "MessageEdited");
            &e.envelope.data
        })
        .collect();
    assert_eq!(
        edits.len(),
        accepted.len(),
        "exactly the acknowledged edits"
    );
    // Versions 2..=n, each acknowledged edit at the version it was told.
    for (edit, version) in edits.iter().zip(2_i64..) {
        let body = edit["body"].as_str().unwrap();
        assert_eq!(accepted.get(body), Some(&version), "{body}");
    }
    // No lost update: each edit replaced the body the one before it wrote.
    let mut current = "original".to_owned();
    for edit in &edits {
        assert_eq!(edit["previous_body"], current.as_str());
        current = edit["body"].as_str().unwrap().to_owned();
    }
    let record = h
        .commands
        .edit_message(&ctx(Some(owner)), message, &current)
        .await
        .expect("an edit to the same body is accepted as a no-op");
    assert_eq!(record.value.body.as_deref(), Some(current.as_str()));
    assert_eq!(record.value.version, i64::try_from(events.len()).unwrap());
    assert_eq!(h.log().await, log, "a no-op edit appends nothing");
    let report = verify_chain(h.store(), |_| {}).await.expect("verify");
    assert!(report.is_intact(), "{:?}", report.breaks);
}

// --- the hash chain ------------------------------------------------------------------------

/// `sha256(prev_hash \n aggregate_type \n aggregate_id \n sequence \n event_type \n
/// event_version \n payload \n metadata)` in lower-case hex, computed here from the documented
/// format rather than with the library's own function.
fn recomputed_hash(prev_hash: &str, link: &ChainLink) -> String {
    let sequence = link.sequence.to_string();
    let text = [
        prev_hash,
        &link.aggregate_type,
        &link.aggregate_id,
        &sequence,
        &link.event_type,
        &link.event_version,
        &link.payload,
        &link.metadata,
    ]
    .join("\n");
    hex::encode(Sha256::digest(text.as_bytes()))
}

async fn every_hash_chain_verifies_and_tampering_is_found(h: &Harness) {
    // A workload with several aggregate types, some of it concurrent.
    let (owner, server, channel, invite) = server_with_channel(h, "trent").await;
    let mut members = Vec::new();
    for n in 0..3 {
        members.push(h.register(&format!("peggy{n}")).await);
    }
    let joins: Vec<_> = members
        .iter()
        .map(|&member| {
            let commands = h.commands.clone();
            let invite = invite.clone();
            tokio::spawn(async move {
                let (commands, invite) = (&*commands, invite.as_str());
                retrying(|| async move { commands.join_server(&ctx(Some(member)), invite).await })
                    .await
            })
        })
        .collect();
    for join in joins {
        join.await.expect("task").expect("join");
    }
    let sends: Vec<_> = members
        .iter()
        .map(|&member| {
            let commands = h.commands.clone();
            tokio::spawn(async move {
                commands
                    .send_message(&ctx(Some(member)), channel, "hello")
                    .await
            })
        })
        .collect();
    for send in sends {
        send.await.expect("task").expect("send");
    }
    let message = h
        .commands
        .send_message(&ctx(Some(owner)), channel, "first words")
        .await
        .unwrap()
        .value
        .id;
    for body in ["second words", "third words"] {
        h.commands
            .edit_message(&ctx(Some(owner)), message, body)
            .await
            .unwrap();
    }
    let probes = [
        probe_event("probe", 1, "one"),
        probe_event("probe", 2, "two"),
        probe_event("probe", 3, "three"),
    ];
    h.store().append(&probes).await.unwrap();

    // Every link recomputes: the first of each aggregate from "", each next from the one
    // before; and the store's own auditor agrees.
    let chain = h.chain().await;
    let log = h.log().await;
    assert_eq!(chain.len(), log.len());
    let mut previous: Option<&ChainLink> = None;
    for link in &chain {
        let same_aggregate = previous.is_some_and(|p| {
            (&p.aggregate_type, &p.aggregate_id) == (&link.aggregate_type, &link.aggregate_id)
        });
        let prev_hash = match previous {
            Some(p) if same_aggregate => {
                assert_eq!(link.sequence, p.sequence + 1, "{link:?}");
                p.hash.as_str()
            }
            _ => {
                assert_eq!(link.sequence, 1, "{link:?}");
                ""
            }
        };
        assert_eq!(link.prev_hash, prev_hash, "{link:?}");
        assert_eq!(link.hash, recomputed_hash(prev_hash, link), "{link:?}");
        assert_eq!(link.hash.len(), 64);
        previous = Some(link);
    }
    let aggregates = by_aggregate(&log).len();
    let report = verify_chain(h.store(), |_| {}).await.expect("verify");
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.events_checked, u64::try_from(log.len()).unwrap());
    assert_eq!(
        report.aggregates_checked,
        u64::try_from(aggregates).unwrap()
    );

    let find = |kind: &str, id: &str, sequence: i64| {
        chain
            .iter()
            .find(|l| l.aggregate_type == kind && l.aggregate_id == id && l.sequence == sequence)
            .cloned()
            .unwrap_or_else(|| panic!("{kind} {id} {sequence} is stored"))
    };

    // 1. A rewritten body, hash left alone: that event no longer matches its hash.
    let edit = find("Message", &message.to_string(), 2);
    let forged = edit.payload.replace("second words", "forged words");
    assert_ne!(forged, edit.payload);
    h.rewrite(&edit, &forged, &edit.hash).await;
    // 2. A rewritten event whose hash was recomputed too: the next event no longer links to it.
    let channel_created = find("Server", &server.to_string(), 2);
    let renamed = channel_created.payload.replace("general", "hijacked");
    assert_ne!(renamed, channel_created.payload);
    let rehashed = ChainLink {
        payload: renamed.clone(),
        ..channel_created.clone()
    };
    let rehash = recomputed_hash(&channel_created.prev_hash, &rehashed);
    h.rewrite(&channel_created, &renamed, &rehash).await;
    // 3. A removed event: a gap.
    h.remove(&find("GroupCommitProbe", "probe", 2)).await;

    let report = verify_chain(h.store(), |_| {}).await.expect("verify");
    let found: BTreeSet<String> = report.breaks.iter().map(ToString::to_string).collect();
    let expected: BTreeSet<String> = [
        ChainBreak::Tampered {
            aggregate_type: "Message".into(),
            aggregate_id: message.to_string(),
            sequence: 2,
        },
        ChainBreak::BrokenLink {
            aggregate_type: "Server".into(),
            aggregate_id: server.to_string(),
            sequence: 3,
        },
        ChainBreak::Gap {
            aggregate_type: "GroupCommitProbe".into(),
            aggregate_id: "probe".into(),
            sequence: 3,
            previous: 1,
        },
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(found, expected, "{:?}", report.breaks);
    assert_eq!(report.breaks.len(), 3, "one break per tampered aggregate");
    // All but the removed event, less those after a break in its aggregate, which the auditor
    // does not check: the message's third event and the server's three joins.
    assert_eq!(
        report.events_checked,
        u64::try_from(log.len() - 1 - 1 - 3).unwrap()
    );
    // Untouched aggregates still verify: every break is in one of the three.
    assert_eq!(
        report.aggregates_checked,
        u64::try_from(aggregates).unwrap()
    );
}
