-- Read models, written in the same transaction as the append and rebuildable from the
-- events alone (`python -m services.keys.cli rebuild-projections`).
CREATE TABLE IF NOT EXISTS key_state (
    key_id               uuid        PRIMARY KEY,
    account_id           text        NOT NULL,
    name                 text        NOT NULL,
    description          text,
    environment          text        NOT NULL,
    scopes               text[]      NOT NULL,
    rate_limit_per_hour  integer,
    expires_at           timestamptz,
    prefix               text        NOT NULL,
    status               text        NOT NULL,
    disabled_reason      text,
    grace_period_ends_at timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    version              integer     NOT NULL
);
CREATE INDEX IF NOT EXISTS key_state_by_account ON key_state (account_id, created_at DESC, key_id DESC);
CREATE INDEX IF NOT EXISTS key_state_due_to_expire ON key_state (expires_at)
    WHERE status IN ('active', 'disabled') AND expires_at IS NOT NULL;

-- Lookup by keyed hash of the presented secret. A rotated-out secret keeps its row with
-- valid_until (end of its grace period), so a late use is recognised and refused.
CREATE TABLE IF NOT EXISTS key_lookup (
    secret_hash bytea       PRIMARY KEY,
    key_id      uuid        NOT NULL,
    valid_until timestamptz
);
CREATE INDEX IF NOT EXISTS key_lookup_by_key ON key_lookup (key_id);

-- Not projections (not derivable from events), so a rebuild leaves them alone:
-- the sealed secret (AES-256-GCM; destroyed on revoke) ...
CREATE TABLE IF NOT EXISTS key_vault (
    key_id    uuid        PRIMARY KEY,
    sealed    bytea       NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
);
-- ... and when a key was last verified successfully (operational, updated in batches).
CREATE TABLE IF NOT EXISTS key_last_used (
    key_id       uuid        PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
