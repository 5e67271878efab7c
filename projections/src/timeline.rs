//! The timeline read model: message documents with their edit history, and each channel's
//! numbered stream of changes that subscriptions resume from.

use aether_domain::message::MessageEvent;
use aether_schemas::LoggedEvent;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::projection::{Projection, ProjectionError};
use crate::rows::{ChannelEventKind, ChannelEventRow, EditRow, MessageRow, RowError};
use crate::updates::Update;

#[derive(Debug, Default)]
pub struct TimelineProjection;

impl TimelineProjection {
    pub const NAME: &'static str = "timeline";
}

pub(crate) const MESSAGE_COLUMNS: &str = "id, channel_id, server_id, author_id, body, created_at, \
     edited_at, deleted, channel_seq, version, edits";

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
        if event.envelope.aggregate_type != "Message" {
            return Ok(());
        }
        let message: MessageEvent = event
            .envelope
            .decode()
            .map_err(|e| ProjectionError::decode(event, e))?;
        let version = i64::try_from(event.envelope.sequence).unwrap_or(i64::MAX);
        let channel = message.channel_id();
        let channel_id = channel.to_string();
        // Three statements for a new message (both heads, the message, the change), four for
        // an edit: each is a round trip to SQLite's worker thread.
        let (kind, seq, row) = match message {
            MessageEvent::MessageSent { .. } | MessageEvent::DirectMessageSent { .. } => {
                let Some(sent) = message.sent() else {
                    return Ok(());
                };
                let heads = bump_heads(tx, &channel_id, Bump::EventAndMessage).await?;
                let row = sqlx::query(&format!(
                    "INSERT INTO messages (id, channel_id, server_id, author_id, body, created_at, \
                     deleted, channel_seq, version, edits) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, '[]') \
                     RETURNING {MESSAGE_COLUMNS}"
                ))
                .bind(sent.message_id.to_string())
                .bind(&channel_id)
                .bind(sent.server_id.map(|server| server.to_string()))
                .bind(sent.author_id.to_string())
                .bind(sent.body.as_str())
                .bind(sent.sent_at)
                .bind(heads.last_message)
                .bind(version)
                .fetch_one(&mut *tx)
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
                let mut edits = load_edits(tx, &id).await?;
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
                    update_message(tx, &message_id.to_string(), None, None, true, &[], version)
                        .await?;
                let heads = bump_heads(tx, &channel_id, Bump::Event).await?;
                (ChannelEventKind::MessageDeleted, heads.last_event, row)
            }
        };
        let message = MessageRow::from_row(&crate::sql::SqlRow::Sqlite(row))?;
        sqlx::query(
            "INSERT INTO channel_events (channel_id, seq, kind, message_id) VALUES (?, ?, ?, ?)",
        )
        .bind(&channel_id)
        .bind(seq)
        .bind(kind.as_str())
        .bind(message.id.to_string())
        .execute(&mut *tx)
        .await?;
        updates.push(Update::Channel(ChannelEventRow {
            channel_id: channel,
            seq,
            kind,
            message,
        }));
        Ok(())
    }
}

async fn load_edits(
    tx: &mut SqliteConnection,
    message_id: &str,
) -> Result<Vec<EditRow>, ProjectionError> {
    let edits: Option<String> = sqlx::query_scalar("SELECT edits FROM messages WHERE id = ?")
        .bind(message_id)
        .fetch_optional(&mut *tx)
        .await?;
    let edits = edits.unwrap_or_else(|| "[]".to_owned());
    serde_json::from_str(&edits).map_err(|_| {
        ProjectionError::Row(RowError::Malformed {
            column: "edits",
            value: edits,
        })
    })
}

async fn update_message(
    tx: &mut SqliteConnection,
    message_id: &str,
    body: Option<&str>,
    edited_at: Option<DateTime<Utc>>,
    deleted: bool,
    edits: &[EditRow],
    version: i64,
) -> Result<SqliteRow, ProjectionError> {
    let edits = serde_json::to_string(edits).map_err(|e| {
        ProjectionError::Row(RowError::Malformed {
            column: "edits",
            value: e.to_string(),
        })
    })?;
    let row = sqlx::query(&format!(
        "UPDATE messages SET body = ?, edited_at = COALESCE(?, edited_at), deleted = ?, \
         edits = ?, version = ? WHERE id = ? RETURNING {MESSAGE_COLUMNS}"
    ))
    .bind(body)
    .bind(edited_at)
    .bind(deleted)
    .bind(edits)
    .bind(version)
    .bind(message_id)
    .fetch_one(&mut *tx)
    .await?;
    Ok(row)
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
    tx: &mut SqliteConnection,
    channel_id: &str,
    bump: Bump,
) -> Result<Heads, sqlx::Error> {
    let sql = match bump {
        Bump::Event => {
            "INSERT INTO channel_heads (channel_id, last_event, last_message) VALUES (?, 1, 0) \
             ON CONFLICT (channel_id) DO UPDATE SET last_event = last_event + 1 \
             RETURNING last_event, last_message"
        }
        Bump::EventAndMessage => {
            "INSERT INTO channel_heads (channel_id, last_event, last_message) VALUES (?, 1, 1) \
             ON CONFLICT (channel_id) DO UPDATE SET last_event = last_event + 1, \
             last_message = last_message + 1 RETURNING last_event, last_message"
        }
    };
    let row = sqlx::query(sql)
        .bind(channel_id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Heads {
        last_event: row.try_get(0)?,
        last_message: row.try_get(1)?,
    })
}
