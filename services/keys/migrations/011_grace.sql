-- Rotation that ends itself (docs/rotation.md): a rotation's grace period may end early once
-- its old secret has been quiet for end_grace_when_quiet_seconds. The read model keeps what
-- the grace scheduler needs to find such keys; the old secret's last use is operational
-- (not derivable from events), like key_last_used, so a rebuild leaves it alone.
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS rotated_at timestamptz;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS previous_prefix text;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS end_grace_when_quiet_seconds integer;
CREATE INDEX IF NOT EXISTS key_state_grace_ends_when_quiet ON key_state (grace_period_ends_at)
    WHERE end_grace_when_quiet_seconds IS NOT NULL;

CREATE TABLE IF NOT EXISTS previous_secret_last_used (
    key_id       uuid        PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
