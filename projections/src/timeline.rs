//! The timeline read model: message documents with their edit history, and each channel's
//! numbered stream of changes that subscriptions resume from.

use aether_domain::message::MessageEvent;
use aether_schemas::LoggedEvent;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use crate::rows::{ChannelEventKind, ChannelEventRow, EditRow, MessageRow, RowError};
use crate::runtime::{Projection, ProjectionError};
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
        let (kind, message_id) = match message {
            MessageEvent::MessageSent { .. } | MessageEvent::DirectMessageSent { .. } => {
                let Some(sent) = message.sent() else {
                    return Ok(());
                };
                let seq = next_message_seq(tx, &channel_id).await?;
                sqlx::query(
                    "INSERT INTO messages (id, channel_id, server_id, author_id, body, created_at, \
                     deleted, channel_seq, version, edits) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, '[]')",
                )
                .bind(sent.message_id.to_string())
                .bind(&channel_id)
                .bind(sent.server_id.map(|server| server.to_string()))
                .bind(sent.author_id.to_string())
                .bind(sent.body.as_str())
                .bind(sent.sent_at)
                .bind(seq)
                .bind(version)
                .execute(&mut *tx)
                .await?;
                (ChannelEventKind::MessageSent, sent.message_id)
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
                update_message(
                    tx,
                    &id,
                    Some(body.as_str()),
                    Some(edited_at),
                    false,
                    &edits,
                    version,
                )
                .await?;
                (ChannelEventKind::MessageEdited, message_id)
            }
            MessageEvent::MessageDeleted { message_id, .. } => {
                // A tombstone keeps its place in the channel but none of its words.
                update_message(tx, &message_id.to_string(), None, None, true, &[], version).await?;
                (ChannelEventKind::MessageDeleted, message_id)
            }
        };
        let seq = next_event_seq(tx, &channel_id).await?;
        sqlx::query(
            "INSERT INTO channel_events (channel_id, seq, kind, message_id) VALUES (?, ?, ?, ?)",
        )
        .bind(&channel_id)
        .bind(seq)
        .bind(kind.as_str())
        .bind(message_id.to_string())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?"
        ))
        .bind(message_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        updates.push(Update::Channel(ChannelEventRow {
            channel_id: channel,
            seq,
            kind,
            message: MessageRow::from_row(&row)?,
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
) -> Result<(), ProjectionError> {
    let edits = serde_json::to_string(edits).map_err(|e| {
        ProjectionError::Row(RowError::Malformed {
            column: "edits",
            value: e.to_string(),
        })
    })?;
    sqlx::query(
        "UPDATE messages SET body = ?, edited_at = COALESCE(?, edited_at), deleted = ?, \
         edits = ?, version = ? WHERE id = ?",
    )
    .bind(body)
    .bind(edited_at)
    .bind(deleted)
    .bind(edits)
    .bind(version)
    .bind(message_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Claims the channel's next message number.
async fn next_message_seq(tx: &mut SqliteConnection, channel_id: &str) -> Result<i64, sqlx::Error> {
    bump_head(tx, channel_id, "last_message").await
}

/// Claims the channel's next change number.
async fn next_event_seq(tx: &mut SqliteConnection, channel_id: &str) -> Result<i64, sqlx::Error> {
    bump_head(tx, channel_id, "last_event").await
}

async fn bump_head(
    tx: &mut SqliteConnection,
    channel_id: &str,
    column: &'static str,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO channel_heads (channel_id, last_event, last_message) VALUES (?, 0, 0) \
         ON CONFLICT (channel_id) DO NOTHING",
    )
    .bind(channel_id)
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(&format!(
        "UPDATE channel_heads SET {column} = {column} + 1 WHERE channel_id = ? RETURNING {column}"
    ))
    .bind(channel_id)
    .fetch_one(&mut *tx)
    .await?;
    row.try_get(0)
}
