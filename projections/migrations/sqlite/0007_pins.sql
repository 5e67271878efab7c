-- pins ----------------------------------------------------------------------------------------
-- Who pinned a message in its channel, and when; NULL while it is not pinned. Messages older
-- than pins were never pinned, so NULL is exact for them.
ALTER TABLE messages ADD COLUMN pinned_by TEXT;
ALTER TABLE messages ADD COLUMN pinned_at TEXT;
CREATE INDEX messages_pinned ON messages (channel_id, pinned_at);
