//! The search read model in PostgreSQL: the current words of every live message, indexed for
//! full-text search (`tsvector`, GIN), with the user directory beside it. A message that
//! moderation hid keeps its row marked `hidden` (a search for members must skip it; one for
//! moderators may not), until it is restored or deleted.

use aether_domain::message::MessageEvent;
use aether_domain::review::ReviewEvent;
use aether_domain::user::UserEvent;
use aether_schemas::EventEnvelope;
use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgProjection;
use crate::sql::ApplyError;
use crate::stream::source::StreamEvent;
use crate::stream::store::StoreError;
use crate::updates::Update;

#[derive(Debug, Default)]
pub struct SearchProjection;

impl SearchProjection {
    pub const NAME: &'static str = "search";
}

#[async_trait]
impl PgProjection for SearchProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn ddl(&self) -> &'static str {
        r#"
CREATE TABLE IF NOT EXISTS search_messages (
    id         TEXT        PRIMARY KEY,
    channel_id TEXT        NOT NULL,
    server_id  TEXT        NOT NULL,
    author_id  TEXT        NOT NULL,
    body       TEXT        NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL,
    words      TSVECTOR    GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED
);
-- Added after the first release of this version: a store made before it gains the column,
-- and a rebuild marks the messages hidden before then.
ALTER TABLE search_messages ADD COLUMN IF NOT EXISTS hidden BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS search_messages_words ON search_messages USING GIN (words);
CREATE INDEX IF NOT EXISTS search_messages_by_channel ON search_messages (channel_id, sent_at);
CREATE TABLE IF NOT EXISTS search_users (
    id           TEXT PRIMARY KEY,
    username     TEXT NOT NULL,
    display_name TEXT NOT NULL,
    words        TSVECTOR GENERATED ALWAYS AS
                 (to_tsvector('simple', username || ' ' || display_name)) STORED
);
CREATE INDEX IF NOT EXISTS search_users_words ON search_users USING GIN (words);
"#
    }

    fn dump_queries(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "search_messages",
                "SELECT id, channel_id, server_id, author_id, body, sent_at, hidden \
                 FROM search_messages ORDER BY id",
            ),
            (
                "search_users",
                "SELECT id, username, display_name FROM search_users ORDER BY id",
            ),
        ]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[(usize, &StreamEvent)],
        _updates: &mut Vec<Update>,
    ) -> Result<usize, StoreError> {
        for (index, event) in events {
            let Some(envelope) = event.envelope() else {
                continue;
            };
            apply_event(tx, envelope)
                .await
                .map_err(|error| error.at(*index))?;
        }
        Ok(events.len())
    }
}

async fn apply_event(tx: &mut PgConnection, envelope: &EventEnvelope) -> Result<(), ApplyError> {
    let decode_error = |e: serde_json::Error| ApplyError::decode(envelope, &e);
    match envelope.aggregate_type.as_str() {
        "Message" => apply_message(tx, envelope.decode().map_err(decode_error)?).await?,
        "MessageReview" => apply_review(tx, envelope.decode().map_err(decode_error)?).await?,
        "User" => {
            apply_user(
                tx,
                &envelope.aggregate_id,
                envelope.decode().map_err(decode_error)?,
            )
            .await?
        }
        _ => {}
    }
    Ok(())
}

async fn apply_message(tx: &mut PgConnection, event: MessageEvent) -> Result<(), sqlx::Error> {
    if let Some(sent) = event.sent() {
        // Direct conversations (no server) are private to their participants: not indexed.
        let Some(server_id) = sent.server_id else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO search_messages (id, channel_id, server_id, author_id, body, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(sent.message_id.to_string())
        .bind(sent.channel_id.to_string())
        .bind(server_id.to_string())
        .bind(sent.author_id.to_string())
        .bind(sent.body.as_str())
        .bind(sent.sent_at)
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    match event {
        MessageEvent::MessageSent { .. } | MessageEvent::DirectMessageSent { .. } => {}
        MessageEvent::MessageEdited {
            message_id, body, ..
        } => {
            sqlx::query("UPDATE search_messages SET body = $1 WHERE id = $2")
                .bind(body.as_str())
                .bind(message_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        MessageEvent::MessageDeleted { message_id, .. } => {
            // Deleted words must not be found any more.
            sqlx::query("DELETE FROM search_messages WHERE id = $1")
                .bind(message_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        MessageEvent::ReactionAdded { .. } | MessageEvent::ReactionRemoved { .. } => {}
    }
    Ok(())
}

/// Hidden words stay in the index, marked, so that a restore needs no history.
async fn apply_review(tx: &mut PgConnection, event: ReviewEvent) -> Result<(), sqlx::Error> {
    let hidden = match event {
        ReviewEvent::MessageHidden { .. } => true,
        ReviewEvent::MessageRestored { .. } => false,
        ReviewEvent::MessageFlagged { .. }
        | ReviewEvent::MessageReported { .. }
        | ReviewEvent::FlagDismissed { .. } => return Ok(()),
    };
    sqlx::query("UPDATE search_messages SET hidden = $1 WHERE id = $2")
        .bind(hidden)
        .bind(event.message_id().to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn apply_user(
    tx: &mut PgConnection,
    user_id: &str,
    event: UserEvent,
) -> Result<(), sqlx::Error> {
    match event {
        UserEvent::UserRegistered {
            username,
            display_name,
            ..
        } => {
            sqlx::query(
                "INSERT INTO search_users (id, username, display_name) VALUES ($1, $2, $3)",
            )
            .bind(user_id)
            .bind(username.as_str())
            .bind(display_name.as_str())
            .execute(&mut *tx)
            .await?;
        }
        UserEvent::ProfileChanged { display_name, .. } => {
            sqlx::query("UPDATE search_users SET display_name = $1 WHERE id = $2")
                .bind(display_name.as_str())
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        UserEvent::AllSessionsEnded { .. }
        | UserEvent::PasswordChanged { .. }
        | UserEvent::LoginFailed { .. }
        | UserEvent::ExternalIdentityLinked { .. }
        | UserEvent::UserBlocked { .. }
        | UserEvent::UserUnblocked { .. } => {}
    }
    Ok(())
}
