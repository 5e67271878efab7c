-- bans --------------------------------------------------------------------------------------------
-- Who is banned from each server, by whom, why and when; a lifted ban is deleted.
CREATE TABLE bans (
    server_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    banned_by TEXT NOT NULL,
    reason    TEXT,
    banned_at TEXT NOT NULL,
    PRIMARY KEY (server_id, user_id)
);
