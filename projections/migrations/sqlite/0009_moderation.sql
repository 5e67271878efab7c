-- moderation ----------------------------------------------------------------------------------
-- What a server shows its members of its moderation settings (catalog). Servers older than
-- these columns never chose: ALLOW and the default threshold (NULL) are exact for them once the
-- catalog is rebuilt from the log.
ALTER TABLE servers ADD COLUMN content_policy TEXT NOT NULL DEFAULT 'ALLOW';
ALTER TABLE servers ADD COLUMN moderation_threshold TEXT;
-- A message's review (timeline): its flag, reports and whether it is hidden, as JSON; NULL
-- while nobody flagged or reported it. `review_open` is 1 while it waits in its server's
-- moderation queue.
ALTER TABLE messages ADD COLUMN moderation TEXT;
ALTER TABLE messages ADD COLUMN review_open INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_review_queue ON messages (server_id, review_open, id);
