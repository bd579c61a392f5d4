-- Dedup without a row per record (the per-record insert was most of the database's work):
-- * record_offsets: where each partition of usage.records is counted up to, written in
--   each batch's transaction: a batch redelivered after a crash is known by its offsets;
-- * seen_batches: the record ids of each counted batch, as one text row: what rebuilds
--   the in-memory set of recent ids (which catches a record sent twice, at another
--   offset) after a start or a rebalance. Pruned by `minute` like seen_records was.
CREATE TABLE IF NOT EXISTS record_offsets (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);

CREATE TABLE IF NOT EXISTS seen_batches (
    id         bigserial   PRIMARY KEY,
    minute     timestamptz NOT NULL,
    record_ids text        NOT NULL  -- canonical uuids, space-separated
);
ALTER TABLE seen_batches ALTER COLUMN record_ids SET STORAGE EXTERNAL;  -- uuids do not compress
CREATE INDEX IF NOT EXISTS seen_batches_minute ON seen_batches USING brin (minute);

INSERT INTO seen_batches (minute, record_ids)
    SELECT minute, string_agg(record_id::text, ' ') FROM seen_records GROUP BY minute;
DROP TABLE seen_records;

-- The ids seen, one row each, for whoever asks "was this record counted?".
CREATE VIEW seen_records AS
    SELECT r::uuid AS record_id, b.minute
    FROM seen_batches b, unnest(string_to_array(b.record_ids, ' ')) AS r;
