-- Requests made once over HTTP or in the console (Idempotency-Key, a form's one-time
-- field) are kept in processed_commands like Kafka commands; this is the SHA-256 of what
-- such a request asked for, so the same key sent with another request is refused rather
-- than answered with the first one's outcome. Null for Kafka commands.
ALTER TABLE processed_commands ADD COLUMN IF NOT EXISTS request_digest bytea;
