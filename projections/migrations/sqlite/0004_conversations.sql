-- direct conversations ---------------------------------------------------------------------------
-- A conversation is a channel outside any server: its messages live in `messages` and
-- `channel_events` like a channel's, with no server.
CREATE TABLE conversations (
    id        TEXT PRIMARY KEY,
    opened_by TEXT NOT NULL,
    opened_at TEXT NOT NULL
);

CREATE TABLE conversation_participants (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_participants_by_user ON conversation_participants (user_id);

-- A message in a conversation has no server: `messages.server_id` becomes nullable (SQLite
-- changes a column's constraints only by rebuilding the table).
CREATE TABLE messages_next (
    id          TEXT    PRIMARY KEY,
    channel_id  TEXT    NOT NULL,
    server_id   TEXT,
    author_id   TEXT    NOT NULL,
    body        TEXT,
    created_at  TEXT    NOT NULL,
    edited_at   TEXT,
    deleted     INTEGER NOT NULL DEFAULT 0,
    -- the message's place in its channel, from 1
    channel_seq INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    -- JSON array of {body, replaced_at}: every earlier body, oldest first
    edits       TEXT    NOT NULL DEFAULT '[]',
    UNIQUE (channel_id, channel_seq)
);
INSERT INTO messages_next SELECT id, channel_id, server_id, author_id, body, created_at, edited_at,
    deleted, channel_seq, version, edits FROM messages;
DROP TABLE messages;
ALTER TABLE messages_next RENAME TO messages;
