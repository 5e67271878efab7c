-- reactions -----------------------------------------------------------------------------------
-- JSON array of {emoji, users}: each emoji in the order it was first used, its people in the
-- order they reacted. Messages older than reactions have none, so the default is exact.
ALTER TABLE messages ADD COLUMN reactions TEXT NOT NULL DEFAULT '[]';

-- The reaction a `ReactionChanged` change is about (JSON {user_id, emoji, added}); NULL for the
-- other kinds.
ALTER TABLE channel_events ADD COLUMN reaction TEXT;
