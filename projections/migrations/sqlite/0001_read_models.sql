-- Projector bookkeeping: the checkpoint (last log position applied) and, per aggregate, the last
-- sequence applied. Both are written in the same transaction as the read-model rows.
CREATE TABLE projector_checkpoints (
    projection TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at TEXT    NOT NULL
);

CREATE TABLE projector_versions (
    projection   TEXT    NOT NULL,
    aggregate_id TEXT    NOT NULL,
    sequence     INTEGER NOT NULL,
    PRIMARY KEY (projection, aggregate_id)
);

-- catalog -------------------------------------------------------------------------------------
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    registered_at TEXT NOT NULL
);

CREATE TABLE servers (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    owner_id   TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE channels (
    id        TEXT    PRIMARY KEY,
    server_id TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    private   INTEGER NOT NULL,
    archived  INTEGER NOT NULL DEFAULT 0,
    position  INTEGER NOT NULL
);
CREATE INDEX channels_by_server ON channels (server_id, position);

CREATE TABLE members (
    server_id TEXT    NOT NULL,
    user_id   TEXT    NOT NULL,
    role      TEXT    NOT NULL,
    joined_at TEXT    NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (server_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id);
CREATE INDEX members_by_position ON members (server_id, position);

CREATE TABLE invites (
    code       TEXT    PRIMARY KEY,
    server_id  TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    max_uses   INTEGER,
    uses       INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT,
    revoked    INTEGER NOT NULL DEFAULT 0
);

-- timeline ------------------------------------------------------------------------------------
CREATE TABLE messages (
    id          TEXT    PRIMARY KEY,
    channel_id  TEXT    NOT NULL,
    server_id   TEXT    NOT NULL,
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

-- Every change to a channel's messages, numbered per channel: what `channelEvents` resumes from.
CREATE TABLE channel_events (
    channel_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    PRIMARY KEY (channel_id, seq)
);

CREATE TABLE channel_heads (
    channel_id   TEXT PRIMARY KEY,
    last_event   INTEGER NOT NULL,
    last_message INTEGER NOT NULL
);
