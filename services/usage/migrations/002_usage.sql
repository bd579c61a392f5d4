-- Per-key usage, the detectors' state, the key read model and the alerts of the usage
-- service. Times are timestamptz; counters are bigint.

-- One row per key and minute of event time (occurred_at), merged by addition.
CREATE TABLE IF NOT EXISTS rollups (
    key_id          uuid             NOT NULL,
    minute          timestamptz      NOT NULL,
    account_id      text             NOT NULL,
    requests        bigint           NOT NULL,
    status_2xx      bigint           NOT NULL,
    status_3xx      bigint           NOT NULL,
    status_4xx      bigint           NOT NULL,
    status_5xx      bigint           NOT NULL,
    auth_failures   bigint           NOT NULL,
    tokens_in       bigint           NOT NULL,
    tokens_out      bigint           NOT NULL,
    latency_sum_ms  double precision NOT NULL,
    latency_max_ms  double precision NOT NULL,
    first_at        timestamptz      NOT NULL,
    last_at         timestamptz      NOT NULL,
    networks        text[]           NOT NULL,
    PRIMARY KEY (key_id, minute)
);

-- Record ids seen within the dedup horizon (event time): a redelivered or re-sent record
-- is recognised in the same transaction that would count it. Pruned by `minute`.
CREATE TABLE IF NOT EXISTS seen_records (
    record_id uuid        PRIMARY KEY,
    minute    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_records_minute ON seen_records USING brin (minute);

-- The detectors' durable state per key; the process keeps a cache of it.
CREATE TABLE IF NOT EXISTS key_activity (
    key_id             uuid             PRIMARY KEY,
    account_id         text             NOT NULL,
    first_used_at      timestamptz      NOT NULL,
    last_used_at       timestamptz      NOT NULL,
    last_failure_at    timestamptz,
    baseline_mean      double precision NOT NULL,
    baseline_var       double precision NOT NULL,
    baseline_minutes   integer          NOT NULL,
    folded_through     bigint           NOT NULL,
    networks_unbounded boolean          NOT NULL DEFAULT false,
    updated_at         timestamptz      NOT NULL DEFAULT now()
);

-- Source networks (/24, /48) each key was seen from, up to a bound per key.
CREATE TABLE IF NOT EXISTS key_networks (
    key_id        uuid        NOT NULL,
    network       text        NOT NULL,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (key_id, network)
);

-- The usage service's own view of each key, folded from keys.events.
CREATE TABLE IF NOT EXISTS key_directory (
    key_id              uuid        PRIMARY KEY,
    account_id          text        NOT NULL,
    name                text,
    environment         text,
    rate_limit_per_hour bigint,
    status              text        NOT NULL,
    status_since        timestamptz NOT NULL,
    previous_status     text        NOT NULL,
    created_at          timestamptz,
    expires_at          timestamptz,
    version             bigint      NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Alerts, also the outbox of usage.alerts: published_at is set once the broker has it.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id     uuid        PRIMARY KEY,
    key_id       uuid        NOT NULL,
    account_id   text        NOT NULL,
    kind         text        NOT NULL,
    severity     text        NOT NULL,
    detected_at  timestamptz NOT NULL,
    body         jsonb       NOT NULL,
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS alerts_account_detected
    ON alerts (account_id, detected_at DESC, alert_id DESC);
CREATE INDEX IF NOT EXISTS alerts_unpublished ON alerts (detected_at) WHERE published_at IS NULL;

-- DisableKey commands of the containment policy (outbox of keys.commands).
CREATE TABLE IF NOT EXISTS containment_commands (
    command_id uuid        PRIMARY KEY,
    alert_id   uuid        NOT NULL REFERENCES alerts (alert_id),
    key_id     uuid        NOT NULL,
    body       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX IF NOT EXISTS containment_unsent ON containment_commands (created_at)
    WHERE sent_at IS NULL;
