-- Webhooks (docs/webhooks.md): where an account's alerts are delivered, and one delivery
-- per webhook and alert (its primary key makes a redelivered alert the same delivery).
CREATE TABLE IF NOT EXISTS webhooks (
    webhook_id     uuid        PRIMARY KEY,
    account_id     text        NOT NULL,
    url            text        NOT NULL,
    kinds          text[]      NOT NULL,  -- empty: every kind
    min_severity   text        NOT NULL,
    min_rank       smallint    NOT NULL,  -- info 0, warning 1, critical 2
    -- The signing secret: stored as given, as the service signs with it (the usage
    -- service has no key-encryption key); never logged, never on a topic.
    secret         text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    failing_since  timestamptz,           -- first failure since the last success
    disabled_at    timestamptz
);
CREATE INDEX IF NOT EXISTS webhooks_by_account ON webhooks (account_id, created_at DESC);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    webhook_id       uuid        NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    alert_id         uuid        NOT NULL,
    kind             text        NOT NULL,
    severity         text        NOT NULL,
    body             bytea       NOT NULL,  -- the alert exactly as on usage.alerts
    status           text        NOT NULL DEFAULT 'pending',  -- pending|delivered|failed
    attempts         integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_status_code integer,
    last_error       text,
    PRIMARY KEY (webhook_id, alert_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_log
    ON webhook_deliveries (webhook_id, created_at DESC, alert_id DESC);
