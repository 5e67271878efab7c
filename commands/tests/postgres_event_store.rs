//! The PostgreSQL event store against a real server: the same commands as the embedded store,
//! the outbox filled in the same transaction, and a hash chain an auditor can recompute.
//!
//! What every write store keeps is tested on SQLite and PostgreSQL alike in
//! `write_store_contract.rs`; this file keeps what is PostgreSQL's own (the outbox, shared
//! transactions, several processes over one database, failing fast when it is down).

use aether_commands::audit::verify_chain;
use aether_commands::postgres::PgEventStore;
use aether_commands::{ChatCommands, CommandContext, ErrorCode};
use aether_domain::ChannelKind;
use aether_schemas::audit::ChainBreak;
use aether_test_support::TestDatabase;

async fn store(db: &TestDatabase) -> anyhow::Result<PgEventStore> {
    let store = PgEventStore::from_pool(db.pool().await?);
    store.migrate().await?;
    Ok(store)
}

#[tokio::test]
async fn commands_append_events_with_an_outbox_row_each_and_a_verifiable_chain(
) -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let store = store(&db).await?;
    let commands = ChatCommands::new(store.clone());
    let alice = commands
        .register(&CommandContext::new(None), "alice", "correct horse", None)
        .await?
        .value;
    let ctx = CommandContext::new(Some(alice.id));
    let server = commands.create_server(&ctx, "Rustaceans").await?.value;
    let channel = commands
        .create_channel(&ctx, server.id, "general", ChannelKind::Text, false)
        .await?
        .value;
    let message = commands
        .send_message(&ctx, channel.id, "hello")
        .await?
        .value;
    commands
        .edit_message(&ctx, message.id, "hello, world")
        .await?;

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await?;
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(events, 5);
    assert_eq!(outbox, events, "every event has its outbox row");

    let report = verify_chain(&store, |_| {}).await?;
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.events_checked, 5);
    assert_eq!(report.aggregates_checked, 3);

    // The same account cannot be registered twice, whatever the case.
    let again = commands
        .register(&CommandContext::new(None), "ALICE", "correct horse", None)
        .await
        .expect_err("duplicate");
    assert_eq!(again.code, ErrorCode::Conflict);
    assert!(commands
        .authenticate("alice", "correct horse")
        .await
        .is_ok());

    // Rewriting history is found.
    sqlx::query(
        "UPDATE events SET payload = replace(payload::text, 'hello, world', 'goodbye')::json \
         WHERE event_type = 'MessageEdited'",
    )
    .execute(store.pool())
    .await?;
    let report = verify_chain(&store, |_| {}).await?;
    assert!(
        matches!(
            report.breaks.as_slice(),
            [ChainBreak::Tampered { sequence: 2, .. }]
        ),
        "{:?}",
        report.breaks
    );

    store.pool().close().await;
    db.drop_database().await?;
    Ok(())
}

#[tokio::test]
async fn a_command_fails_fast_when_postgres_is_unreachable() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let result = PgEventStore::connect(
        "postgres://postgres:postgres@127.0.0.1:1/none",
        2,
        std::time::Duration::from_secs(2),
    )
    .await;
    assert!(result.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    Ok(())
}

#[tokio::test]
async fn a_member_who_left_a_moment_ago_is_refused_even_by_a_service_that_cached_the_server(
) -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let store = store(&db).await?;
    // Two API processes over one store: `here` caches the server while `elsewhere` changes it.
    let here = ChatCommands::new(store.clone());
    let elsewhere = ChatCommands::new(store.clone());
    let alice = here
        .register(&CommandContext::new(None), "alice", "correct horse", None)
        .await?
        .value;
    let bob = here
        .register(&CommandContext::new(None), "bob", "battery staple", None)
        .await?
        .value;
    let as_alice = CommandContext::new(Some(alice.id));
    let as_bob = CommandContext::new(Some(bob.id));
    let server = here.create_server(&as_alice, "Rustaceans").await?.value;
    let channel = here
        .create_channel(&as_alice, server.id, "general", ChannelKind::Text, false)
        .await?
        .value;
    let invite = here
        .create_invite(&as_alice, server.id, None, None)
        .await?
        .value;

    // Bob is not a member yet: refused. Then he joins through the other process.
    let refused = here
        .send_message(&as_bob, channel.id, "let me in")
        .await
        .expect_err("not a member yet");
    assert_eq!(refused.code, ErrorCode::Forbidden);
    elsewhere.join_server(&as_bob, &invite.code).await?;
    let sent = here.send_message(&as_bob, channel.id, "hi all").await?;
    assert_eq!(sent.value.version, 1);
    assert_eq!(sent.value.body.as_deref(), Some("hi all"));
    assert_eq!(sent.value.server_id, Some(server.id));
    let stored: (i64, i64) =
        sqlx::query_as("SELECT position, sequence FROM events WHERE aggregate_id = $1")
            .bind(sent.value.id.to_string())
            .fetch_one(store.pool())
            .await?;
    assert_eq!(
        (sent.position.log, sent.position.event.sequence),
        stored,
        "the token names the stored row"
    );

    // Bob leaves through the other process; this one refuses him on the very next command.
    elsewhere.leave_server(&as_bob, server.id).await?;
    let refused = here
        .send_message(&as_bob, channel.id, "still here?")
        .await
        .expect_err("left the server");
    assert_eq!(refused.code, ErrorCode::Forbidden);
    let refused = here
        .edit_message(&as_bob, sent.value.id, "edited after leaving")
        .await
        .expect_err("left the server");
    assert_eq!(refused.code, ErrorCode::NotFound, "outsiders learn nothing");

    // And takes him back as soon as he rejoins.
    elsewhere.join_server(&as_bob, &invite.code).await?;
    let edited = here
        .edit_message(&as_bob, sent.value.id, "hi all, again")
        .await?;
    assert_eq!(edited.value.version, 2);
    assert_eq!(edited.value.body.as_deref(), Some("hi all, again"));
    assert_eq!(edited.value.created_at, sent.value.created_at);
    assert!(edited.value.edited_at.is_some());

    let report = verify_chain(&store, |_| {}).await?;
    assert!(report.is_intact(), "{:?}", report.breaks);
    store.pool().close().await;
    db.drop_database().await?;
    Ok(())
}

/// Commands arriving together share transactions (group commit), yet each keeps its own
/// outcome: every command on its own aggregate lands whole with its outbox rows, of 20 racing
/// for the same sequences exactly one lands and the others are refused with nothing left
/// behind, and the hash chain still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_appends_share_transactions_but_keep_their_own_outcomes() -> anyhow::Result<()>
{
    use aether_commands::store::WriteStore;
    use cqrs_es::persist::PersistenceError;

    let db = TestDatabase::create().await?;
    let store = store(&db).await?;
    let pool = store.pool().clone();
    let solos = |range: std::ops::Range<usize>, tasks: &mut tokio::task::JoinSet<_>| {
        for n in range {
            let store = store.clone();
            tasks.spawn(async move {
                let id = format!("solo-{n}");
                (
                    false,
                    store
                        .append(&[
                            aether_test_support::probe_event(&id, 1, "a"),
                            aether_test_support::probe_event(&id, 2, "b"),
                        ])
                        .await,
                )
            });
        }
    };
    // 100 commands at once, none in conflict: they share transactions.
    let mut tasks = tokio::task::JoinSet::new();
    solos(0..100, &mut tasks);
    let mut positions = std::collections::BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let position = joined?.1?;
        assert!(positions.insert(position), "{position} twice");
    }
    let transactions: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT xmin::text) FROM events")
        .fetch_one(&pool)
        .await?;
    assert!(
        transactions < 100,
        "{transactions} transactions for 100 commands"
    );

    // 20 more, among 20 racing for one aggregate's sequences.
    solos(100..120, &mut tasks);
    for n in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            let note = format!("racer {n}");
            let events = [
                aether_test_support::probe_event("contested", 1, &note),
                aether_test_support::probe_event("contested", 2, &note),
            ];
            (true, store.append(&events).await)
        });
    }
    let mut losers = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            (_, Ok(position)) => assert!(positions.insert(position), "{position} twice"),
            (true, Err(PersistenceError::OptimisticLockError)) => losers += 1,
            (racer, Err(error)) => panic!("racer {racer}: {error:?}"),
        }
    }
    assert_eq!(losers, 19, "all but one racer refused");
    assert_eq!(positions.len(), 121);
    // Each command is told the position of its own last event.
    let last_events: std::collections::BTreeSet<i64> =
        sqlx::query_scalar("SELECT position FROM events WHERE sequence = 2")
            .fetch_all(&pool)
            .await?
            .into_iter()
            .collect();
    assert_eq!(positions, last_events);
    let notes: Vec<String> = sqlx::query_scalar(
        "SELECT payload->'Probed'->>'note' FROM events WHERE aggregate_id = 'contested' \
         ORDER BY sequence",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(notes.len(), 2, "the winner's two events, nothing else");
    assert_eq!(notes[0], notes[1], "both from one command");
    let (events, outbox): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM outbox)")
            .fetch_one(&pool)
            .await?;
    assert_eq!((events, outbox), (242, 242));
    let report = verify_chain(&store, |_| {}).await?;
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.events_checked, 242);
    db.drop_database().await?;
    Ok(())
}
