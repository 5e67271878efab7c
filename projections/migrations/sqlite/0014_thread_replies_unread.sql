-- A thread reply not also sent to the channel is not unread in the channel (it is read in its
-- thread); a mention in it still counts. Rows from before this migration count as shown.
ALTER TABLE receipt_messages ADD COLUMN in_channel BOOLEAN NOT NULL DEFAULT TRUE;
