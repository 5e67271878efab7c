-- The embedded event store. `position` is the log: SQLite has one writer at a time, so positions
-- become visible in exactly the order they were assigned (commit order), and projectors tail
-- this table by position.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    sequence       INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    event_version  TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    -- the per-aggregate hash chain (see aether_schemas::audit)
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

CREATE TABLE snapshots (
    aggregate_type   TEXT    NOT NULL,
    aggregate_id     TEXT    NOT NULL,
    last_sequence    INTEGER NOT NULL,
    snapshot_version INTEGER NOT NULL,
    payload          TEXT    NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Write-side look-ups that commands need before they know which aggregate to load: a username's
-- account, a channel's server, an invite code's server. Filled by triggers in the same
-- transaction as the event, so they are never ahead of or behind the store; the primary key
-- makes usernames unique even under concurrent registrations.
CREATE TABLE directory (
    kind         TEXT NOT NULL,
    key          TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);

CREATE TRIGGER directory_username AFTER INSERT ON events
WHEN NEW.event_type = 'UserRegistered'
BEGIN
    INSERT INTO directory (kind, key, aggregate_id)
    VALUES ('username', json_extract(NEW.payload, '$.UserRegistered.username'), NEW.aggregate_id);
END;

CREATE TRIGGER directory_channel AFTER INSERT ON events
WHEN NEW.event_type = 'ChannelCreated'
BEGIN
    INSERT INTO directory (kind, key, aggregate_id)
    VALUES ('channel', json_extract(NEW.payload, '$.ChannelCreated.channel_id'), NEW.aggregate_id);
END;

CREATE TRIGGER directory_invite AFTER INSERT ON events
WHEN NEW.event_type = 'InviteCreated'
BEGIN
    INSERT INTO directory (kind, key, aggregate_id)
    VALUES ('invite', json_extract(NEW.payload, '$.InviteCreated.code'), NEW.aggregate_id);
END;
