-- Enforced limits (docs/limits.md): each key's limits in the read model, the limit
-- counter's counts in each key's current windows, its consumed positions and record ids,
-- and each key's limit state (also the outbox of usage.limits).

ALTER TABLE key_directory
    ADD COLUMN IF NOT EXISTS rate_limit_per_minute bigint,
    ADD COLUMN IF NOT EXISTS rate_limit_per_day    bigint,
    ADD COLUMN IF NOT EXISTS token_budget          bigint,
    ADD COLUMN IF NOT EXISTS token_budget_period   text;

-- Each key's newest window of every span, in event time, and what it counted: requests
-- (refusals excluded) per minute, hour and day, tokens per day and month. Starts are
-- epoch seconds (UTC). One row per key: a batch merges into it in one statement.
CREATE TABLE IF NOT EXISTS limit_windows (
    key_id          uuid   PRIMARY KEY,
    minute_start    bigint NOT NULL,
    minute_requests bigint NOT NULL,
    hour_start      bigint NOT NULL,
    hour_requests   bigint NOT NULL,
    day_start       bigint NOT NULL,
    day_requests    bigint NOT NULL,
    day_tokens      bigint NOT NULL,
    month_start     bigint NOT NULL,
    month_tokens    bigint NOT NULL
);

-- The next offset of usage.records the limit counter takes, per partition, written in the
-- transaction of the counts: a batch redelivered after a crash is recognised by position.
CREATE TABLE IF NOT EXISTS limit_offsets (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- The record ids each batch counted (space-separated), so the in-memory dedup of a
-- partition is rebuilt after a restart or a rebalance; pruned by event minute.
CREATE TABLE IF NOT EXISTS limit_seen (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    last_offset bigint  NOT NULL,
    minute      bigint  NOT NULL,
    record_ids  text    NOT NULL,
    PRIMARY KEY (topic, partition, last_offset)
);

-- Each limited key's state (the LimitState JSON in body); pending rows are still to be
-- published to usage.limits, urgent ones (a change of state) at once.
CREATE TABLE IF NOT EXISTS limit_states (
    key_id       uuid        PRIMARY KEY,
    account_id   text        NOT NULL,
    state        text        NOT NULL,
    limit_name   text,
    until        timestamptz,
    as_of        timestamptz NOT NULL,
    body         text        NOT NULL,
    revision     bigint      NOT NULL DEFAULT 1,
    pending      boolean     NOT NULL DEFAULT true,
    urgent       boolean     NOT NULL DEFAULT false,
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS limit_states_pending ON limit_states (key_id) WHERE pending;
CREATE INDEX IF NOT EXISTS limit_states_limited ON limit_states (until) WHERE state <> 'clear';
