-- Leaked keys (docs/secret-scanning.md): a canary is never valid, and the latest leak
-- report of a key is shown in the console. Both are projections of the events
-- (KeyCreated's canary, KeyReportedLeaked), rebuilt with the rest of key_state.
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS canary boolean NOT NULL DEFAULT false;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS leak_source text;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS leak_url text;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS leak_action text;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS leak_reported_at timestamptz;
