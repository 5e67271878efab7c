-- receipts ------------------------------------------------------------------------------------
-- Each channel's messages numbered in log order, whether deleted, and whom they mention: enough
-- to count what a member has not read yet. Read pointers only ever move forward.
CREATE TABLE receipt_messages (
    message_id TEXT    PRIMARY KEY,
    channel_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    author_id  TEXT    NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (channel_id, seq)
);

CREATE TABLE receipt_mentions (
    message_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX receipt_mentions_by_user ON receipt_mentions (user_id, channel_id);

CREATE TABLE read_pointers (
    user_id       TEXT    NOT NULL,
    channel_id    TEXT    NOT NULL,
    last_read_seq INTEGER NOT NULL,
    message_id    TEXT    NOT NULL,
    read_at       TEXT    NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);
