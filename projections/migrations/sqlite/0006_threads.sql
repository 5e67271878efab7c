-- replies and threads -------------------------------------------------------------------------
-- A message may quote another (`reply_to_id`) and be a reply in a root message's thread
-- (`thread_root_id`, numbered in its thread by `thread_seq`). A thread reply is shown in the
-- channel's own history only when it was also sent there (`in_channel`). A root keeps its
-- thread's summary: how many replies, the last one's time, and who replied (JSON array of user
-- ids, in the order of their first reply). Messages older than threads are none of these, so
-- the defaults are exact.
ALTER TABLE messages ADD COLUMN reply_to_id TEXT;
ALTER TABLE messages ADD COLUMN thread_root_id TEXT;
ALTER TABLE messages ADD COLUMN thread_seq INTEGER;
ALTER TABLE messages ADD COLUMN in_channel INTEGER NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN thread_replies INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN thread_last_reply_at TEXT;
ALTER TABLE messages ADD COLUMN thread_participants TEXT NOT NULL DEFAULT '[]';
CREATE INDEX messages_by_thread ON messages (thread_root_id, thread_seq);
