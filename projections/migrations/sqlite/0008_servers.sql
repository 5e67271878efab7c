-- servers and channels ------------------------------------------------------------------------
-- A channel's topic and the category it is listed under; NULL when it has none (channels older
-- than topics and categories never had one, so NULL is exact for them).
ALTER TABLE channels ADD COLUMN topic TEXT;
ALTER TABLE channels ADD COLUMN category TEXT;

-- Each server's news as `serverEvents` tells it, numbered per server from 1 with no gap (a
-- subscriber resumes after the last number it saw). Kept when the server is deleted: its last
-- event says so.
CREATE TABLE server_events (
    server_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    channel_id  TEXT,
    private     INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    occurred_at TEXT    NOT NULL,
    PRIMARY KEY (server_id, seq)
);
