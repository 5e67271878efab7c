//! The timeline read model: message documents with their edit history, and each channel's
//! numbered stream of changes that subscriptions resume from.

use aether_domain::message::{add_reaction, remove_reaction, MessageEvent, Reaction};
use aether_domain::pins::PinsEvent;
use aether_domain::review::ReviewEvent;
use aether_schemas::{EventEnvelope, LoggedEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::projection::{Projection, ProjectionError};
use crate::rows::{
    apply_review, optional_json_column, ChannelEventKind, ChannelEventRow, EditRow, MessageRow,
    ReactionChange, ReviewRow, RowError,
};
use crate::sql::{ApplyError, SqlRow, SqlWrite};
use crate::updates::Update;

#[derive(Debug, Default)]
pub struct TimelineProjection;

impl TimelineProjection {
    pub const NAME: &'static str = "timeline";
}

pub(crate) const MESSAGE_COLUMNS: &str = "id, channel_id, server_id, author_id, body, created_at, \
     edited_at, deleted, channel_seq, version, edits, reactions, reply_to_id, thread_root_id, \
     thread_seq, in_channel, thread_replies, thread_last_reply_at, thread_participants, pinned_by, \
     pinned_at, moderation, forwarded_from";

#[async_trait]
impl Projection for TimelineProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("messages", "SELECT * FROM messages ORDER BY id"),
            (
                "channel_events",
                "SELECT * FROM channel_events ORDER BY channel_id, seq",
            ),
            (
                "channel_heads",
                "SELECT * FROM channel_heads ORDER BY channel_id",
            ),
        ]
    }

    async fn apply(
        &self,
        tx: &mut SqliteConnection,
        event: &LoggedEvent,
        updates: &mut Vec<Update>,
    ) -> Result<(), ProjectionError> {
        apply_timeline_event(tx, &event.envelope, updates)
            .await
            .map_err(|error| error.for_event(event))
    }
}

/// Applies one event to the timeline's tables, on either SQL store: a message's first version,
/// an edit (the earlier body kept), a reaction added or taken back, a pin or unpin, or a
/// tombstone, and the channel's numbered change, which it also hands to `updates`. Events of
/// other aggregates are ignored.
pub async fn apply_timeline_event(
    tx: &mut dyn SqlWrite,
    envelope: &EventEnvelope,
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    match envelope.aggregate_type.as_str() {
        "Message" => {}
        "ChannelPins" => return apply_pin(tx, envelope, updates).await,
        "MessageReview" => return apply_review_event(tx, envelope, updates).await,
        _ => return Ok(()),
    }
    let message: MessageEvent = envelope
        .decode()
        .map_err(|e| ApplyError::decode(envelope, &e))?;
    let version = i64::try_from(envelope.sequence).unwrap_or(i64::MAX);
    let channel = message.channel_id();
    let channel_id = channel.to_string();
    // Three statements for a new message (both heads, the message, the change), four for an
    // edit or a reaction.
    let mut reaction = None;
    let added = matches!(message, MessageEvent::ReactionAdded { .. });
    let (kind, seq, row) = match message {
        MessageEvent::MessageSent { .. } | MessageEvent::DirectMessageSent { .. } => {
            let Some(sent) = message.sent() else {
                return Ok(());
            };
            let heads = bump_heads(tx, &channel_id, Bump::EventAndMessage).await?;
            let thread_seq = match sent.thread_root_id {
                Some(root) => Some(add_thread_reply(tx, &root.to_string(), &sent).await?),
                None => None,
            };
            let row = tx
                .fetch_optional(
                    &format!(
                        "INSERT INTO messages (id, channel_id, server_id, author_id, body, \
                         created_at, deleted, channel_seq, version, edits, reply_to_id, \
                         thread_root_id, thread_seq, in_channel, forwarded_from) \
                         VALUES ($1, $2, $3, $4, $5, $6, false, $7, $8, '[]', $9, $10, $11, $12, \
                         $13) \
                         RETURNING {MESSAGE_COLUMNS}"
                    ),
                    vec![
                        sent.message_id.to_string().into(),
                        channel_id.as_str().into(),
                        sent.server_id.map(|server| server.to_string()).into(),
                        sent.author_id.to_string().into(),
                        sent.body.as_str().into(),
                        sent.sent_at.into(),
                        heads.last_message.into(),
                        version.into(),
                        sent.reply_to_id.map(|id| id.to_string()).into(),
                        sent.thread_root_id.map(|id| id.to_string()).into(),
                        thread_seq.into(),
                        sent.in_channel.into(),
                        sent.forwarded_from
                            .map(|origin| serde_json::json!(origin).to_string())
                            .into(),
                    ],
                )
                .await?;
            (ChannelEventKind::MessageSent, heads.last_event, row)
        }
        MessageEvent::MessageEdited {
            message_id,
            body,
            previous_body,
            edited_at,
            ..
        } => {
            let id = message_id.to_string();
            let mut edits: Vec<EditRow> = load_json(tx, &id, "edits").await?;
            edits.push(EditRow {
                body: previous_body.into_inner(),
                replaced_at: edited_at,
            });
            let row = update_message(
                tx,
                &id,
                Some(body.as_str()),
                Some(edited_at),
                false,
                &edits,
                version,
            )
            .await?;
            let heads = bump_heads(tx, &channel_id, Bump::Event).await?;
            (ChannelEventKind::MessageEdited, heads.last_event, row)
        }
        MessageEvent::MessageDeleted { message_id, .. } => {
            // A tombstone keeps its place in the channel but none of its words.
            let row =
                update_message(tx, &message_id.to_string(), None, None, true, &[], version).await?;
            let heads = bump_heads(tx, &channel_id, Bump::Event).await?;
            (ChannelEventKind::MessageDeleted, heads.last_event, row)
        }
        MessageEvent::ReactionAdded {
            message_id,
            user_id,
            emoji,
            ..
        }
        | MessageEvent::ReactionRemoved {
            message_id,
            user_id,
            emoji,
            ..
        } => {
            let id = message_id.to_string();
            let mut reactions: Vec<Reaction> = load_json(tx, &id, "reactions").await?;
            reaction = Some(Box::new(ReactionChange {
                user_id,
                emoji: emoji.to_string(),
                added,
            }));
            if added {
                add_reaction(&mut reactions, emoji, user_id);
            } else {
                remove_reaction(&mut reactions, &emoji, user_id);
            }
            let row = tx
                .fetch_optional(
                    &format!(
                        "UPDATE messages SET reactions = $1, version = $2 WHERE id = $3                          RETURNING {MESSAGE_COLUMNS}"
                    ),
                    vec![to_json(&reactions, "reactions")?.into(), version.into(), id.into()],
                )
                .await?;
            let heads = bump_heads(tx, &channel_id, Bump::Event).await?;
            (ChannelEventKind::ReactionChanged, heads.last_event, row)
        }
    };
    record_change(tx, channel, seq, kind, row, reaction, updates).await
}

/// A pin or unpin: the message's pin, and the channel's numbered change.
async fn apply_pin(
    tx: &mut dyn SqlWrite,
    envelope: &EventEnvelope,
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    let event: PinsEvent = envelope
        .decode()
        .map_err(|e| ApplyError::decode(envelope, &e))?;
    let channel = event.channel_id();
    let (kind, pinned_by, pinned_at) = match &event {
        PinsEvent::MessagePinned {
            pinned_by,
            pinned_at,
            ..
        } => (
            ChannelEventKind::MessagePinned,
            Some(pinned_by.to_string()),
            Some(*pinned_at),
        ),
        PinsEvent::MessageUnpinned { .. } => (ChannelEventKind::MessageUnpinned, None, None),
    };
    let row = tx
        .fetch_optional(
            &format!(
                "UPDATE messages SET pinned_by = $1, pinned_at = $2 WHERE id = $3 \
                 RETURNING {MESSAGE_COLUMNS}"
            ),
            vec![
                pinned_by.into(),
                pinned_at.into(),
                event.message_id().to_string().into(),
            ],
        )
        .await?;
    let heads = bump_heads(tx, &channel.to_string(), Bump::Event).await?;
    record_change(tx, channel, heads.last_event, kind, row, None, updates).await
}

/// A flag, report or moderator's decision: the message's review, and, when members see a
/// difference (hidden, shown again), the channel's numbered change.
async fn apply_review_event(
    tx: &mut dyn SqlWrite,
    envelope: &EventEnvelope,
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    let event: ReviewEvent = envelope
        .decode()
        .map_err(|e| ApplyError::decode(envelope, &e))?;
    let id = event.message_id().to_string();
    let stored = tx
        .fetch_optional(
            "SELECT moderation FROM messages WHERE id = $1",
            vec![id.clone().into()],
        )
        .await?
        .ok_or_else(|| {
            ApplyError::Row(RowError::Malformed {
                column: "id",
                value: format!("message {id} is not in the timeline"),
            })
        })?;
    let mut review: Option<ReviewRow> = optional_json_column(&stored, "moderation")?;
    let kind = apply_review(&mut review, &event);
    let open = review.as_ref().is_some_and(|review| review.open);
    let json = serde_json::to_string(&review).map_err(|e| ApplyError::decode(envelope, &e))?;
    let row = tx
        .fetch_optional(
            &format!(
                "UPDATE messages SET moderation = $1, review_open = $2 WHERE id = $3 \
                 RETURNING {MESSAGE_COLUMNS}"
            ),
            vec![json.into(), open.into(), id.into()],
        )
        .await?;
    let Some(kind) = kind else {
        return Ok(());
    };
    let channel = event.channel_id();
    let heads = bump_heads(tx, &channel.to_string(), Bump::Event).await?;
    record_change(tx, channel, heads.last_event, kind, row, None, updates).await
}

/// Numbers a change of the channel (`seq`) to the message `row` as it now stands, and hands it
/// to `updates`.
async fn record_change(
    tx: &mut dyn SqlWrite,
    channel: aether_domain::ChannelId,
    seq: i64,
    kind: ChannelEventKind,
    row: Option<SqlRow>,
    reaction: Option<Box<ReactionChange>>,
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    let channel_id = channel.to_string();
    let row = row.ok_or_else(|| {
        ApplyError::Row(RowError::Malformed {
            column: "id",
            value: "no message row for this change".to_owned(),
        })
    })?;
    let message = MessageRow::from_row(&row)?;
    let detail = reaction
        .as_ref()
        .map(|reaction| to_json(reaction, "reaction"))
        .transpose()?;
    tx.write(
        "INSERT INTO channel_events (channel_id, seq, kind, message_id, reaction)          VALUES ($1, $2, $3, $4, $5)",
        vec![
            channel_id.as_str().into(),
            seq.into(),
            kind.as_str().into(),
            message.id.to_string().into(),
            detail.into(),
        ],
    )
    .await?;
    updates.push(Update::Channel(ChannelEventRow {
        channel_id: channel,
        seq,
        kind,
        message: Box::new(message),
        reaction,
    }));
    Ok(())
}

/// Counts `reply` in its root's thread summary and answers its place in the thread. A root the
/// timeline does not hold is the event's fault (its aggregate's events are missing here).
async fn add_thread_reply(
    tx: &mut dyn SqlWrite,
    root: &str,
    reply: &aether_domain::message::SentMessage,
) -> Result<i64, ApplyError> {
    let mut participants: Vec<aether_domain::UserId> =
        load_json(tx, root, "thread_participants").await?;
    if !participants.contains(&reply.author_id) {
        participants.push(reply.author_id);
    }
    let row = tx
        .fetch_optional(
            "UPDATE messages SET thread_replies = thread_replies + 1, \
             thread_last_reply_at = $1, thread_participants = $2 WHERE id = $3 \
             RETURNING thread_replies",
            vec![
                reply.sent_at.into(),
                to_json(&participants, "thread_participants")?.into(),
                root.into(),
            ],
        )
        .await?
        .ok_or_else(|| {
            ApplyError::Row(RowError::Malformed {
                column: "thread_root_id",
                value: format!("thread root {root} is not in the timeline"),
            })
        })?;
    Ok(row.get("thread_replies")?)
}

/// A JSON column of a message (`edits`, `reactions`); an empty list if the message is not
/// there.
async fn load_json<T: serde::de::DeserializeOwned + Default>(
    tx: &mut dyn SqlWrite,
    message_id: &str,
    column: &'static str,
) -> Result<T, ApplyError> {
    let text: String = match tx
        .fetch_optional(
            &format!("SELECT {column} FROM messages WHERE id = $1"),
            vec![message_id.into()],
        )
        .await?
    {
        Some(row) => row.get(column)?,
        None => return Ok(T::default()),
    };
    serde_json::from_str(&text).map_err(|_| {
        ApplyError::Row(RowError::Malformed {
            column,
            value: text,
        })
    })
}

fn to_json(value: &impl serde::Serialize, column: &'static str) -> Result<String, ApplyError> {
    serde_json::to_string(value).map_err(|e| {
        ApplyError::Row(RowError::Malformed {
            column,
            value: e.to_string(),
        })
    })
}

async fn update_message(
    tx: &mut dyn SqlWrite,
    message_id: &str,
    body: Option<&str>,
    edited_at: Option<DateTime<Utc>>,
    deleted: bool,
    edits: &[EditRow],
    version: i64,
) -> Result<Option<SqlRow>, ApplyError> {
    let edits = to_json(&edits, "edits")?;
    // A tombstone loses its reactions with its words.
    Ok(tx
        .fetch_optional(
            &format!(
                "UPDATE messages SET body = $1, edited_at = COALESCE($2, edited_at), \
                 deleted = $3, edits = $4, version = $5, \
                 reactions = CASE WHEN $3 THEN '[]' ELSE reactions END WHERE id = $6 \
                 RETURNING {MESSAGE_COLUMNS}"
            ),
            vec![
                body.map(str::to_owned).into(),
                edited_at.into(),
                deleted.into(),
                edits.into(),
                version.into(),
                message_id.into(),
            ],
        )
        .await?)
}

/// Which of a channel's counters a change claims the next number of.
#[derive(Clone, Copy, Debug)]
enum Bump {
    /// A change that is not a new message (an edit, a delete).
    Event,
    /// A new message: the next change number and the next message number.
    EventAndMessage,
}

/// A channel's counters after a [`bump_heads`].
struct Heads {
    last_event: i64,
    last_message: i64,
}

/// Claims the channel's next numbers, in one statement (the row is created at the first one).
async fn bump_heads(
    tx: &mut dyn SqlWrite,
    channel_id: &str,
    bump: Bump,
) -> Result<Heads, ApplyError> {
    let sql = match bump {
        Bump::Event => {
            "INSERT INTO channel_heads (channel_id, last_event, last_message) VALUES ($1, 1, 0) \
             ON CONFLICT (channel_id) DO UPDATE SET last_event = channel_heads.last_event + 1 \
             RETURNING last_event, last_message"
        }
        Bump::EventAndMessage => {
            "INSERT INTO channel_heads (channel_id, last_event, last_message) VALUES ($1, 1, 1) \
             ON CONFLICT (channel_id) DO UPDATE SET last_event = channel_heads.last_event + 1, \
             last_message = channel_heads.last_message + 1 RETURNING last_event, last_message"
        }
    };
    let row = tx
        .fetch_optional(sql, vec![channel_id.into()])
        .await?
        .ok_or(ApplyError::Sql(sqlx::Error::RowNotFound))?;
    Ok(Heads {
        last_event: row.get("last_event")?,
        last_message: row.get("last_message")?,
    })
}
