-- The event store: every change to every key, append-only.
--   id        insert order (internal);
--   position  the global order of commits, given by the sequencer after the append has
--             committed (NULL until then), so a reader that has seen position N has seen
--             every event before it: an append that commits late is never skipped;
--   (key_id, stream_version) unique: a stale expected version is a conflict, never an
--             overwrite.
CREATE TABLE IF NOT EXISTS events (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    key_id         uuid        NOT NULL,
    account_id     text        NOT NULL,
    stream_version integer     NOT NULL CHECK (stream_version >= 1),
    position       bigint      UNIQUE,
    event_type     text        NOT NULL,
    schema_version smallint    NOT NULL DEFAULT 1,
    occurred_at    timestamptz NOT NULL,
    actor          jsonb       NOT NULL,
    correlation_id text,
    causation_id   text,
    data           jsonb       NOT NULL,
    -- HMAC of the new secret (KeyCreated, KeyRotated): lets the lookup read model be
    -- rebuilt from events alone. Never published; never the secret itself.
    secret_hash    bytea,
    UNIQUE (key_id, stream_version)
);
CREATE INDEX IF NOT EXISTS events_unsequenced ON events (id) WHERE position IS NULL;

-- Append-only, enforced by the database: no DELETE, no TRUNCATE, and the only UPDATE
-- allowed is the sequencer giving an event its position, once.
CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.position IS NULL AND NEW.position IS NOT NULL
       AND (to_jsonb(NEW) - 'position') = (to_jsonb(OLD) - 'position') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP;
END $$;
DROP TRIGGER IF EXISTS events_append_only ON events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
DROP TRIGGER IF EXISTS events_no_truncate ON events;
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- How far the publisher has put events on Kafka (at-least-once: it resumes here).
CREATE TABLE IF NOT EXISTS publisher_checkpoint (
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);

-- Commands taken from keys.commands, with their result: command_id is the idempotency key.
CREATE TABLE IF NOT EXISTS processed_commands (
    command_id   uuid        PRIMARY KEY,
    account_id   text        NOT NULL,
    command_type text        NOT NULL,
    result       jsonb       NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
