//! The timeline read model in PostgreSQL: messages with their edit history and each channel's
//! numbered changes, for deployments that keep every read model in PostgreSQL instead of
//! putting the timeline in MongoDB. The statements are the embedded store's
//! (`crate::timeline`); only the tables are PostgreSQL's.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgProjection;
use crate::stream::source::StreamEvent;
use crate::stream::store::StoreError;
use crate::timeline::apply_timeline_event;
pub use crate::timeline::TimelineProjection;
use crate::updates::Update;

#[async_trait]
impl PgProjection for TimelineProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn ddl(&self) -> &'static str {
        r#"
CREATE TABLE IF NOT EXISTS messages (
    id          TEXT        PRIMARY KEY,
    channel_id  TEXT        NOT NULL,
    server_id   TEXT,
    author_id   TEXT        NOT NULL,
    body        TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    edited_at   TIMESTAMPTZ,
    deleted     BOOLEAN     NOT NULL DEFAULT false,
    channel_seq BIGINT      NOT NULL,
    version     BIGINT      NOT NULL,
    edits       TEXT        NOT NULL DEFAULT '[]',
    UNIQUE (channel_id, channel_seq)
);
CREATE TABLE IF NOT EXISTS channel_events (
    channel_id TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    message_id TEXT   NOT NULL,
    PRIMARY KEY (channel_id, seq)
);
CREATE TABLE IF NOT EXISTS channel_heads (
    channel_id   TEXT   PRIMARY KEY,
    last_event   BIGINT NOT NULL,
    last_message BIGINT NOT NULL
);
-- Added with reactions; a version created before them gains the columns, and the defaults are
-- exact for it (its messages had no reactions).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS reactions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE channel_events ADD COLUMN IF NOT EXISTS reaction TEXT;
-- Added with replies and threads, the same way (see the embedded store's migration 0006).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS reply_to_id TEXT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS thread_root_id TEXT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS thread_seq BIGINT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS in_channel BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS thread_replies BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS thread_last_reply_at TIMESTAMPTZ;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS thread_participants TEXT NOT NULL DEFAULT '[]';
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages (thread_root_id, thread_seq);
-- Added with pins (see the embedded store's migration 0007).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS pinned_by TEXT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS pinned_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS messages_pinned ON messages (channel_id, pinned_at);
-- Added with forwards (see the embedded store's migration 0010).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS forwarded_from TEXT;
-- Added with moderation (see the embedded store's migration 0009).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS moderation TEXT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS review_open BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS messages_review_queue ON messages (server_id, review_open, id);
"#
    }

    fn dump_queries(&self) -> &'static [(&'static str, &'static str)] {
        // The same tables, in the same order, as the embedded store's.
        crate::projection::Projection::tables(self)
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[(usize, &StreamEvent)],
        updates: &mut Vec<Update>,
    ) -> Result<usize, StoreError> {
        for (index, event) in events {
            let Some(envelope) = event.envelope() else {
                continue;
            };
            apply_timeline_event(tx, envelope, updates)
                .await
                .map_err(|error| error.at(*index))?;
        }
        Ok(events.len())
    }
}
