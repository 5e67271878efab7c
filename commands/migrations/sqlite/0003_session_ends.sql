-- The application reads the recent session ends when it starts (an access token of an ended
-- session is refused): this index holds only those events, so the read does not scan the log.
CREATE INDEX events_session_ends ON events (position)
    WHERE event_type IN ('SessionEnded', 'AllSessionsEnded');
