-- The append path without a rewrite of every event row (issue 14).
--
-- Before: the sequencer gave each committed event its position with an UPDATE of the event
-- row (a new version of the whole row, an entry in each of its indexes, a trigger comparing
-- the two versions as JSON), which cost PostgreSQL more than the append itself. Now:
--   event_rows         the event rows, written once by the append, never changed;
--   events_unsequenced the ids of committed events not sequenced yet, a small work queue
--                      filled by the append's own statement (so only committed events are
--                      ever visible in it) and emptied by the sequencer;
--   event_positions    (position, event_row): the global order, appended by the sequencer;
--   events             a view with the former table's columns (position NULL until
--                      sequenced), for every reader: stream, history, rebuild, tests, ops.
ALTER TABLE events RENAME TO event_rows;
DROP INDEX IF EXISTS events_unsequenced;

CREATE TABLE event_positions (
    position  bigint PRIMARY KEY CHECK (position >= 1),
    event_row bigint NOT NULL UNIQUE
);
INSERT INTO event_positions (position, event_row)
    SELECT position, id FROM event_rows WHERE position IS NOT NULL;

CREATE TABLE events_unsequenced (event_row bigint PRIMARY KEY);
INSERT INTO events_unsequenced (event_row) SELECT id FROM event_rows WHERE position IS NULL;

-- Nothing updates an event row any more: the trigger refuses every UPDATE and DELETE.
DROP TRIGGER IF EXISTS events_append_only ON event_rows;
DROP TRIGGER IF EXISTS events_no_truncate ON event_rows;
CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only (% on % refused)', TG_OP, TG_TABLE_NAME;
END $$;
ALTER TABLE event_rows DROP COLUMN position;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON event_rows
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON event_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
-- A position, once given, is never moved or taken back.
CREATE TRIGGER event_positions_append_only BEFORE UPDATE OR DELETE ON event_positions
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER event_positions_no_truncate BEFORE TRUNCATE ON event_positions
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

CREATE VIEW events AS
    SELECT r.id, r.event_id, r.key_id, r.account_id, r.stream_version, p.position,
        r.event_type, r.schema_version, r.occurred_at, r.actor, r.correlation_id,
        r.causation_id, r.data, r.secret_hash
    FROM event_rows r LEFT JOIN event_positions p ON p.event_row = r.id;
