-- The event store for the distributed mode. The `events` and `snapshots` tables have the
-- columns postgres-es reads and writes; `position`, `prev_hash` and `hash` are filled here.
CREATE TABLE events (
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    -- json (not jsonb) keeps the text exactly as written, which the hash chain covers
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    -- insertion order; NOT commit order (see the relay)
    position       bigserial                    NOT NULL UNIQUE,
    prev_hash      text                         NOT NULL DEFAULT '',
    hash           text                         NOT NULL DEFAULT '',
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE TABLE snapshots (
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Write-side look-ups kept in the same transaction as the events (see the SQLite store).
CREATE TABLE directory (
    kind         text NOT NULL,
    key          text NOT NULL,
    aggregate_id text NOT NULL,
    PRIMARY KEY (kind, key)
);

-- The transactional outbox: one row per event, written by the same transaction. The relay
-- publishes rows to Kafka and deletes them; a row that commits late is simply found later.
CREATE TABLE outbox (
    position    bigint      PRIMARY KEY REFERENCES events (position),
    enqueued_at timestamptz NOT NULL DEFAULT now()
);


-- Outbox rows handed to the producer but not yet confirmed and deleted. After a crash, only
-- these can already be on Kafka, so only for them does the relay look at the topics' tails.
CREATE TABLE relay_inflight (
    position bigint PRIMARY KEY
);

CREATE FUNCTION aether_chain_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous text;
BEGIN
    SELECT hash INTO previous FROM events
     WHERE aggregate_type = NEW.aggregate_type
       AND aggregate_id = NEW.aggregate_id
       AND sequence = NEW.sequence - 1;
    NEW.prev_hash := COALESCE(previous, '');
    NEW.hash := encode(sha256(convert_to(
        NEW.prev_hash || E'\n' || NEW.aggregate_type || E'\n' || NEW.aggregate_id || E'\n' ||
        NEW.sequence::text || E'\n' || NEW.event_type || E'\n' || NEW.event_version || E'\n' ||
        NEW.payload::text || E'\n' || NEW.metadata::text, 'UTF8')), 'hex');
    RETURN NEW;
END
$$;

CREATE TRIGGER events_chain BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION aether_chain_event();

CREATE FUNCTION aether_after_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (position) VALUES (NEW.position);
    IF NEW.event_type = 'UserRegistered' THEN
        INSERT INTO directory VALUES ('username', NEW.payload -> 'UserRegistered' ->> 'username', NEW.aggregate_id);
    ELSIF NEW.event_type = 'ChannelCreated' THEN
        INSERT INTO directory VALUES ('channel', NEW.payload -> 'ChannelCreated' ->> 'channel_id', NEW.aggregate_id);
    ELSIF NEW.event_type = 'InviteCreated' THEN
        INSERT INTO directory VALUES ('invite', NEW.payload -> 'InviteCreated' ->> 'code', NEW.aggregate_id);
    END IF;
    -- one wake-up per transaction: identical payloads are folded by PostgreSQL
    PERFORM pg_notify('aether_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_after AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION aether_after_event();
