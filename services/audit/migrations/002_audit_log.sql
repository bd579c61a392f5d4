-- The audit log: one record per source message, hash-chained per account.
--
-- Who may do what: the service connects as the owner of these tables (it runs the
-- migrations) and then acts as `audit_writer`, which may only INSERT and SELECT the records,
-- checkpoints and retention anchors. Retention (services.audit.cli apply-retention) runs as
-- the owner. Triggers refuse UPDATE and TRUNCATE to everyone, and DELETE outside retention.
-- None of this stops a superuser; the hash chain is what shows that someone did it.

-- The records' unique source id is the inbox of this service; the offsets table of the
-- service shell (001) is not needed.
DROP TABLE IF EXISTS consumed_messages;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_writer') THEN
        CREATE ROLE audit_writer NOLOGIN;
    END IF;
END $$;
-- The owner must be a member to act as the role (SET ROLE); a superuser is one already.
GRANT audit_writer TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO audit_writer;

CREATE TABLE IF NOT EXISTS audit_records (
    account_id       text        NOT NULL,  -- the chain; '_unattributed' when unknown
    seq              bigint      NOT NULL CHECK (seq >= 1),  -- 1, 2, 3... per chain, no gaps
    audit_id         uuid        NOT NULL,
    source_id        text        NOT NULL,  -- event:<id>, result:<command id>, alert:<id>
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL,
    actor_type       text,
    actor_id         text,
    actor_ip         text,
    actor_user_agent text,
    action           text        NOT NULL,  -- key.created, command.rejected, alert.raised...
    key_id           uuid,
    key_name         text,                  -- the key's name when it happened
    outcome          text        NOT NULL,  -- success | failure
    correlation_id   text,
    causation_id     text,
    details          json        NOT NULL,  -- json, not jsonb: hashed as the exact text
    prev_hash        bytea       NOT NULL,  -- hash of record seq - 1 (or the retention anchor)
    hash             bytea       NOT NULL,  -- HMAC-SHA-256 of the canonical content
    PRIMARY KEY (account_id, seq),
    CONSTRAINT audit_records_source_unique UNIQUE (source_id)
);
-- Newest first, per account, with the filters of GET /v1/audit/events.
CREATE INDEX IF NOT EXISTS audit_records_by_time
    ON audit_records (account_id, occurred_at, seq);
CREATE INDEX IF NOT EXISTS audit_records_by_key
    ON audit_records (account_id, key_id, occurred_at, seq) WHERE key_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_records_by_actor
    ON audit_records (account_id, actor_id, occurred_at, seq);
CREATE INDEX IF NOT EXISTS audit_records_by_action
    ON audit_records (account_id, action, occurred_at, seq);

-- The end of each chain: locked FOR UPDATE by whoever appends, so two audit processes
-- writing the same account's chain take turns.
CREATE TABLE IF NOT EXISTS audit_chain_heads (
    account_id text        PRIMARY KEY,
    seq        bigint      NOT NULL CHECK (seq >= 0),
    hash       bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Signed statements "chain X had reached record N with hash H at time T": a chain cut
-- short after a checkpoint no longer reaches it.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    account_id text        NOT NULL,
    seq        bigint      NOT NULL,
    hash       bytea       NOT NULL,
    signed_at  timestamptz NOT NULL,
    signature  bytea       NOT NULL,
    PRIMARY KEY (account_id, seq)
);

-- Where retention cut each chain: signed, so the first remaining record can be checked
-- against the hash of the last removed one.
CREATE TABLE IF NOT EXISTS audit_retention_anchors (
    account_id    text        NOT NULL,
    through_seq   bigint      NOT NULL,
    through_hash  bytea       NOT NULL,
    removed_count bigint      NOT NULL,
    cutoff        timestamptz NOT NULL,
    applied_at    timestamptz NOT NULL,
    signature     bytea       NOT NULL,
    PRIMARY KEY (account_id, through_seq)
);

-- The current name of each key, so records about a key carry the name it had then.
CREATE TABLE IF NOT EXISTS audit_key_names (
    key_id         uuid   PRIMARY KEY,
    account_id     text   NOT NULL,
    name           text   NOT NULL,
    stream_version bigint NOT NULL
);

CREATE OR REPLACE FUNCTION audit_history_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('audit.retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit history is append-only (% on % refused)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

DO $$
DECLARE
    history text;
BEGIN
    FOREACH history IN ARRAY ARRAY['audit_records', 'audit_checkpoints', 'audit_retention_anchors']
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS append_only ON %I', history);
        EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON %I'
                       ' FOR EACH ROW EXECUTE FUNCTION audit_history_is_append_only()', history);
        EXECUTE format('DROP TRIGGER IF EXISTS no_truncate ON %I', history);
        EXECUTE format('CREATE TRIGGER no_truncate BEFORE TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION audit_history_is_append_only()',
                       history);
        EXECUTE format('REVOKE ALL ON %I FROM audit_writer', history);
    END LOOP;
END $$;

GRANT SELECT, INSERT ON audit_records, audit_checkpoints TO audit_writer;
GRANT SELECT ON audit_retention_anchors TO audit_writer;
GRANT SELECT, INSERT, UPDATE ON audit_chain_heads, audit_key_names TO audit_writer;
