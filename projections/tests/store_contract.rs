//! The contract every read-model store keeps (the `ReadStore` port), run against each adapter
//! on its real server: PostgreSQL for catalog, audit, search, receipts and the timeline,
//! MongoDB-compatible (SecantusDB) for the timeline, SQLite (the embedded mode's store) for
//! catalog, receipts and timeline. Whatever the store:
//!
//! - `prepare` is idempotent and a new version starts with an empty checkpoint;
//! - a batch moves the checkpoint in the same transaction as its rows;
//! - a redelivered batch is ignored whole and changes nothing;
//! - a writer holding a stale checkpoint is fenced and changes nothing;
//! - a value that is not an envelope is blamed on its index, and nothing of its batch is kept;
//! - a parked event holds back later events of its aggregate, and `retry` applies both in order;
//! - `drop_version` leaves nothing behind.

use std::sync::Arc;

use aether_domain::conversation::{conversation_id, ConversationEvent};
use aether_domain::message::MessageEvent;
use aether_domain::receipts::{read_marker_id, ReadMarkerEvent};
use aether_domain::review::ReviewEvent;
use aether_domain::server::ServerEvent;
use aether_domain::user::UserEvent;
use aether_domain::{
    ChannelId, ChannelKind, ChannelName, DisplayName, MessageBody, MessageId, ModerationReason,
    ServerId, ServerName, UserId, Username,
};
use aether_projections::stream::mongo::{MongoStore, MongoTimelineProjection};
use aether_projections::stream::postgres::{
    AuditProjection, CatalogProjection, PgProjection, PgStore, ReceiptsProjection, SearchProjection,
};
use aether_projections::stream::sqlite::SqliteStore;
use aether_projections::stream::{
    Checkpoint, Payload, ReadStore, StoreError, StreamEvent, TopicPartition,
};
use aether_schemas::{EventEnvelope, Metadata};
use aether_test_support::TestDatabase;
use chrono::Utc;
use serde::Serialize;

/// Builds stream events the way the relay publishes them, on one partition per aggregate type.
#[derive(Default)]
struct Log {
    events: Vec<StreamEvent>,
    offsets: std::collections::HashMap<&'static str, i64>,
}

impl Log {
    fn push<E: Serialize + cqrs_es::DomainEvent>(
        &mut self,
        aggregate_type: &'static str,
        aggregate_id: &str,
        sequence: u64,
        event: &E,
    ) -> StreamEvent {
        let at = Utc::now();
        let metadata = Metadata {
            actor: None,
            correlation_id: "contract".to_owned(),
            causation_id: "contract".to_owned(),
            occurred_at: at,
            routing_key: aggregate_id.to_owned(),
            traceparent: None,
        };
        let envelope = EventEnvelope::from_stored(
            aggregate_type,
            aggregate_id,
            sequence,
            &event.event_type(),
            &event.event_version(),
            serde_json::to_value(event).unwrap_or_default(),
            &metadata,
        );
        let offset = self.offsets.entry(aggregate_type).or_insert(0);
        let stream_event = StreamEvent {
            partition: Arc::new(TopicPartition {
                topic: format!("contract.{aggregate_type}"),
                partition: 0,
            }),
            offset: *offset,
            payload: Payload::Event(Box::new(envelope)),
            traceparent: None,
        };
        *offset += 1;
        self.events.push(stream_event.clone());
        stream_event
    }
}

fn parse<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("test value does not parse: {error:?}"),
    }
}

/// A user, a server with a channel, three messages, an edit and a deletion, a direct
/// conversation with a message, an edit and a read marker; then the message events used for
/// parking.
struct Scenario {
    history: Vec<StreamEvent>,
    /// A channel's message that the model stage flagged and hid.
    hidden: MessageId,
    /// The direct message's words, which every store that keeps message bodies holds.
    direct_words: &'static str,
    /// The other person in the conversation: in no event but the conversation's and their
    /// read marker's.
    friend: UserId,
    /// Reacted to a channel's message with 🎉, and never took it back.
    reacting: UserId,
    parked_first: StreamEvent,
    parked_second: StreamEvent,
}

fn scenario() -> Scenario {
    let mut log = Log::default();
    let user = UserId::new();
    let server = ServerId::new();
    let channel = ChannelId::new();
    let at = Utc::now();
    log.push(
        "User",
        &user.to_string(),
        1,
        &UserEvent::UserRegistered {
            user_id: user,
            username: parse(Username::parse("contract")),
            display_name: parse(DisplayName::parse("Contract")),
            password_hash: String::new(),
            registered_at: at,
        },
    );
    log.push(
        "Server",
        &server.to_string(),
        1,
        &ServerEvent::ServerCreated {
            server_id: server,
            name: parse(ServerName::parse("contract")),
            owner_id: user,
            created_at: at,
        },
    );
    log.push(
        "Server",
        &server.to_string(),
        2,
        &ServerEvent::ChannelCreated {
            channel_id: channel,
            name: parse(ChannelName::parse("general")),
            kind: ChannelKind::Text,
            private: false,
        },
    );
    log.push(
        "Server",
        &server.to_string(),
        3,
        &ServerEvent::UserBanned {
            user_id: UserId::new(),
            banned_by: user,
            reason: Some(parse(ModerationReason::parse("spam"))),
            banned_at: at,
        },
    );
    log.push(
        "Server",
        &server.to_string(),
        4,
        &ServerEvent::ChannelTopicChanged {
            channel_id: channel,
            topic: Some(parse(aether_domain::ChannelTopic::parse("contract topic"))),
        },
    );
    // A second server gets a channel, moves it under a category, and is deleted.
    let doomed = ServerId::new();
    let gone = ChannelId::new();
    for (sequence, event) in [
        ServerEvent::ServerCreated {
            server_id: doomed,
            name: parse(ServerName::parse("doomed")),
            owner_id: user,
            created_at: at,
        },
        ServerEvent::ChannelCreated {
            channel_id: gone,
            name: parse(ChannelName::parse("gone")),
            kind: ChannelKind::Text,
            private: false,
        },
        ServerEvent::ChannelMoved {
            channel_id: gone,
            category: Some(parse(aether_domain::ChannelCategory::parse("Lost"))),
            order: vec![gone],
        },
        ServerEvent::ServerDeleted {
            deleted_by: user,
            deleted_at: at,
            member_ids: vec![user],
        },
    ]
    .into_iter()
    .enumerate()
    {
        log.push("Server", &doomed.to_string(), sequence as u64 + 1, &event);
    }
    // The server's moderation settings, which members read back from the catalog.
    log.push(
        "Server",
        &server.to_string(),
        5,
        &ServerEvent::ContentPolicyChanged {
            policy: aether_domain::ContentPolicy::Mask,
            changed_by: user,
        },
    );
    log.push(
        "Server",
        &server.to_string(),
        6,
        &ServerEvent::ModerationThresholdChanged {
            threshold: parse(aether_domain::ModerationThreshold::parse(0.75)),
            changed_by: user,
        },
    );
    let mut messages = Vec::new();
    for n in 0..3 {
        let message = MessageId::new();
        messages.push(message);
        log.push(
            "Message",
            &message.to_string(),
            1,
            &MessageEvent::MessageSent {
                message_id: message,
                channel_id: channel,
                server_id: server,
                author_id: user,
                body: parse(MessageBody::parse(&format!("hello {n}, <@{user}>"))),
                sent_at: at,
                reply_to_id: None,
                thread_root_id: None,
                also_in_channel: false,
                mentions: None,
                forwarded_from: None,
            },
        );
    }
    log.push(
        "Message",
        &messages[0].to_string(),
        2,
        &MessageEvent::MessageEdited {
            message_id: messages[0],
            channel_id: channel,
            body: parse(MessageBody::parse("hello again")),
            previous_body: parse(MessageBody::parse(&format!("hello 0, <@{user}>"))),
            edited_at: at,
            mentions: None,
        },
    );
    log.push(
        "Message",
        &messages[1].to_string(),
        2,
        &MessageEvent::MessageDeleted {
            message_id: messages[1],
            channel_id: channel,
            deleted_by: user,
            deleted_at: at,
        },
    );
    // A reply in the first message's thread, quoting the third.
    let reply = MessageId::new();
    log.push(
        "Message",
        &reply.to_string(),
        1,
        &MessageEvent::MessageSent {
            message_id: reply,
            channel_id: channel,
            server_id: server,
            author_id: user,
            body: parse(MessageBody::parse(&format!(
                "in the thread, @everyone <@{user}>"
            ))),
            sent_at: at,
            reply_to_id: Some(messages[2]),
            thread_root_id: Some(messages[0]),
            also_in_channel: false,
            // Decided on the write side: a named member and `@everyone`.
            mentions: Some(aether_domain::message::Mentions {
                users: vec![user],
                everyone: true,
                ..Default::default()
            }),
            forwarded_from: None,
        },
    );
    // The second message is pinned.
    log.push(
        "ChannelPins",
        &aether_domain::pins::pins_id(channel).to_string(),
        1,
        &aether_domain::pins::PinsEvent::MessagePinned {
            channel_id: channel,
            message_id: messages[2],
            pinned_by: user,
            pinned_at: at,
        },
    );
    // The model stage flags and hides the first message; a member reports the third, and a
    // moderator dismisses the report.
    let review = |n: usize| aether_domain::review::review_id(messages[n]).to_string();
    let about = |n: usize| (messages[n], channel, server, user);
    for (n, sequence, event) in [
        (0, 1, {
            let (message_id, channel_id, server_id, author_id) = about(0);
            ReviewEvent::MessageFlagged {
                message_id,
                channel_id,
                server_id,
                author_id,
                score: 0.93,
                model_version: "contract-model-v1".to_owned(),
                reason: "model score 0.930 reached this server's threshold 0.750".to_owned(),
                threshold: parse(aether_domain::ModerationThreshold::parse(0.75)),
                flagged_at: at,
            }
        }),
        (0, 2, {
            let (message_id, channel_id, server_id, author_id) = about(0);
            ReviewEvent::MessageHidden {
                message_id,
                channel_id,
                server_id,
                author_id,
                hidden_by: None,
                reason: "model score 0.930 reached this server's threshold 0.750".to_owned(),
                hidden_at: at,
            }
        }),
        (2, 1, {
            let (message_id, channel_id, server_id, author_id) = about(2);
            ReviewEvent::MessageReported {
                message_id,
                channel_id,
                server_id,
                author_id,
                reported_by: UserId::new(),
                reason: parse(ModerationReason::parse("reported in the contract")),
                reported_at: at,
            }
        }),
        (2, 2, {
            let (message_id, channel_id, server_id, author_id) = about(2);
            ReviewEvent::FlagDismissed {
                message_id,
                channel_id,
                server_id,
                author_id,
                dismissed_by: user,
                reason: parse(ModerationReason::parse("dismissed in the contract")),
                dismissed_at: at,
            }
        }),
    ] {
        log.push("MessageReview", &review(n), sequence, &event);
    }
    // Two people react with one emoji, and one of them also with another, then takes it back.
    let reacting = UserId::new();
    for (sequence, (who, emoji, added)) in [
        (user, "🎉", true),
        (reacting, "🎉", true),
        (user, ":ship_it:", true),
        (user, ":ship_it:", false),
    ]
    .into_iter()
    .enumerate()
    {
        let (message_id, channel_id, user_id) = (messages[2], channel, who);
        let emoji = parse(aether_domain::Emoji::parse(emoji));
        let event = if added {
            MessageEvent::ReactionAdded {
                message_id,
                channel_id,
                user_id,
                emoji,
                reacted_at: at,
            }
        } else {
            MessageEvent::ReactionRemoved {
                message_id,
                channel_id,
                user_id,
                emoji,
                removed_at: at,
            }
        };
        log.push(
            "Message",
            &messages[2].to_string(),
            2 + sequence as u64,
            &event,
        );
    }
    log.push(
        "ReadMarker",
        &read_marker_id(user, channel).to_string(),
        1,
        &ReadMarkerEvent::ChannelMarkedRead {
            user_id: user,
            channel_id: channel,
            server_id: server,
            message_id: messages[1],
            read_at: at,
        },
    );
    let friend = UserId::new();
    let people: std::collections::BTreeSet<UserId> = [user, friend].into_iter().collect();
    let conversation = conversation_id(&people);
    log.push(
        "Conversation",
        &conversation.to_string(),
        1,
        &ConversationEvent::ConversationOpened {
            conversation_id: conversation,
            opened_by: user,
            participant_ids: people.into_iter().collect(),
            opened_at: at,
        },
    );
    let direct = MessageId::new();
    let direct_words = "just between us, edited";
    log.push(
        "Message",
        &direct.to_string(),
        1,
        &MessageEvent::DirectMessageSent {
            message_id: direct,
            conversation_id: conversation,
            author_id: user,
            body: parse(MessageBody::parse(&format!("just between us, <@{friend}>"))),
            sent_at: at,
            reply_to_id: None,
            thread_root_id: None,
            also_in_channel: false,
            mentions: None,
            forwarded_from: None,
        },
    );
    log.push(
        "Message",
        &direct.to_string(),
        2,
        &MessageEvent::MessageEdited {
            message_id: direct,
            channel_id: conversation,
            body: parse(MessageBody::parse(direct_words)),
            previous_body: parse(MessageBody::parse(&format!("just between us, <@{friend}>"))),
            edited_at: at,
            mentions: None,
        },
    );
    log.push(
        "ReadMarker",
        &read_marker_id(friend, conversation).to_string(),
        1,
        &ReadMarkerEvent::ConversationMarkedRead {
            user_id: friend,
            conversation_id: conversation,
            message_id: direct,
            read_at: at,
        },
    );
    let history = log.events.clone();
    let late = MessageId::new();
    let parked_first = log.push(
        "Message",
        &late.to_string(),
        1,
        &MessageEvent::MessageSent {
            message_id: late,
            channel_id: channel,
            server_id: server,
            author_id: user,
            body: parse(MessageBody::parse("parked")),
            sent_at: at,
            reply_to_id: None,
            thread_root_id: None,
            also_in_channel: false,
            mentions: None,
            forwarded_from: None,
        },
    );
    let parked_second = log.push(
        "Message",
        &late.to_string(),
        2,
        &MessageEvent::MessageEdited {
            message_id: late,
            channel_id: channel,
            body: parse(MessageBody::parse("parked, edited")),
            previous_body: parse(MessageBody::parse("parked")),
            edited_at: at,
            mentions: None,
        },
    );
    Scenario {
        history,
        hidden: messages[0],
        direct_words,
        friend,
        reacting,
        parked_first,
        parked_second,
    }
}

/// The contract, against one store.
async fn keeps_the_contract(store: Arc<dyn ReadStore>) -> anyhow::Result<()> {
    let name = store.describe();
    store.prepare().await?;
    store.prepare().await?;
    assert_eq!(store.checkpoint().await?, Checkpoint::default(), "{name}");
    let empty = store.dump().await?;

    let Scenario {
        history,
        hidden,
        direct_words,
        friend,
        reacting,
        parked_first,
        parked_second,
    } = scenario();
    let start = Checkpoint::default();
    let end = start.after(&history);
    let applied = store.apply(&start, &history, &end).await?;
    assert_eq!(applied.applied, history.len(), "{name}");
    assert_eq!(
        store.checkpoint().await?,
        end,
        "{name}: checkpoint moved with the rows"
    );
    let once = store.dump().await?;
    assert_ne!(once, empty, "{name}: the batch left rows");
    let text = once.to_string();
    if name.contains("timeline") {
        // A conversation's message is kept like a channel's, with no server.
        assert!(text.contains(direct_words), "{name}: {text}");
        // The reactions that stand are on their message; the one taken back is only in the
        // channel's changes.
        assert!(text.contains("🎉"), "{name}: {text}");
        assert!(text.contains(&reacting.to_string()), "{name}: {text}");
        assert!(text.contains("in the thread"), "{name}: {text}");
        // Moderation: the flag with its model version, the hidden message's channel change,
        // the report and its dismissal, each kept with its message.
        assert!(text.contains("contract-model-v1"), "{name}: {text}");
        assert!(text.contains("MessageHidden"), "{name}: {text}");
        assert!(text.contains("reported in the contract"), "{name}: {text}");
        assert!(text.contains("DISMISSED"), "{name}: {text}");
    } else if name.contains("search") {
        // Hidden words are marked, so that no member's search finds them.
        let rows = once["search_messages"]
            .as_array()
            .expect("search_messages rows");
        let hidden_rows: Vec<&str> = rows
            .iter()
            .filter(|row| row["hidden"] == serde_json::Value::Bool(true))
            .filter_map(|row| row["id"].as_str())
            .collect();
        assert_eq!(hidden_rows, [hidden.to_string()], "{name}: {text}");
    }
    if !name.contains("audit") && !name.contains("timeline") {
        // Reactions are the timeline's alone (the audit keeps every event).
        assert!(!text.contains(&reacting.to_string()), "{name}: {text}");
    }
    if name.contains("catalog") || name.contains("receipts") {
        // The conversation's participants; the friend's read pointer in it.
        assert!(text.contains(&friend.to_string()), "{name}: {text}");
    }
    if name.contains("receipts") {
        // The thread reply's `@everyone` is one mention row for every member.
        assert!(
            text.contains(&format!("\"{}\"", aether_projections::receipts::EVERYONE)),
            "{name}: {text}"
        );
    }
    if name.contains("catalog") {
        // A channel's topic; the servers' numbered news, a pin in a channel included; a
        // deleted server's rows gone, its news kept.
        for kept in [
            "contract topic",
            "CHANNEL_TOPIC_CHANGED",
            "MESSAGE_PINNED",
            "CHANNEL_MOVED",
            "SERVER_DELETED",
        ] {
            assert!(text.contains(kept), "{name}: no {kept} in {text}");
        }
        assert!(!text.contains("doomed"), "{name}: {text}");
    }
    if name.contains("catalog") {
        // The server's moderation settings.
        assert!(text.contains("MASK"), "{name}: {text}");
        assert!(text.contains("0.75"), "{name}: {text}");
    }
    if name.contains("search") {
        // Direct conversations are private: never indexed.
        assert!(!text.contains(direct_words), "{name}: {text}");
    }

    let again = store.apply(&end, &history, &end).await?;
    assert_eq!((again.applied, again.ignored), (0, history.len()), "{name}");
    assert_eq!(
        store.dump().await?,
        once,
        "{name}: a redelivery changes nothing"
    );

    let stale = store.apply(&start, &history, &end).await;
    assert!(
        matches!(stale, Err(StoreError::Fenced)),
        "{name}: {stale:?}"
    );
    assert_eq!(
        store.dump().await?,
        once,
        "{name}: a fenced writer changes nothing"
    );

    // A value that is not an envelope, after a healthy event in the same batch.
    let junk = StreamEvent {
        partition: parked_first.partition.clone(),
        offset: parked_first.offset + 10,
        payload: StreamEvent::decode(b"{not json"),
        traceparent: None,
    };
    let mixed = vec![parked_first.clone(), junk.clone()];
    let failed = store.apply(&end, &mixed, &end.after(&mixed)).await;
    assert!(
        matches!(failed, Err(StoreError::Event { index: 1, .. })),
        "{name}: {failed:?}"
    );
    assert_eq!(
        store.dump().await?,
        once,
        "{name}: nothing of a failed batch is kept"
    );
    assert_eq!(store.checkpoint().await?, end, "{name}");

    // Park the late message's first event; its edit then waits behind it.
    let parked = end.after(std::slice::from_ref(&parked_first));
    store
        .park(
            &end,
            &parked_first,
            "contract: parked on purpose",
            3,
            &parked,
        )
        .await?;
    let behind = parked.after(std::slice::from_ref(&parked_second));
    let held = store
        .apply(&parked, std::slice::from_ref(&parked_second), &behind)
        .await?;
    assert_eq!((held.applied, held.parked), (0, 1), "{name}");
    let letters = store.dead_letters().await?;
    assert_eq!(letters.len(), 2, "{name}: {letters:?}");
    assert_eq!(letters[0].sequence, Some(1), "{name}");
    assert_eq!(letters[0].attempts, 3, "{name}");
    assert_eq!(letters[1].sequence, Some(2), "{name}");
    assert_eq!(
        store.dump().await?,
        once,
        "{name}: parked events are not applied"
    );

    let (retried, _) = store.retry_dead_letters().await?;
    assert_eq!((retried.applied, retried.still_failing), (2, 0), "{name}");
    assert!(store.dead_letters().await?.is_empty(), "{name}");
    assert_eq!(store.checkpoint().await?, behind, "{name}");
    // They now count as applied: delivered again, they are ignored.
    let late = vec![parked_first.clone(), parked_second.clone()];
    let redelivered = store.apply(&behind, &late, &behind).await?;
    assert_eq!((redelivered.applied, redelivered.ignored), (0, 2), "{name}");

    store.drop_version().await?;
    store.prepare().await?;
    assert_eq!(store.checkpoint().await?, Checkpoint::default(), "{name}");
    assert_eq!(store.dump().await?, empty, "{name}: dropped means empty");
    Ok(())
}

async fn postgres_keeps_the_contract(projection: Arc<dyn PgProjection>) -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let pool = db.pool().await?;
    keeps_the_contract(Arc::new(PgStore::new(pool.clone(), projection, 7))).await?;
    pool.close().await;
    db.drop_database().await?;
    Ok(())
}

#[tokio::test]
async fn catalog_in_postgres_keeps_the_store_contract() -> anyhow::Result<()> {
    postgres_keeps_the_contract(Arc::new(CatalogProjection)).await
}

#[tokio::test]
async fn audit_in_postgres_keeps_the_store_contract() -> anyhow::Result<()> {
    postgres_keeps_the_contract(Arc::new(AuditProjection)).await
}

#[tokio::test]
async fn search_in_postgres_keeps_the_store_contract() -> anyhow::Result<()> {
    postgres_keeps_the_contract(Arc::new(SearchProjection)).await
}

#[tokio::test]
async fn receipts_in_postgres_keeps_the_store_contract() -> anyhow::Result<()> {
    postgres_keeps_the_contract(Arc::new(ReceiptsProjection)).await
}

#[tokio::test]
async fn timeline_in_postgres_keeps_the_store_contract() -> anyhow::Result<()> {
    postgres_keeps_the_contract(Arc::new(
        aether_projections::stream::postgres::TimelineProjection,
    ))
    .await
}

#[tokio::test]
async fn timeline_in_mongodb_keeps_the_store_contract() -> anyhow::Result<()> {
    let url = std::env::var("AETHER_TEST_MONGO")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".to_owned());
    let client = mongodb::Client::with_uri_str(&url).await?;
    let database = client.database(&format!("aether_test_{}", uuid::Uuid::new_v4().simple()));
    let outcome = keeps_the_contract(Arc::new(MongoStore::new(
        database.clone(),
        Arc::new(MongoTimelineProjection),
        7,
    )))
    .await;
    database.drop().await?;
    outcome
}

async fn sqlite_keeps_the_contract(
    projection: Arc<dyn aether_projections::projection::Projection>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    keeps_the_contract(Arc::new(SqliteStore::new(dir.path(), projection, 7))).await
}

#[tokio::test]
async fn catalog_in_sqlite_keeps_the_store_contract() -> anyhow::Result<()> {
    sqlite_keeps_the_contract(Arc::new(aether_projections::catalog::CatalogProjection)).await
}

#[tokio::test]
async fn timeline_in_sqlite_keeps_the_store_contract() -> anyhow::Result<()> {
    sqlite_keeps_the_contract(Arc::new(aether_projections::timeline::TimelineProjection)).await
}

#[tokio::test]
async fn receipts_in_sqlite_keeps_the_store_contract() -> anyhow::Result<()> {
    sqlite_keeps_the_contract(Arc::new(aether_projections::receipts::ReceiptsProjection)).await
}
