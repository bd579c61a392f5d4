-- Enforced limits (docs/limits.md): the rates per minute and day beside the hourly one,
-- the token budget and the networks a key may be used from. Keys made before have none,
-- which is what these columns say when empty.
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS rate_limit_per_minute integer;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS rate_limit_per_day integer;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS token_budget_tokens bigint;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS token_budget_period text;
ALTER TABLE key_state ADD COLUMN IF NOT EXISTS allowed_cidrs text[] NOT NULL DEFAULT '{}';
