-- Warnings ahead of deadlines (docs/usage-detectors.md, "Expiry and grace warnings").
-- Each account's key_expiring lead time in days (default: USAGE_KEY_EXPIRING_DAYS, 7).
CREATE TABLE IF NOT EXISTS alert_settings (
    account_id        text        PRIMARY KEY,
    key_expiring_days integer     NOT NULL CHECK (key_expiring_days BETWEEN 1 AND 365),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- A rotation's grace period, from keys.events (KeyRotated; KeyGracePeriodEnded clears it).
ALTER TABLE key_directory ADD COLUMN IF NOT EXISTS rotated_at timestamptz;
ALTER TABLE key_directory ADD COLUMN IF NOT EXISTS grace_period_ends_at timestamptz;
CREATE INDEX IF NOT EXISTS key_directory_expiring ON key_directory (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS key_directory_grace_ending ON key_directory (grace_period_ends_at)
    WHERE grace_period_ends_at IS NOT NULL;
-- The last use of each key's rotated-out secret (usage records marked secret: previous).
CREATE TABLE IF NOT EXISTS previous_secret_uses (
    key_id       uuid        PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
