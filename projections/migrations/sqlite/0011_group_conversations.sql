-- Group conversations change people and names after they open: a group (opened with three or
-- more people) has a name (none until someone names it) and an owner (its opener, then whoever
-- took over). Groups opened before this migration are the conversations of more than two.
ALTER TABLE conversations ADD COLUMN is_group INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN name TEXT;
ALTER TABLE conversations ADD COLUMN owner_id TEXT;
UPDATE conversations SET owner_id = opened_by;
UPDATE conversations SET is_group = 1 WHERE
    (SELECT count(*) FROM conversation_participants p WHERE p.conversation_id = conversations.id) > 2;
