//! The receipts read model: each member's read pointer per channel, and what they have not read
//! yet — unread messages and unread mentions — for badges and `markRead`.
//!
//! The statements are shared by the SQLite store (embedded mode) and the PostgreSQL one
//! (`stream::postgres::receipts`). The model numbers each channel's messages itself, in the
//! order the log delivers them; read markers travel on the same partition as the messages they
//! point at (both are keyed by the channel), so a marker always finds its message numbered.
//! Counts are worked out when asked for, from an index, rather than kept per member: a message
//! then costs one row however many members the channel has.

use aether_domain::message::{Mentions, MessageEvent};
use aether_domain::receipts::ReadMarkerEvent;
use aether_domain::{ChannelId, MessageBody, MessageId, UserId};
use aether_schemas::{EventEnvelope, LoggedEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::projection::{Projection, ProjectionError};
use crate::sql::{ApplyError, SqlWrite};
use crate::updates::Update;

#[derive(Debug, Default)]
pub struct ReceiptsProjection;

impl ReceiptsProjection {
    pub const NAME: &'static str = "receipts";
}

/// `(table, query)` pairs whose rows, in order, are the whole receipts model.
pub const RECEIPTS_TABLES: &[(&str, &str)] = &[
    (
        "receipt_messages",
        "SELECT * FROM receipt_messages ORDER BY channel_id, seq",
    ),
    (
        "receipt_mentions",
        "SELECT * FROM receipt_mentions ORDER BY message_id, user_id",
    ),
    (
        "read_pointers",
        "SELECT * FROM read_pointers ORDER BY user_id, channel_id",
    ),
];

#[async_trait]
impl Projection for ReceiptsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [(&'static str, &'static str)] {
        RECEIPTS_TABLES
    }

    async fn apply(
        &self,
        tx: &mut SqliteConnection,
        event: &LoggedEvent,
        _updates: &mut Vec<Update>,
    ) -> Result<(), ProjectionError> {
        apply_receipts_event(tx, &event.envelope)
            .await
            .map_err(|error| error.for_event(event))
    }
}

/// Applies one event to the receipts model through `tx`, whichever SQL store it belongs to.
/// Events of other aggregates are ignored.
pub async fn apply_receipts_event(
    tx: &mut dyn SqlWrite,
    envelope: &EventEnvelope,
) -> Result<(), ApplyError> {
    let decode = |e: &dyn std::fmt::Display| ApplyError::decode(envelope, e);
    match envelope.aggregate_type.as_str() {
        "Message" => {
            let event: MessageEvent = envelope.decode().map_err(|e| decode(&e))?;
            apply_message(tx, event).await?;
        }
        "ReadMarker" => {
            let marked: ReadMarkerEvent = envelope.decode().map_err(|e| decode(&e))?;
            let (user_id, channel_id, message_id, read_at) = marked.read();
            // The pointer moves to the message's place, and only forward: a client that marks
            // an older message (another device, a late request) does not un-read anything.
            tx.write(
                "INSERT INTO read_pointers (user_id, channel_id, last_read_seq, message_id, read_at) \
                 SELECT $1, $2, m.seq, $3, $4 FROM receipt_messages m \
                 WHERE m.message_id = $5 AND m.channel_id = $6 \
                 ON CONFLICT (user_id, channel_id) DO UPDATE SET \
                 last_read_seq = excluded.last_read_seq, message_id = excluded.message_id, \
                 read_at = excluded.read_at \
                 WHERE excluded.last_read_seq > read_pointers.last_read_seq",
                vec![
                    user_id.to_string().into(),
                    channel_id.to_string().into(),
                    message_id.to_string().into(),
                    read_at.into(),
                    message_id.to_string().into(),
                    channel_id.to_string().into(),
                ],
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn apply_message(tx: &mut dyn SqlWrite, event: MessageEvent) -> Result<(), sqlx::Error> {
    if let Some(sent) = event.sent() {
        tx.write(
            "INSERT INTO receipt_messages \
             (message_id, channel_id, seq, author_id, deleted, in_channel) \
             SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, FALSE, $4 FROM receipt_messages \
             WHERE channel_id = $5",
            vec![
                sent.message_id.to_string().into(),
                sent.channel_id.to_string().into(),
                sent.author_id.to_string().into(),
                sent.in_channel.into(),
                sent.channel_id.to_string().into(),
            ],
        )
        .await?;
        return insert_mentions(
            tx,
            sent.message_id,
            sent.channel_id,
            &sent.body,
            sent.mentions.as_ref(),
        )
        .await;
    }
    match event {
        MessageEvent::MessageSent { .. } | MessageEvent::DirectMessageSent { .. } => Ok(()),
        MessageEvent::MessageEdited {
            message_id,
            channel_id,
            body,
            mentions,
            ..
        } => {
            // An edit can add or remove mentions: what counts is the body as it stands.
            delete_mentions(tx, message_id).await?;
            insert_mentions(tx, message_id, channel_id, &body, mentions.as_ref()).await
        }
        MessageEvent::MessageDeleted { message_id, .. } => {
            tx.write(
                "UPDATE receipt_messages SET deleted = TRUE WHERE message_id = $1",
                vec![message_id.to_string().into()],
            )
            .await?;
            delete_mentions(tx, message_id).await
        }
        // Reactions neither count as unread nor mention anyone.
        MessageEvent::ReactionAdded { .. } | MessageEvent::ReactionRemoved { .. } => Ok(()),
    }
}

/// The `user_id` of the one mention row an `@everyone` writes: it counts for every member
/// who may see the channel (only they can ask for its read state).
pub const EVERYONE: &str = "*";

/// Records who a message mentions: what the event says when it says it (decided on the write
/// side), else — for events written before that — the `<@…>` of the body.
async fn insert_mentions(
    tx: &mut dyn SqlWrite,
    message_id: MessageId,
    channel_id: ChannelId,
    body: &MessageBody,
    mentions: Option<&Mentions>,
) -> Result<(), sqlx::Error> {
    let (mut rows, everyone): (Vec<String>, bool) = match mentions {
        Some(mentions) => (
            mentions.reached().iter().map(ToString::to_string).collect(),
            mentions.everyone,
        ),
        None => (
            body.mentions().iter().map(ToString::to_string).collect(),
            false,
        ),
    };
    if everyone {
        rows.push(EVERYONE.to_owned());
    }
    for user in rows {
        tx.write(
            "INSERT INTO receipt_mentions (message_id, user_id, channel_id) VALUES ($1, $2, $3)",
            vec![
                message_id.to_string().into(),
                user.into(),
                channel_id.to_string().into(),
            ],
        )
        .await?;
    }
    Ok(())
}

async fn delete_mentions(tx: &mut dyn SqlWrite, message_id: MessageId) -> Result<(), sqlx::Error> {
    tx.write(
        "DELETE FROM receipt_mentions WHERE message_id = $1",
        vec![message_id.to_string().into()],
    )
    .await
}

/// A member's read state in one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadStateRow {
    pub user_id: UserId,
    pub channel_id: ChannelId,
    /// The last message marked read and when, or `None` if the member never marked any.
    pub last_read: Option<(MessageId, DateTime<Utc>)>,
    /// The channel number of the last message read (0 before any).
    pub last_read_seq: i64,
    /// Messages after the pointer, not deleted, written by someone else, shown in the channel
    /// (a thread reply not also sent to it is read in its thread).
    pub unread: i64,
    /// Of those, the ones that mention the member.
    pub mentions: i64,
}

/// The pointer of one member in one channel: `$1` user, `$2` channel. `{r}` stands for the
/// tables' qualifier (empty, or the version's schema and a dot).
pub const READ_POINTER_QUERY: &str =
    "SELECT last_read_seq, message_id, read_at FROM {r}read_pointers \
     WHERE user_id = $1 AND channel_id = $2";

/// Unread messages and unread mentions after a pointer: `$1` channel, `$2` pointer, `$3` user,
/// `$4` channel, `$5` pointer, `$6` user, `$7` user. Unread messages are those the channel
/// shows; a mention is the member's own row or an `@everyone` ([`EVERYONE`]), in the channel
/// or in a thread, a message counted once however it mentions them. `{r}` as in
/// [`READ_POINTER_QUERY`].
pub const UNREAD_QUERY: &str = "SELECT \
     (SELECT COUNT(*) FROM {r}receipt_messages \
      WHERE channel_id = $1 AND seq > $2 AND NOT deleted AND in_channel AND author_id <> $3) \
      AS unread, \
     (SELECT COUNT(DISTINCT x.message_id) FROM {r}receipt_mentions x \
      JOIN {r}receipt_messages m ON m.message_id = x.message_id \
      WHERE x.channel_id = $4 AND m.seq > $5 AND NOT m.deleted AND x.user_id IN ($6, '*') \
      AND m.author_id <> $7) AS mentions";
