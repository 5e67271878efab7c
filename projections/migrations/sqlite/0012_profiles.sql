-- A profile picture (a URL) and a status text, set with `updateProfile`; none until then.
ALTER TABLE users ADD COLUMN avatar_url TEXT;
ALTER TABLE users ADD COLUMN status_text TEXT;
