-- Who blocked whom (`blockUser`): the blocked person's messages are hidden from the blocker.
CREATE TABLE blocks (
    user_id    TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    blocked_at TEXT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
