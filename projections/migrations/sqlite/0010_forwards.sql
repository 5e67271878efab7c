-- Forwards: a message may forward another, whose origin (message, channel or conversation,
-- server, author, time) it keeps as JSON. Messages sent before forwards existed forward nothing.
ALTER TABLE messages ADD COLUMN forwarded_from TEXT;
