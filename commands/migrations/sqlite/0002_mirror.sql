-- When this database mirrors the Kafka log (an API instance in the distributed mode), the next
-- offset to read per topic partition, written in the same transaction as the mirrored events.
CREATE TABLE mirror_offsets (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
