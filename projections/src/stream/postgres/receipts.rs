//! The receipts read model in PostgreSQL: read pointers and what each member has not read. The
//! statements are the embedded store's (`crate::receipts`); only the tables are PostgreSQL's.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgProjection;
pub use crate::receipts::ReceiptsProjection;
use crate::receipts::{apply_receipts_event, RECEIPTS_TABLES};
use crate::stream::source::StreamEvent;
use crate::stream::store::StoreError;
use crate::updates::Update;

#[async_trait]
impl PgProjection for ReceiptsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn ddl(&self) -> &'static str {
        r#"
CREATE TABLE IF NOT EXISTS receipt_messages (
    message_id TEXT    PRIMARY KEY,
    channel_id TEXT    NOT NULL,
    seq        BIGINT  NOT NULL,
    author_id  TEXT    NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT false,
    UNIQUE (channel_id, seq)
);
CREATE TABLE IF NOT EXISTS receipt_mentions (
    message_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX IF NOT EXISTS receipt_mentions_by_user ON receipt_mentions (user_id, channel_id);
CREATE TABLE IF NOT EXISTS read_pointers (
    user_id       TEXT        NOT NULL,
    channel_id    TEXT        NOT NULL,
    last_read_seq BIGINT      NOT NULL,
    message_id    TEXT        NOT NULL,
    read_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);
-- Added with thread replies kept out of a channel's unread count (migration 0014).
ALTER TABLE receipt_messages ADD COLUMN IF NOT EXISTS in_channel BOOLEAN NOT NULL DEFAULT true;
"#
    }

    fn dump_queries(&self) -> &'static [(&'static str, &'static str)] {
        RECEIPTS_TABLES
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
            apply_receipts_event(tx, envelope)
                .await
                .map_err(|error| error.at(*index))?;
        }
        Ok(events.len())
    }
}
