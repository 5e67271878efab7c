//! The catalog read model in PostgreSQL: users, servers, channels, members, invites, bans and
//! direct conversations. The statements are the embedded store's (`crate::catalog`); only the
//! tables are PostgreSQL's.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgProjection;
use crate::catalog::apply_catalog_event;
pub use crate::catalog::CatalogProjection;
use crate::stream::source::StreamEvent;
use crate::stream::store::StoreError;
use crate::updates::Update;

#[async_trait]
impl PgProjection for CatalogProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn ddl(&self) -> &'static str {
        r#"
CREATE TABLE IF NOT EXISTS users (
    id            TEXT        PRIMARY KEY,
    username      TEXT        NOT NULL UNIQUE,
    display_name  TEXT        NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS servers (
    id         TEXT        PRIMARY KEY,
    name       TEXT        NOT NULL,
    owner_id   TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
-- Added with moderation (see the embedded store's migration 0009): NULL = the default
-- threshold (a decimal number as text, as the embedded store keeps it).
ALTER TABLE servers ADD COLUMN IF NOT EXISTS content_policy TEXT NOT NULL DEFAULT 'ALLOW';
ALTER TABLE servers ADD COLUMN IF NOT EXISTS moderation_threshold TEXT;
CREATE TABLE IF NOT EXISTS channels (
    id        TEXT    PRIMARY KEY,
    server_id TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    private   BOOLEAN NOT NULL,
    archived  BOOLEAN NOT NULL DEFAULT false,
    position  BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS channels_by_server ON channels (server_id, position);
CREATE TABLE IF NOT EXISTS members (
    server_id TEXT        NOT NULL,
    user_id   TEXT        NOT NULL,
    role      TEXT        NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL,
    position  BIGINT      NOT NULL,
    PRIMARY KEY (server_id, user_id)
);
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id);
CREATE TABLE IF NOT EXISTS invites (
    code       TEXT        PRIMARY KEY,
    server_id  TEXT        NOT NULL,
    created_by TEXT        NOT NULL,
    max_uses   BIGINT,
    uses       INTEGER     NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ,
    revoked    BOOLEAN     NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS bans (
    server_id TEXT        NOT NULL,
    user_id   TEXT        NOT NULL,
    banned_by TEXT        NOT NULL,
    reason    TEXT,
    banned_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (server_id, user_id)
);
CREATE TABLE IF NOT EXISTS conversations (
    id        TEXT        PRIMARY KEY,
    opened_by TEXT        NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS conversation_participants (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX IF NOT EXISTS conversation_participants_by_user
    ON conversation_participants (user_id);
-- Added with group conversations (see the embedded store's migration 0011): a group's name
-- and owner. A projection rebuilt from the log fills them from the start.
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS is_group BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS name TEXT;
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS owner_id TEXT;
-- Added with profile pictures and statuses (migration 0012).
ALTER TABLE users ADD COLUMN IF NOT EXISTS avatar_url TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS status_text TEXT;
-- Added with blocking (migration 0013).
CREATE TABLE IF NOT EXISTS blocks (
    user_id    TEXT        NOT NULL,
    blocked_id TEXT        NOT NULL,
    blocked_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
-- Added with channel topics, categories and server events (see the embedded store's
-- migration 0008).
ALTER TABLE channels ADD COLUMN IF NOT EXISTS topic TEXT;
ALTER TABLE channels ADD COLUMN IF NOT EXISTS category TEXT;
CREATE TABLE IF NOT EXISTS server_events (
    server_id   TEXT        NOT NULL,
    seq         BIGINT      NOT NULL,
    kind        TEXT        NOT NULL,
    channel_id  TEXT,
    private     BOOLEAN     NOT NULL,
    data        TEXT        NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (server_id, seq)
);
"#
    }

    fn dump_queries(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("users", "SELECT * FROM users ORDER BY id"),
            ("servers", "SELECT * FROM servers ORDER BY id"),
            ("channels", "SELECT * FROM channels ORDER BY id"),
            (
                "members",
                "SELECT * FROM members ORDER BY server_id, user_id",
            ),
            ("invites", "SELECT * FROM invites ORDER BY code"),
            ("bans", "SELECT * FROM bans ORDER BY server_id, user_id"),
            (
                "blocks",
                "SELECT * FROM blocks ORDER BY user_id, blocked_id",
            ),
            ("conversations", "SELECT * FROM conversations ORDER BY id"),
            (
                "conversation_participants",
                "SELECT * FROM conversation_participants ORDER BY conversation_id, user_id",
            ),
            (
                "server_events",
                "SELECT * FROM server_events ORDER BY server_id, seq",
            ),
        ]
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
            // Channels and members of a server are ranked by the server's own sequence.
            apply_catalog_event(tx, envelope, event.sequence(), updates)
                .await
                .map_err(|error| error.at(*index))?;
        }
        Ok(events.len())
    }
}
