-- Less work per written event, same rows written (measured on 20,000 events in one statement:
-- 40 µs of triggers per event before, 20 µs after; the insert alone is 13 µs).

-- The outbox is filled only by the trigger below, from the row being inserted, and events are
-- never deleted: the foreign key protected nothing, yet locked every event row it checked.
ALTER TABLE outbox DROP CONSTRAINT outbox_position_fkey;

-- The first event of an aggregate (sequence 1; cqrs-es counts from 1) has no predecessor to
-- look up. Every `sendMessage` writes the first event of a new message.
CREATE OR REPLACE FUNCTION aether_chain_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous text;
BEGIN
    IF NEW.sequence > 1 THEN
        SELECT hash INTO previous FROM events
         WHERE aggregate_type = NEW.aggregate_type
           AND aggregate_id = NEW.aggregate_id
           AND sequence = NEW.sequence - 1;
    END IF;
    NEW.prev_hash := COALESCE(previous, '');
    NEW.hash := encode(sha256(convert_to(
        NEW.prev_hash || E'\n' || NEW.aggregate_type || E'\n' || NEW.aggregate_id || E'\n' ||
        NEW.sequence::text || E'\n' || NEW.event_type || E'\n' || NEW.event_version || E'\n' ||
        NEW.payload::text || E'\n' || NEW.metadata::text, 'UTF8')), 'hex');
    RETURN NEW;
END
$$;

-- The outbox rows, directory entries and wake-up of a whole statement at once, from its
-- transition table, instead of a PL/pgSQL call per row. A taken directory key still fails the
-- statement, and with it the command.
DROP TRIGGER events_after ON events;
DROP FUNCTION aether_after_event();

CREATE FUNCTION aether_after_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (position) SELECT position FROM new_events;
    INSERT INTO directory
        SELECT 'username', payload -> 'UserRegistered' ->> 'username', aggregate_id
          FROM new_events WHERE event_type = 'UserRegistered'
        UNION ALL
        SELECT 'channel', payload -> 'ChannelCreated' ->> 'channel_id', aggregate_id
          FROM new_events WHERE event_type = 'ChannelCreated'
        UNION ALL
        SELECT 'invite', payload -> 'InviteCreated' ->> 'code', aggregate_id
          FROM new_events WHERE event_type = 'InviteCreated';
    -- one wake-up per transaction: identical payloads are folded by PostgreSQL
    PERFORM pg_notify('aether_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_after AFTER INSERT ON events REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION aether_after_events();
